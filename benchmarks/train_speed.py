"""Training and evaluation speed: softprompt against PEFT and against the frozen model's own cost.

Every contender runs in its own subprocess (so peak memory is its own), one after the other, on the same
model, task, prompt length (prompt tuning, m virtual tokens), batch size, learning rate and step count:

- ours: softprompt's real training loop (`softprompt.training.trainer.Trainer.train`, choice loss, length-bucketed
  batches), then `TunedPrompt.evaluate` on the test carve.
- peft: PEFT PromptTuning wrapped around the same frozen model, trained by a plain PyTorch loop: random
  batches (a seeded permutation per epoch), right-padded to the longest example of the batch, the standard
  Hugging Face causal-LM loss on the label word (`labels` = -100 except the answer token), AdamW with the
  same warmup + linear decay and clipping. Its prompt starts from the same embeddings as ours. Evaluation:
  batches of the test rows in order, right-padded, the full logits, the label word with the highest logit
  at each row's last real position.
- floor-alone / floor-packed: the physical floor. For the same batches as ours, the frozen model's
  forward + backward on exactly the tokens prompt tuning must read — the m prompt vectors followed by each
  example's context tokens, no padding, no answer token (a single-token answer is scored from the logits
  at the context's last position) — with the logits of those last positions only and the same choice
  cross-entropy, back-propagated to the prompt (the only tensor with a gradient). "alone": each sequence
  as its own batch of one. "packed": the batch's sequences concatenated into one row, with a
  block-diagonal causal attention mask and positions restarting at each sequence. The floor is the faster
  of the two; neither updates anything (no optimizer). On a CPU, one batched matmul over a batch with little
  padding can beat both (batch-1 kernels are less efficient; the packed mask is dense, S x S), so ours/floor
  may exceed 1: the remaining waste of ours is then bounded by its padding share.
- zero-shot: no training, the bare model scoring the test carve (`softprompt.evaluation.zero_shot`): the
  reference for evaluation.
- ours-bf16 (not run by default): ours under `torch.autocast("cpu", dtype=torch.bfloat16)`, a lever to measure.

Reported per contender: tokens/s = the examples' real text tokens (context + answer word, what the data
holds, the same count for every contender) per second of wall time; tok/cpu-s = the same per second of
this process's CPU time (user + system), less sensitive to other load on a shared machine; s/step = median over the timed steps (after the
warm-up steps); peak memory = the process's peak resident set size during training minus its resident set
size just before (Linux VmHWM, reset through /proc/self/clear_refs after the model is loaded); padding =
share of the positions the model processed (prompt + text + padding) that were padding. Only ratios taken
in one run mean anything on a shared machine.

    python benchmarks/train_speed.py                           # 20 timed steps, torch's thread default
    python benchmarks/train_speed.py --steps 10 --threads 1 --output benchmarks/results/train_speed.txt
    python benchmarks/train_speed.py --steps 5 --contenders ours,ours-bf16
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softprompt.evaluation import zero_shot  # noqa: E402

from softprompt.tuned import TunedPrompt  # noqa: E402
from softprompt.runtime.batching import bucketed_batches, encode  # noqa: E402
from softprompt.methods.prompt_tuning import initial_embeddings  # noqa: E402
from softprompt.backbones import FrozenModel, load_model  # noqa: E402
from softprompt.tasks import load_task  # noqa: E402
from softprompt.training import TrainConfig  # noqa: E402
from softprompt.training.trainer import Trainer  # noqa: E402

DEFAULT_CONTENDERS = "ours,peft,floor-alone,floor-packed,zero-shot"


# ---- measuring -------------------------------------------------------------------------------------
def memory_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


@contextmanager
def peak_memory(result: dict):
    """Peak resident memory above the starting point, in MB, over the block."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (the peak) to the current RSS
    start = memory_kb("VmRSS")
    yield
    result["peak_memory_mb"] = (memory_kb("VmHWM") - start) / 1024


class PositionCounter:
    """Counts, for every forward of the frozen model, the positions it processed and how many were padding,
    and notes the process CPU time when each forward starts."""

    def __init__(self, model: torch.nn.Module):
        self.calls: list[tuple[int, int]] = []  # (positions, padding positions)
        self.cpu_at_call: list[float] = []
        self.handle = model.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        shape = embeds.shape[:2] if embeds is not None else kwargs["input_ids"].shape
        mask = kwargs.get("attention_mask")
        padding = int((mask == 0).sum()) if mask is not None and mask.dim() == 2 else 0
        self.calls.append((shape[0] * shape[1], padding))
        self.cpu_at_call.append(time.process_time())

    def padding_share(self, skip_calls: int) -> float:
        calls = self.calls[skip_calls:]
        return sum(p for _, p in calls) / sum(n for n, _ in calls)


def answer_ids(base: FrozenModel, task) -> list[int]:
    ids = [base.tokenizer(c, add_special_tokens=False)["input_ids"] for c in task.train[0].choices]
    if any(len(i) != 1 for i in ids):
        raise SystemExit("train_speed.py measures single-token answers (like sst2's label words)")
    return [i[0] for i in ids]


def timed_eval(result: dict, evaluate) -> None:
    start = time.perf_counter()
    result["eval_accuracy"] = evaluate()
    result["eval_seconds"] = time.perf_counter() - start


# ---- contenders (each runs in its own process) -------------------------------------------------------
def run_ours(args, base: FrozenModel, task, bf16: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(task=args.task, model=args.model, method="prompt-tuning", output_dir=folder,
                             max_steps=args.warmup + args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                             checkpoint_every=10**9, zero_shot=False, seed=args.seed,
                             method_options={"num_virtual_tokens": args.num_virtual_tokens})
        trainer = Trainer(config, base, task)
        counter, result = PositionCounter(base.model), {}
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with peak_memory(result), autocast:
            trainer.train()
        cpu_end = time.process_time()
        counter.handle.remove()
    steps = [r for r in trainer.history if "loss" in r][args.warmup:]
    result.update(step_seconds=[r["seconds"] for r in steps], step_tokens=[round(r["tokens_per_s"] * r["seconds"]) for r in steps],
                  padding=counter.padding_share(args.warmup), cpu_seconds=cpu_end - counter.cpu_at_call[args.warmup])
    with autocast:
        timed_eval(result, lambda: TunedPrompt(base, trainer.method, {}).evaluate(task, args.eval_batch_size)["accuracy"])
    return result


def right_pad(sequences: list[list[int]], fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) values padded on the right with `fill`, and the (B, T) mask of real positions."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), fill)
    mask = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return ids, mask


def run_peft(args, base: FrozenModel, task) -> dict:
    from peft import PromptTuningConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(args.seed)
    model = get_peft_model(base.model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=args.num_virtual_tokens))
    with torch.no_grad():  # the same starting prompt as ours (text initialisation from the task description)
        model.prompt_encoder["default"].embedding.weight.copy_(
            initial_embeddings(base, "text", task.description, args.num_virtual_tokens))
    pad = base.tokenizer.pad_token_id
    train = encode(base, task.train, 256)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    total = args.warmup + args.steps
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * total), total)
    generator = torch.Generator().manual_seed(args.seed)
    order = []
    while len(order) < total * args.batch_size:
        order += torch.randperm(len(train), generator=generator).tolist()
    counter, result, seconds, tokens = PositionCounter(base.model), {}, [], []
    model.train()
    with peak_memory(result):
        for step in range(total):
            start = time.perf_counter()
            if step == args.warmup:
                cpu_start = time.process_time()
            batch = [train[i] for i in order[step * args.batch_size:(step + 1) * args.batch_size]]
            input_ids, attention_mask = right_pad([e.context + e.target for e in batch], pad)
            labels, _ = right_pad([[-100] * len(e.context) + e.target for e in batch], -100)  # loss on the answer only
            model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seconds.append(time.perf_counter() - start)
            tokens.append(sum(len(e.context) + len(e.target) for e in batch))
    counter.handle.remove()
    result.update(step_seconds=seconds[args.warmup:], step_tokens=tokens[args.warmup:], padding=counter.padding_share(args.warmup),
                  cpu_seconds=time.process_time() - cpu_start)
    model.eval()
    label_ids = answer_ids(base, task)

    @torch.no_grad()
    def evaluate() -> float:
        test = encode(base, task.test, 256)
        correct = 0
        for start in range(0, len(test), args.eval_batch_size):
            batch = test[start:start + args.eval_batch_size]
            input_ids, attention_mask = right_pad([e.context for e in batch], pad)
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, m + T, V)
            last = attention_mask.sum(1) - 1 + args.num_virtual_tokens
            predicted = logits[torch.arange(len(batch)), last][:, label_ids].argmax(-1)
            correct += sum(int(p) == e.label for p, e in zip(predicted, batch))
        return correct / len(test)

    timed_eval(result, evaluate)
    return result


def packed_forward(base: FrozenModel, prompt: torch.Tensor, contexts: list[list[int]]) -> torch.Tensor:
    """Logits (B, V) at each sequence's last position, all sequences packed into one row."""
    pieces = [torch.cat([prompt, base.embed(torch.tensor(c))]) for c in contexts]  # each (m + L_i, d)
    lengths = torch.tensor([len(p) for p in pieces])
    ends = lengths.cumsum(0)
    sequence = torch.repeat_interleave(torch.arange(len(pieces)), lengths)  # (S,) which sequence each position is in
    positions = torch.cat([torch.arange(n) for n in lengths.tolist()])
    causal = torch.tril(torch.ones(len(sequence), len(sequence), dtype=torch.bool))
    mask = (causal & (sequence[:, None] == sequence[None, :]))[None, None]  # (1, 1, S, S) block-diagonal causal
    output = base.model(inputs_embeds=torch.cat(pieces)[None], attention_mask=mask, position_ids=positions[None],
                        logits_to_keep=ends - 1)
    return output.logits[0]


def run_floor(args, base: FrozenModel, task, packed: bool) -> dict:
    train = encode(base, task.train, 256)
    label_ids = answer_ids(base, task)
    prompt = initial_embeddings(base, "text", task.description, args.num_virtual_tokens).requires_grad_()  # (m, d)
    lengths = [len(e.context) + len(e.target) for e in train]
    batches, epoch = [], 0
    while len(batches) < args.warmup + args.steps:  # the same batches as ours, in the same order
        batches += bucketed_batches(lengths, args.batch_size, args.seed, epoch)
        epoch += 1
    result, seconds, tokens = {}, [], []
    with peak_memory(result):
        for step, indices in enumerate(batches[: args.warmup + args.steps]):
            batch = [train[i] for i in indices]
            labels = torch.tensor([e.label for e in batch])
            start = time.perf_counter()
            if step == args.warmup:
                cpu_start = time.process_time()
            if packed:
                logits = packed_forward(base, prompt, [e.context for e in batch])  # (B, V)
                torch.nn.functional.cross_entropy(logits[:, label_ids], labels).backward()
            else:
                for row, example in enumerate(batch):  # backward per sequence: sums to the batch's mean loss
                    embeds = torch.cat([prompt, base.embed(torch.tensor(example.context))])[None]
                    logits = base.model(inputs_embeds=embeds, logits_to_keep=1).logits[:, -1]  # (1, V)
                    (torch.nn.functional.cross_entropy(logits[:, label_ids], labels[row:row + 1]) / len(batch)).backward()
            prompt.grad = None
            seconds.append(time.perf_counter() - start)
            tokens.append(sum(len(e.context) + len(e.target) for e in batch))
    result.update(step_seconds=seconds[args.warmup:], step_tokens=tokens[args.warmup:], padding=0.0,
                  cpu_seconds=time.process_time() - cpu_start)
    return result


def run_zero_shot(args, base: FrozenModel, task) -> dict:
    """No training: the bare model's scoring time through the public API, the reference for evaluation."""
    result = {}
    timed_eval(result, lambda: zero_shot(base, task, args.eval_batch_size)["accuracy"])
    return result


CONTENDERS = {
    "ours": run_ours,
    "ours-bf16": lambda args, base, task: run_ours(args, base, task, bf16=True),  # a lever, measured on demand
    "peft": run_peft,
    "floor-alone": lambda args, base, task: run_floor(args, base, task, packed=False),
    "floor-packed": lambda args, base, task: run_floor(args, base, task, packed=True),
    "zero-shot": run_zero_shot,
}


def run_contender(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    base, task = load_model(args.model), load_task(args.task)
    result = CONTENDERS[args.contender](args, base, task)
    result["threads"] = torch.get_num_threads()
    Path(args.result_file).write_text(json.dumps(result))


# ---- the parent: run every contender in its own process, then compare -------------------------------
def summary(result: dict) -> dict:
    if "step_seconds" not in result:
        return result
    tokens = sum(result["step_tokens"])
    return {**result, "seconds_per_step": statistics.median(result["step_seconds"]),
            "tokens_per_s": tokens / sum(result["step_seconds"]), "tokens_per_cpu_s": tokens / result["cpu_seconds"]}


def ratio_line(label: str, ours: dict, other: dict) -> str:
    return (f"{label} throughput {ours['tokens_per_s'] / other['tokens_per_s']:.2f}x "
            f"(per CPU-second {ours['tokens_per_cpu_s'] / other['tokens_per_cpu_s']:.2f}x)")


def report(args, results: dict[str, dict]) -> str:
    trained = {n: r for n, r in results.items() if "step_seconds" in r}
    scored = {n: r for n, r in results.items() if "eval_seconds" in r}
    lines = [f"command: {args.command}",
             (f"model {args.model}, task {args.task} (train carve), prompt tuning with {args.num_virtual_tokens} virtual tokens, "
              f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, "
              f"threads {next(iter(results.values()))['threads']}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"), ""]
    if trained:
        lines.append(f"{'training':<14}{'tokens/s':>10}{'tok/cpu-s':>11}{'s/step':>9}{'peak MB':>9}{'padding':>9}")
        lines += [f"{n:<14}{r['tokens_per_s']:>10.1f}{r['tokens_per_cpu_s']:>11.1f}{r['seconds_per_step']:>9.3f}"
                  f"{r['peak_memory_mb']:>9.0f}{r['padding']:>9.1%}" for n, r in trained.items()]
    ours = trained.get("ours")
    floors = [r for n, r in trained.items() if n.startswith("floor")]
    if ours and "peft" in trained:
        lines.append(ratio_line("ours/peft", ours, trained["peft"]) + f"; peak memory {ours['peak_memory_mb'] / trained['peft']['peak_memory_mb']:.2f}x")
    if ours and floors:
        lines.append(ratio_line("ours/floor", ours, max(floors, key=lambda r: r["tokens_per_s"])) + " (floor: the faster of the two)")
    if scored:
        lines += ["", f"{'evaluation':<14}{'seconds':>10}{'accuracy':>10}   (the test carve; zero-shot = the bare model)"]
        lines += [f"{n:<14}{r['eval_seconds']:>10.2f}{r['eval_accuracy']:>10.1%}" for n, r in scored.items()]
    if ours and "peft" in scored:
        peft = scored["peft"]
        lines.append(f"ours/peft evaluation throughput {peft['eval_seconds'] / ours['eval_seconds']:.2f}x; accuracy after "
                     f"{args.warmup + args.steps} steps: ours {ours['eval_accuracy']:.1%}, peft {peft['eval_accuracy']:.1%}")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--num-virtual-tokens", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--contenders", default=DEFAULT_CONTENDERS)
    parser.add_argument("--output", type=Path, help="append the report to this file")
    parser.add_argument("--contender", help=argparse.SUPPRESS)  # internal: run one contender in this process
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.contender:
        return run_contender(args)
    args.command = "python benchmarks/train_speed.py " + " ".join(sys.argv[1:])
    unknown = set(args.contenders.split(",")) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contender(s) {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.contenders.split(","):
            out = Path(folder) / f"{name}.json"
            run = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--contender", name, "--result-file", str(out)],
                                 check=False, capture_output=True, text=True)
            if run.returncode:
                sys.exit(f"contender {name} failed:\n{run.stderr[-3000:]}")
            results[name] = summary(json.loads(out.read_text()))
            print(f"{name} done", flush=True)
    text = report(args, results)
    print(text)
    if args.output:
        with args.output.open("a") as file:
            file.write(text + "\n")


if __name__ == "__main__":
    main()
