"""The GPU check: one script, one report, under 8 minutes on one modern GPU.

1. Every method and baseline on a tiny random Llama: one training step and a greedy generation on the device
   in float32 and bfloat16; the prompted logits against the CPU's float32 ones (float32 must agree to 1e-4;
   bfloat16's difference is reported) and the generated tokens against the CPU's.
2. Training throughput at real scale on random-weight models with the shapes of Llama-3.2-1B and
   Qwen2.5-0.5B (weights do not change speed; nothing is downloaded), batch 8 x 256 tokens, bfloat16: ours
   (prompt tuning, 20 tokens, softprompt's loss: logits at the answer only) vs PEFT PromptTuning in the plain
   loop of train_speed.py (the Hugging Face loss over every position) vs the frozen model's own forward +
   backward on the same [prompt; text] batches (logits of the last position only). Tokens/s and peak memory.
3. Scoring throughput of a 20-token prompt with and without the prompt KV cache.

    python benchmarks/gpu_check.py --output benchmarks/results/gpu_check.txt      # on a GPU
    python benchmarks/gpu_check.py --tiny                                           # anywhere: tiny shapes, CPU

Speeds are medians over --steps timed steps after --warmup ones; read the ratios, taken within one run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softprompt.backbones import FrozenModel, prompted_forward  # noqa: E402
from softprompt.methods import BASELINES, METHODS, build_method  # noqa: E402
from softprompt.runtime.batching import Encoded, make_inputs  # noqa: E402
from softprompt.runtime.generation import generate_ids  # noqa: E402
from softprompt.runtime.prefix_cache import PrefixCache, inference_prompt  # noqa: E402
from softprompt.runtime.scoring import lm_loss  # noqa: E402
from softprompt.tasks import Example, Task  # noqa: E402

SHAPES = {  # the real models' shapes (config.json of each), random weights
    "llama-3.2-1b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}
TINY = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=True)
PROMPT_TOKENS = 20


class NumberTokenizer:
    """Stands in for a tokenizer on random-weight models: text is a list of token ids, written out."""

    pad_token_id, eos_token_id = 0, 1

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [int(word) % 997 + 2 for word in text.split()] or [2]}

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(map(str, ids))


def random_model(shape: dict, device: str, dtype: torch.dtype) -> FrozenModel:
    from transformers import AutoConfig, AutoModelForCausalLM

    options = dict(shape)
    config = AutoConfig.for_model(options.pop("model_type"), max_position_embeddings=2048, pad_token_id=0, eos_token_id=1, **options)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval().requires_grad_(False)
    return FrozenModel(name=shape.get("model_type", "random"), model=model, tokenizer=NumberTokenizer(), fingerprint="random")


def toy_task() -> Task:
    examples = [Example(" ".join(str(7 * i + j) for j in range(5 + i % 4)), (" 3", " 5"), i % 2) for i in range(8)]
    return Task("toy", examples[:6], examples[6:], "5 8 13 21 34")


# ---- 1. every method, on the device, against the CPU ----------------------------------------------------
def method_rows(device: str) -> list[str]:
    task, rows = toy_task(), []
    reference = random_model(TINY, "cpu", torch.float32)
    sequences = [[2 + (5 * i + j) % 900 for j in range(6 + i)] for i in range(4)]
    for name in sorted({**METHODS, **BASELINES}):
        cells = []
        for dtype in (torch.float32, torch.bfloat16):
            base = random_model(TINY, device, dtype)
            torch.manual_seed(1)
            on_cpu = build_method(name, reference)
            on_cpu.initialize(reference, task)
            with torch.no_grad():
                for parameter in on_cpu.parameters():
                    parameter.add_(torch.randn_like(parameter) * 0.05)
            method = build_method(name, base)
            method.initialize(base, task)  # multitask-prompt-tuning sizes its factors here
            method.load_state_dict(on_cpu.state_dict())
            features = method.instance_features(base, ["1 2 3"] * len(sequences))
            cpu_features = features.cpu() if features is not None else None
            with torch.no_grad():
                expected = _logits(reference, on_cpu.eval(), sequences, cpu_features)
                got = _logits(base, method.eval(), sequences, features).float().cpu()
                same_tokens = (generate_ids(base, method, sequences, 4, features=features)
                               == generate_ids(reference, on_cpu, sequences, 4, features=cpu_features))
            step_ok = _one_step(base, method, sequences, features)
            difference = (got - expected).abs().max().item()
            passed = step_ok and (difference < 1e-4 or dtype == torch.bfloat16) and (same_tokens or dtype == torch.bfloat16)
            cells.append(f"{'ok' if passed else 'FAIL'} {str(dtype)[6:]} max|dlogit| {difference:.1e} tokens {'=' if same_tokens else '!='} cpu")
        rows.append(f"  {name:25} " + "; ".join(cells))
    return rows


def _logits(base, method, sequences, features):
    inputs = make_inputs(base, sequences, features)
    return prompted_forward(base, method(inputs), inputs, logits_to_keep=1)[0].logits[:, -1]


def _one_step(base, method, sequences, features) -> bool:
    method.train()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    optimizer = torch.optim.AdamW(method.parameter_groups())
    batch = [Encoded(s, [3], [[3], [5]], 0, i) for i, s in enumerate(sequences)]
    loss = lm_loss(base, method, batch, features)[0]
    loss.backward()
    optimizer.step()
    changed = any(not torch.equal(before[k], v) for k, v in method.state_dict().items())
    return bool(torch.isfinite(loss)) and changed and all(p.grad is None for p in base.model.parameters())


# ---- 2. training throughput at real scale -----------------------------------------------------------
def throughput_rows(shape_name: str, shape: dict, device: str, batch: int, length: int, steps: int, warmup: int) -> list[str]:
    base = random_model(shape, device, torch.bfloat16 if device != "cpu" else torch.float32)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(2, 997, (batch, length), generator=generator).tolist() for _ in range(steps + warmup)]
    contenders = {"ours": _ours_step(base), "peft": _peft_step(base), "floor": _floor_step(base)}
    results = {name: _measure(step, batches, device, warmup) for name, step in contenders.items()}
    tokens = batch * (length + PROMPT_TOKENS)
    lines = [f"  {shape_name}: batch {batch} x {length} tokens + a {PROMPT_TOKENS}-token prompt, {str(base.dtype)[6:]}"]
    for name, (seconds, memory) in results.items():
        lines.append(f"    {name:6} {tokens / seconds:10.0f} tokens/s   peak memory {memory / 2**30:6.2f} GiB")
    (ours_s, ours_m), (peft_s, peft_m), (floor_s, _) = results["ours"], results["peft"], results["floor"]
    lines.append(f"    ours / peft tokens/s {peft_s / ours_s:.2f}x (target >= 1.5); ours / floor {floor_s / ours_s:.2f}x "
                 f"(target >= 0.9); memory ours / peft {ours_m / max(peft_m, 1):.2f}x (target <= 1)")
    return lines


def _ours_step(base):
    method = build_method("prompt-tuning", base, {"num_virtual_tokens": PROMPT_TOKENS})
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3)

    def step(ids):
        batch = [Encoded(row[:-1], row[-1:], [], None, i) for i, row in enumerate(ids)]
        lm_loss(base, method, batch)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def _peft_step(base):
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(base.model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=PROMPT_TOKENS))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step(ids):
        tensor = torch.tensor(ids, device=base.device)
        model(input_ids=tensor, labels=tensor).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def _floor_step(base):
    prompt = torch.zeros(PROMPT_TOKENS, base.embedding_size, device=base.device, dtype=base.dtype, requires_grad=True)

    def step(ids):
        embeds = base.embed(torch.tensor(ids))
        inputs = torch.cat([prompt.expand(len(ids), -1, -1), embeds], dim=1)
        base.model(inputs_embeds=inputs, logits_to_keep=1).logits.float().sum().backward()
        prompt.grad = None
    return step


def _measure(step, batches, device: str, warmup: int) -> tuple[float, int]:
    times = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for index, ids in enumerate(batches):
        _sync(device)
        start = time.perf_counter()
        step(ids)
        _sync(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    memory = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
    return statistics.median(times), memory


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- 3. scoring with and without the prompt KV cache --------------------------------------------------
def scoring_rows(shape: dict, device: str, batch: int, length: int, steps: int) -> list[str]:
    base = random_model(shape, device, torch.bfloat16 if device != "cpu" else torch.float32)
    method = build_method("prompt-tuning", base, {"num_virtual_tokens": PROMPT_TOKENS}).eval()
    inputs = make_inputs(base, torch.randint(2, 997, (batch, length), generator=torch.Generator().manual_seed(1)).tolist())
    cache = PrefixCache()
    timed = {}
    with torch.no_grad():
        for label, prompt_fn in (("recomputed", method), ("cached", lambda batch_inputs: inference_prompt(base, method, batch_inputs, cache))):
            times = []
            for _ in range(steps + 1):
                _sync(device)
                start = time.perf_counter()
                prompted_forward(base, prompt_fn(inputs), inputs, logits_to_keep=1)
                _sync(device)
                times.append(time.perf_counter() - start)
            timed[label] = statistics.median(times[1:])
    tokens = batch * length
    return [f"  scoring {batch} x {length} tokens through a {PROMPT_TOKENS}-token prompt: "
            f"{tokens / timed['recomputed']:.0f} tokens/s recomputed, {tokens / timed['cached']:.0f} cached "
            f"({timed['recomputed'] / timed['cached']:.2f}x)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and batches: checks the script itself, anywhere")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", default="")
    args = parser.parse_args()
    shapes = {"tiny-llama": TINY} if args.tiny else SHAPES
    batch, length = (2, 16) if args.tiny else (8, 256)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    lines = [f"# python benchmarks/gpu_check.py{' --tiny' if args.tiny else ''}: {name}, torch {torch.__version__}",
             "1. every method: a train step and greedy generation on the device, against the CPU's float32"]
    lines += method_rows(args.device)
    lines.append("2. training throughput (random weights, real shapes)")
    for shape_name, shape in shapes.items():
        lines += throughput_rows(shape_name, shape, args.device, batch, length, args.steps, args.warmup)
    lines.append("3. scoring with the prompt KV cache")
    lines += scoring_rows(next(iter(shapes.values())), args.device, 2 * batch, length, args.steps)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.output:
        Path(args.output).write_text(text)
    if any(" FAIL " in line or line.strip().startswith("FAIL") for line in lines):
        sys.exit(1)


if __name__ == "__main__":
    main()
