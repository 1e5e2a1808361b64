"""The training-speed benchmark on the tiny model: every contender for 2 steps (in this process, to stay
fast), the report built from them, the command-line plumbing, and that the packed floor computes exactly
what each sequence computes alone; and that training computes no gradient for the frozen model."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

from softprompt.backbones import load_model
from softprompt.tasks import load_task
from softprompt.training import TrainConfig
from softprompt.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "train_speed.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_contender_runs_and_the_report_compares_them(tiny_model_dir, reviews_file):
    script = load_script()
    args = script.build_parser().parse_args(["--model", str(tiny_model_dir), "--task", str(reviews_file), "--steps", "2",
                                             "--warmup", "1", "--batch-size", "4", "--num-virtual-tokens", "4"])
    args.command = "python benchmarks/train_speed.py (test)"
    task = load_task(str(reviews_file))
    results = {name: script.summary({**script.CONTENDERS[name](args, load_model(str(tiny_model_dir)), task), "threads": 1})
               for name in script.DEFAULT_CONTENDERS.split(",")}
    trained = {n: r for n, r in results.items() if n != "zero-shot"}
    assert all(len(r["step_seconds"]) == 2 and r["tokens_per_s"] > 0 and r["cpu_seconds"] > 0 for r in trained.values())
    # The floor reads the same batches as ours, in the same order; PEFT draws its own random ones.
    assert results["ours"]["step_tokens"] == results["floor-alone"]["step_tokens"] == results["floor-packed"]["step_tokens"]
    assert results["floor-packed"]["padding"] == 0 < results["ours"]["padding"] < results["peft"]["padding"]
    assert all(0 <= r["eval_accuracy"] <= 1 for n, r in results.items() if n in ("ours", "peft", "zero-shot"))
    text = script.report(args, results)
    assert "ours/peft throughput" in text and "ours/floor throughput" in text and "accuracy after 3 steps: ours" in text


def test_command_line_appends_a_report_headed_by_its_command(tmp_path, tiny_model_dir, reviews_file):
    output = tmp_path / "speed.txt"
    command = [sys.executable, str(SCRIPT), "--model", str(tiny_model_dir), "--task", str(reviews_file), "--output", str(output)]
    run = subprocess.run([*command, "--contenders", "zero-shot"], check=False, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    text = output.read_text()
    assert text.startswith(f"command: python benchmarks/train_speed.py --model {tiny_model_dir}")
    assert "\nzero-shot " in text
    wrong = subprocess.run([*command, "--contenders", "ours,nope"], check=False, capture_output=True, text=True, cwd=ROOT)
    assert wrong.returncode == 2 and "unknown contender(s) ['nope']" in wrong.stderr
    assert output.read_text() == text  # a refused command writes nothing


def test_packed_floor_equals_each_sequence_alone(tiny_base):
    script = load_script()
    contexts = [tiny_base.tokenizer(t)["input_ids"] for t in ["Review: a triumph\nSentiment:", "Review: dull\nSentiment:", "hi"]]
    prompt = torch.randn(3, tiny_base.hidden_size, requires_grad=True)  # (m, d)
    packed = script.packed_forward(tiny_base, prompt, contexts)  # (3, V)
    packed.sum().backward()
    packed_grad, prompt.grad = prompt.grad, None
    alone = torch.cat([tiny_base.model(inputs_embeds=torch.cat([prompt, tiny_base.embed(torch.tensor(c))])[None],
                                       logits_to_keep=1).logits[:, -1] for c in contexts])
    alone.sum().backward()
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-5)
    # the gradient sums every vocabulary logit, packed in another order than alone: 1e-4 absorbs the float32
    # rounding that differs with the thread count; attention leaking across the packed sequences is off by O(1)
    torch.testing.assert_close(packed_grad, prompt.grad, atol=1e-4, rtol=1e-4)


def test_training_computes_no_gradient_for_any_frozen_weight(tmp_path, tiny_base, tiny_task):
    """Only the prompt gets a gradient: a frozen weight (the embedding table included) that required one would
    cost a weight-gradient matmul per layer and step."""
    trainer = Trainer(TrainConfig(model="unused", output_dir=str(tmp_path), max_steps=1, batch_size=4,
                                  method_options={"num_virtual_tokens": 4}), tiny_base, tiny_task)
    original_step = trainer.optimizer.step
    seen = {}

    def inspect_after_backward(closure):
        def inspecting(backward):
            loss = closure(backward)
            seen["frozen"] = [n for n, p in tiny_base.model.named_parameters() if p.requires_grad or p.grad is not None]
            seen["prompt"] = trainer.method.embeddings.grad
            return loss
        return original_step(inspecting)

    trainer.optimizer.step = inspect_after_backward
    trainer.train()
    assert seen["frozen"] == [] and seen["prompt"] is not None and seen["prompt"].abs().sum() > 0
