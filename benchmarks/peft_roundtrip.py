"""A prompt trained here, exported to PEFT, loaded by PEFT on the same base model, scores the same test
accuracy as in softprompt. Prints both accuracies, how many predictions differ, and the largest gap
between the two libraries' label log-probabilities.

    python benchmarks/peft_roundtrip.py --task sst2 --method prompt-tuning --steps 60
    python benchmarks/peft_roundtrip.py --prompt runs/sst2-prompt-tuning/prompt.safetensors

PEFT scores one example at a time: it numbers positions from the first column, so left padding would
shift them (softprompt gives every row of a padded batch the positions it would have alone).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import softprompt
from softprompt.runtime.batching import bucketed_batches, encode
from softprompt.runtime.scoring import choice_scores
from softprompt.formats import export_prompt
from softprompt.tasks import load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", help="a trained prompt file (default: train one briefly)")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--method", default="prompt-tuning")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        prompt = trained_prompt(args, Path(folder))
        task = load_task(args.task)
        started = time.perf_counter()
        ours = softprompt_scores(prompt, task, args.max_length)
        export_prompt(prompt, "peft", Path(folder) / "peft")
        theirs = peft_scores(prompt, Path(folder) / "peft", task, args.max_length)
    labels = torch.tensor([e.label for e in task.test])
    recorded = prompt.info.get("metrics", {}).get("accuracy")
    print(f"task {task.name} [{task.split_note}], method {prompt.method.name}, {len(labels)} test examples")
    print(f"softprompt accuracy: {(ours.argmax(-1) == labels).float().mean():.4f} (recorded in the prompt file at training: {recorded})")
    print(f"PEFT accuracy:       {(theirs.argmax(-1) == labels).float().mean():.4f}")
    print(f"predictions that differ: {int((ours.argmax(-1) != theirs.argmax(-1)).sum())}")
    print(f"max |label log-prob softprompt - PEFT|: {(ours - theirs).abs().max():.2e}")
    print(f"scoring both: {time.perf_counter() - started:.0f} s")


def trained_prompt(args, folder: Path) -> softprompt.TunedPrompt:
    if args.prompt:
        return softprompt.load_prompt(args.prompt)
    config = softprompt.TrainConfig(task=args.task, method=args.method, model=args.model, max_steps=args.steps,
                                    max_length=args.max_length, output_dir=str(folder / "run"), zero_shot=False,
                                    checkpoint_every=10**9)
    print(f"training {args.method} on {args.task} for {args.steps} steps (batch {config.batch_size})", flush=True)
    return softprompt.train(config).prompt


def softprompt_scores(prompt, task, max_length: int) -> torch.Tensor:
    """(N, C) label log-probabilities in softprompt, in batches of 16 (left-padded)."""
    encoded = encode(prompt.base, task.test, max_length)
    scores = torch.empty(len(encoded), len(encoded[0].choices))
    with torch.no_grad():
        for batch in bucketed_batches([len(e.context) for e in encoded], 16, 0, 0, shuffle=False):
            scores[batch] = choice_scores(prompt.base, prompt, [encoded[i] for i in batch], task.length_normalized)
    return scores


def peft_scores(prompt, adapter: Path, task, max_length: int) -> torch.Tensor:
    """(N, C) label log-probabilities from PEFT on a freshly loaded copy of the base model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(prompt.base.model.name_or_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter).eval()
    encoded = encode(prompt.base, task.test, max_length)
    if any(len(c) != 1 for e in encoded for c in e.choices):
        raise SystemExit("this script scores single-token label words only")
    scores = torch.empty(len(encoded), len(encoded[0].choices))
    with torch.no_grad():
        for row, example in enumerate(encoded):
            ids = torch.tensor([example.context])
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
            scores[row] = torch.log_softmax(logits.float(), -1)[[c[0] for c in example.choices]]
    return scores


if __name__ == "__main__":
    main()
