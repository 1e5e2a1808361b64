"""The vision grid: linear probe, VPT-shallow, VPT-deep (VPT's init and VIPAMIN's), LoRA and full fine-tuning on
Fashion-MNIST few-shot tasks, several seeds, all through softprompt's Trainer with the same budget.

Each (method, task, seed) cell is one run kept as JSON under the results folder; cells already there are skipped and
the report (docs/vision_results.md + a bar chart) is rebuilt from whatever cells exist, naming the missing ones. A grid
stopped mid-cell resumes that cell from its last checkpoint (every 25 steps, under <results>/.runs/, which git ignores).
The statistics and the chart are compare_report.py's.

    python benchmarks/vision_grid.py                    # the whole grid (hours on 2 shared CPU cores)
    python benchmarks/vision_grid.py --methods linear-probe,vpt-deep --tasks fashion-mnist-10 --seeds 0
    python benchmarks/vision_grid.py --report-only      # rebuild the report from the cells there
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import softprompt  # noqa: E402
from softprompt.backbones import load_model  # noqa: E402
from softprompt.storage import write_text_atomic  # noqa: E402
from softprompt.training.checkpoints import CHECKPOINT  # noqa: E402
from softprompt.tasks import load_task  # noqa: E402

from compare_report import carve_stats, chart, table_header, table_row  # noqa: E402

VIPAMIN = "vpt-deep+vipamin"
CHECKPOINT_EVERY = 25  # steps: what a grid stopped mid-cell can lose
METHODS = {  # grid name -> (softprompt method, its options)
    "linear-probe": ("linear-probe", {}),
    "vpt-shallow": ("vpt-shallow", {}),
    "vpt-deep": ("vpt-deep", {}),
    VIPAMIN: ("vpt-deep", {"init": "vipamin"}),
    "lora": ("lora", {"rank": 8, "alpha": 16.0, "target_modules": "q_proj,v_proj"}),
    "full-finetune": ("full-finetune", {}),
}
TASKS = ["fashion-mnist-10", "fashion-mnist-100"]
CLAIMS = [("VPT-deep beats the linear probe", "vpt-deep", "linear-probe"),
          ("VIPAMIN beats VPT's default (xavier) init on VPT-deep, as its paper claims", VIPAMIN, "vpt-deep")]


def cell_path(results: Path, method: str, task: str, seed: int) -> Path:
    return results / Path(task).name / method / f"seed{seed}.json"  # a task may be a folder of images


def work_folder(args, method: str, task: str, seed: int) -> Path:
    """Where a cell's run checkpoints until the cell is written (then it goes; git ignores .runs/); the budget is in
    the path, so a run is only ever resumed on its own budget."""
    return args.results / ".runs" / f"steps{args.steps}-batch{args.batch_size}" / Path(task).name / method / f"seed{seed}"


def run_cell(args, method: str, task: str, seed: int) -> dict:
    """One cell's run, resumed from its work folder's checkpoint when a stopped grid left one (at most
    CHECKPOINT_EVERY steps are lost)."""
    name, options = METHODS[method]
    start, work = time.time(), work_folder(args, method, task, seed)
    resume = (work / CHECKPOINT).exists()
    if resume:
        print(f"    resuming from {work / CHECKPOINT}", flush=True)
    config = softprompt.TrainConfig(task=task, method=name, model=args.model, seed=seed, max_steps=args.steps,
                                    batch_size=args.batch_size, eval_batch_size=32, method_options=options,
                                    output_dir=str(work), checkpoint_every=CHECKPOINT_EVERY, resume=resume, dev_size=0)
    metrics = softprompt.train(config, base=args.base).metrics
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"method": method, "task": task, "seed": seed, "options": options, **metrics, "model": args.model,
            "wall_seconds": round(time.time() - start, 1), "split": load_task(task).split_note, "threads": args.threads,
            "budget": {"steps": args.steps, "batch_size": args.batch_size}, "command": args.command, "softprompt_commit": commit,
            **({"resumed": True} if resume else {})}  # its wall_seconds cover the last stretch only


def fill(args) -> None:
    todo = [(m, t, s) for t in args.tasks for s in args.seeds for m in args.methods
            if not cell_path(args.results, m, t, s).exists()]
    print(f"{len(todo)} runs to do", flush=True)
    for method, task, seed in todo:
        print(f"--- {method} on {task}, seed {seed}", flush=True)
        try:
            record = run_cell(args, method, task, seed)
        except Exception:  # noqa: BLE001 -- one failing cell must not stop a grid of hours; it stays missing
            traceback.print_exc()
            continue
        write_text_atomic(cell_path(args.results, method, task, seed), json.dumps(record, indent=2))
        shutil.rmtree(work_folder(args, method, task, seed))
        print(f"    accuracy {record['accuracy']:.3f} in {record['wall_seconds']:.0f} s", flush=True)


def load_cells(results: Path) -> dict[tuple[str, str], list[dict]]:
    cells = {}
    for path in sorted(results.glob("*/*/seed*.json")):
        record = json.loads(path.read_text())
        cells.setdefault((record["method"], record["task"]), []).append(record)
    return cells


def report_text(args, cells: dict) -> str:
    seeds = len(args.seeds)
    lines = [f"# Vision grid on {args.model}", "", f"Built by `{args.command}` from the cells in `benchmarks/results/vision/`.",
             "", f"Every run: {args.steps} AdamW steps of batch {args.batch_size} through softprompt's Trainer, each method "
             "with its default learning rates, the last prompt kept (no dev set), test accuracy on the fixed 2,000-image "
             "test subset. Mean ± std over the seeds present (n/N); a seed changes the initialisation and the batch "
             "order, not the few-shot images (see the split notes). s/step: median step time of one run on a shared, "
             "loaded 2-core CPU with torch threads 1 - a rough size, not a speed comparison.", "",
             *table_header(args.tasks)]
    lines += [table_row(cells, method, args.tasks, seeds) for method in args.methods]
    lines += ["", "## The claims, seed by seed (same seed: same initial head, same batches, same test images)", ""]
    for claim, method, baseline in CLAIMS:
        for task in args.tasks:
            ours = {r["seed"]: 100 * r["accuracy"] for r in cells.get((method, task), [])}
            theirs = {r["seed"]: 100 * r["accuracy"] for r in cells.get((baseline, task), [])}
            shared = sorted(ours.keys() & theirs.keys())
            if not shared:
                lines.append(f"- {claim}, {task}: no seed measured for both yet: **open**")
                continue
            wins = sum(ours[s] > theirs[s] for s in shared)
            verdict = "holds" if wins == len(shared) else "does not hold" if wins == 0 else "mixed"
            detail = ", ".join(f"{ours[s] - theirs[s]:+.1f}" for s in shared)
            lines.append(f"- {claim}, {task}: better on {wins} of {len(shared)} seeds ({detail} points): **{verdict}**"
                         + (f" (on {len(shared)} of {seeds} seeds)" if len(shared) < seeds else ""))
    missing = [f"{m} on {t} seed {s}" for t in args.tasks for m in args.methods for s in args.seeds
               if not cell_path(args.results, m, t, s).exists()]
    rows = carve_stats(load_task(args.tasks[0])).rows
    lines += ["", f"One standard error of an accuracy near 65% on {rows:,} test images: ± {100 * (0.65 * 0.35 / rows) ** 0.5:.1f} "
              "points: differences of means below that are within the test sample's noise.", "",
              "Missing cells: " + (", ".join(missing) + " (`python benchmarks/vision_grid.py` fills them)" if missing else "none"), "",
              "Splits:", *[f"- {load_task(t).split_note}" for t in args.tasks],
              "", "![accuracy by method and task](vision_results.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model", default="dinov2-s-112", help="dinov2-s-112 (112 px: 64 patches) or dinov2-s (224 px)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "vision")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "vision_results.md")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.command = "python benchmarks/vision_grid.py " + " ".join(sys.argv[1:])
    args.methods, args.tasks = args.methods.split(","), args.tasks.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown grid methods {unknown}; choose from {', '.join(METHODS)}")
    torch.set_num_threads(args.threads)
    if not args.report_only:
        args.base = load_model(args.model)
        fill(args)
    cells = load_cells(args.results)
    write_text_atomic(args.report, report_text(args, cells))
    chart(cells, args.methods, args.tasks, args.report.with_suffix(".png"))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
