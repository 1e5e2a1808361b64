"""fp32 vs bfloat16 for the frozen model on this CPU: `softprompt train --task sst2` (the README's run: prompt
tuning, 20 tokens, 3 epochs of batch 8) once in each dtype per seed. The two runs of a seed go side by side, one
torch thread each, so that they share whatever else loads the machine. Each seed's record (test accuracy on the
SST-2 seeded carve, 272 test rows, each row's outcome, median training tokens/s) is kept under
benchmarks/results/bf16_cpu/; the report covers every seed recorded there and pairs the two dtypes row by row
(McNemar's exact test over the seeds whose rows were recorded, pooled).

    python benchmarks/bf16_cpu.py --seed 1      # one seed (about 50 min here), then the report
    python benchmarks/bf16_cpu.py --report-only
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
from paired import mcnemar, p_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bf16_cpu"
DTYPES = ("float32", "bfloat16")


def run(dtype: str, args) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        result = softprompt.train(task=args.task, dtype=dtype, device="cpu", seed=args.seed, max_steps=args.max_steps,
                                  output_dir=folder, zero_shot=False, checkpoint_every=10**9)
        steps = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in steps if "tokens_per_s" in r]
    return {"accuracy": result.metrics["accuracy"], "tokens_per_s": statistics.median(speeds), "steps": result.metrics["steps"],
            "correct": result.metrics["correct"]}


def run_seed(args) -> None:
    """Both dtypes of one seed side by side, each in its own process; their records in one file."""
    common = [sys.executable, __file__, "--task", args.task, "--seed", str(args.seed), "--max-steps", str(args.max_steps)]
    runs = {dtype: subprocess.Popen([*common, "--one", dtype], stdout=subprocess.PIPE, text=True) for dtype in DTYPES}
    record = {dtype: json.loads(process.communicate()[0].strip().splitlines()[-1]) for dtype, process in runs.items()}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.task}-seed{args.seed}.json").write_text(json.dumps({"seed": args.seed, **record}) + "\n")


def report(args) -> str:
    records = sorted((json.loads(p.read_text()) for p in args.results.glob(f"{args.task}-seed*.json")), key=lambda r: r["seed"])
    lines = [f"# python benchmarks/bf16_cpu.py --seed N, then --report-only ({args.task}: seeded carve, 600 train / 272 test; "
             "the two dtypes of a seed side by side, 1 thread each)"]
    for r in records:
        fp32, bf16 = (r[dtype] for dtype in DTYPES)
        lines.append(f"seed {r['seed']}: float32 {fp32['accuracy']:.1%}, bfloat16 {bf16['accuracy']:.1%} "
                     f"({100 * (bf16['accuracy'] - fp32['accuracy']):+.1f} points); training tokens/s "
                     f"{fp32['tokens_per_s']:.0f} vs {bf16['tokens_per_s']:.0f} ({bf16['tokens_per_s'] / fp32['tokens_per_s']:.2f}x); "
                     f"{fp32['steps']} steps" + ("" if fp32.get("correct") else "; rows not recorded"))
    if records:
        gaps = [100 * (r["bfloat16"]["accuracy"] - r["float32"]["accuracy"]) for r in records]
        lines.append(f"mean bf16 - fp32 over {len(records)} seed(s): {statistics.mean(gaps):+.1f} points")
    paired = mcnemar(*({r["seed"]: r[dtype]["correct"] for r in records if r[dtype].get("correct")} for dtype in ("bfloat16", "float32")))
    if paired:
        lines.append(f"paired over {paired.rows} rows: bf16 right alone on {paired.method_only}, fp32 alone on "
                     f"{paired.baseline_only}; McNemar p {p_text(paired.p_value)}; a difference of {paired.detectable:.1f} "
                     "points would be detected 80% of the time")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=0, help="0: the default 3 epochs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the per-seed records")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "bf16_cpu.txt", help="the report")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the records")
    parser.add_argument("--one", choices=DTYPES, help="run this dtype alone and print its record as JSON (what run_seed runs)")
    args = parser.parse_args()
    if args.one:
        torch.set_num_threads(1)
        print(json.dumps(run(args.one, args)))
        return
    if not args.report_only:
        run_seed(args)
    text = report(args)
    print(text, end="")
    args.output.write_text(text)


if __name__ == "__main__":
    main()
