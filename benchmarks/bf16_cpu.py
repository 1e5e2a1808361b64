"""fp32 vs bfloat16 for the frozen model on this CPU: `softprompt train --task sst2` (the README's run: prompt
tuning, 20 tokens, 3 epochs of batch 8, seed 0) once in each dtype. The two runs go side by side, one torch
thread each, so that they share whatever else loads the machine. Reports each run's test accuracy (SST-2
seeded carve, 272 test rows) and median training tokens/s, and the bf16 / fp32 ratio of the latter.

    python benchmarks/bf16_cpu.py --output benchmarks/results/bf16_cpu.txt
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import softprompt  # noqa: E402


def run(dtype: str, args) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        result = softprompt.train(task=args.task, dtype=dtype, device="cpu", seed=args.seed, max_steps=args.max_steps,
                                  output_dir=folder, zero_shot=False, checkpoint_every=10**9)
        steps = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in steps if "tokens_per_s" in r]
    return {"accuracy": result.metrics["accuracy"], "tokens_per_s": statistics.median(speeds), "steps": result.metrics["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=0, help="0: the default 3 epochs")
    parser.add_argument("--output", default="")
    parser.add_argument("--one", help="run this dtype alone and print its result as JSON (what the two side-by-side runs are)")
    args = parser.parse_args()
    if args.one:
        torch.set_num_threads(1)
        print(json.dumps(run(args.one, args)))
        return
    common = [sys.executable, __file__, "--task", args.task, "--seed", str(args.seed), "--max-steps", str(args.max_steps)]
    runs = {dtype: subprocess.Popen([*common, "--one", dtype], stdout=subprocess.PIPE, text=True) for dtype in ("float32", "bfloat16")}
    results = {dtype: json.loads(process.communicate()[0].strip().splitlines()[-1]) for dtype, process in runs.items()}
    lines = [f"# python benchmarks/bf16_cpu.py{' --max-steps ' + str(args.max_steps) if args.max_steps else ''} (seed {args.seed}, "
             f"{args.task}: seeded carve, 600 train / 272 test; the two runs side by side, 1 thread each)"]
    for dtype, r in results.items():
        lines.append(f"{dtype:9} accuracy {r['accuracy']:.1%}  median training tokens/s {r['tokens_per_s']:.0f}  ({r['steps']} steps)")
    gap = 100 * (results["bfloat16"]["accuracy"] - results["float32"]["accuracy"])
    ratio = results["bfloat16"]["tokens_per_s"] / results["float32"]["tokens_per_s"]
    lines.append(f"bf16 - fp32 accuracy: {gap:+.1f} points; bf16 / fp32 training tokens/s: {ratio:.2f}x")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
