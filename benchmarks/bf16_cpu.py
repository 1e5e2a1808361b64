"""fp32 vs bfloat16 for the frozen model on this CPU: `softprompt train --task sst2` (the README's run: prompt
tuning, 20 tokens, 3 epochs of batch 8, seed 0) once in each dtype, in one process, one after the other.
Reports each run's test accuracy (SST-2 seeded carve, 272 test rows) and median training tokens/s, and the
bf16 / fp32 ratio of the latter (both runs in the same invocation, so under the same machine load).

    python benchmarks/bf16_cpu.py --output benchmarks/results/bf16_cpu.txt
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

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
    args = parser.parse_args()
    results = {dtype: run(dtype, args) for dtype in ("float32", "bfloat16")}
    lines = [f"# python benchmarks/bf16_cpu.py{' --max-steps ' + str(args.max_steps) if args.max_steps else ''} (seed {args.seed}, "
             f"{args.task}: seeded carve, 600 train / 272 test)"]
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
