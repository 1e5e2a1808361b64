"""Compare every method with zero-shot and LoRA on several tasks and seeds, one cell at a time.

Each (method, task, seed) cell is its own run whose result is kept as a JSON file under the results
folder; cells already there are skipped, and the report (docs/results.md + a bar chart) is rebuilt from
whatever cells exist, marking the missing ones. So the grid can be filled over several sessions.

    python benchmarks/compare.py                       # the full grid (many hours on 2 CPU cores)
    python benchmarks/compare.py --tasks sst2 --seeds 0 --methods prompt-tuning,capt
    python benchmarks/compare.py --report-only         # rebuild the report from existing cells
    python benchmarks/compare.py --plan                # list the runs still to do and how long they should take
    python benchmarks/compare.py --tasks sst2 --seeds 0 --methods capt --option learning_rate=0.03

A run with --option is a variant: its cells are kept apart (e.g. capt@learning_rate=0.03/) and reported
in their own table beside the default method on the same seeds, never mixed into the main table.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import softprompt  # noqa: E402
from softprompt.evaluation import zero_shot  # noqa: E402
from softprompt.configs import parse_options  # noqa: E402
from softprompt.evaluation import accuracy  # noqa: E402
from softprompt.runtime.batching import bucketed_batches, encode  # noqa: E402
from softprompt.runtime.scoring import lm_loss, no_prompt  # noqa: E402
from softprompt.errors import SoftPromptError  # noqa: E402
from softprompt.storage import write_text_atomic  # noqa: E402
from softprompt.methods import METHODS, method_class  # noqa: E402
from softprompt.backbones import FrozenModel, load_model  # noqa: E402
from softprompt.training.plots import plt  # noqa: E402
from softprompt.tasks import load_task  # noqa: E402

ZERO_SHOT, LORA = "zero-shot", "lora"
JOINT = {"multitask-prompt-tuning"}  # trained on all the run's tasks at once: one run fills a cell per task
TASKS = ["sst2", "rte", "mrpc", "boolq"]
CLAIMS = [  # (the claim, method, baseline, on how many tasks it must hold: None = every task)
    ("LoPA >= prompt tuning (same m)", "lopa", "prompt-tuning", 3),
    ("CaPT (one vector per layer) >= prompt tuning (20 tokens)", "capt", "prompt-tuning", 3),
    ("PT-MoE >= prompt tuning", "pt-moe", "prompt-tuning", None),
]
MUST_BEAT_ZERO_SHOT = ["sst2", "boolq"]


def versions() -> dict:
    import peft
    import transformers

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"softprompt_commit": commit, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": platform.python_version()}


def run_method(method: str, tasks: list[str], seed: int, args) -> dict[str, dict]:
    """Train `method` on the tasks at once (one task for all but JOINT methods); each task's test result.
    A joint run gets `steps` per task, so each task sees as many of its own batches as a single-task run."""
    with tempfile.TemporaryDirectory() as folder:
        config = softprompt.TrainConfig(task=",".join(tasks), method=method, seed=seed, max_steps=args.steps * len(tasks),
                                        method_options=args.options,
                                        batch_size=args.batch_size, max_length=args.max_length, output_dir=folder,
                                        zero_shot=False, checkpoint_every=10**9,
                                        dev_size=0)  # every method trains on the whole train carve and keeps its last prompt
        result = softprompt.train(config, base=args.base)
    joint = {"joint_tasks": tasks} if len(tasks) > 1 else {}
    return {task: {"accuracy": prompt.info["metrics"]["accuracy"], **joint,  # prompts come in the order of the tasks
                   **{key: prompt.info["metrics"].get(key) for key in ("trainable_parameters", "seconds_per_step", "steps")}}
            for task, prompt in zip(tasks, result.prompts.values(), strict=True)}


def run_lora(task_name: str, seed: int, args) -> dict:
    """LoRA r=8 on q,v through peft, trained with the same batches, loss, schedule and step count."""
    from peft import LoraConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    fresh = load_model(args.base.name)
    model = get_peft_model(fresh.model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    base = FrozenModel(fresh.name, model, fresh.tokenizer, fresh.fingerprint)
    task = load_task(task_name)
    train = encode(base, task.train, args.max_length)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lora_lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * args.steps), args.steps)
    lengths = [len(e.context) + len(e.target) for e in train]
    step, epoch, times = 0, 0, []
    model.train()
    while step < args.steps:
        for batch in bucketed_batches(lengths, args.batch_size, seed, epoch):
            start = time.perf_counter()
            lm_loss(base, no_prompt, [train[i] for i in batch])[0].backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step(), scheduler.step(), optimizer.zero_grad()
            times.append(time.perf_counter() - start)
            step += 1
            if step == args.steps:
                break
        epoch += 1
    model.eval()
    score = accuracy(base, no_prompt, encode(base, task.test, args.max_length), task, 16)
    return {"accuracy": score, "trainable_parameters": sum(p.numel() for p in params),
            "seconds_per_step": statistics.median(times), "steps": step}


def run_cells(method: str, tasks: list[str], seed: int, args) -> dict[str, dict]:
    """One run: the results of the cells (method, task, seed) for each task (several only for JOINT methods)."""
    if method == ZERO_SHOT:
        return {tasks[0]: {"accuracy": zero_shot(args.base, load_task(tasks[0]), max_length=args.max_length)["accuracy"],
                           "trainable_parameters": 0, "seconds_per_step": None, "steps": 0}}
    if method == LORA:
        return {tasks[0]: run_lora(tasks[0], seed, args)}
    return run_method(method, tasks, seed, args)


def variant_name(method: str, options: dict) -> str:
    """The name a method's cells go under: the method itself, or e.g. capt@learning_rate=0.03 for a variant."""
    return method + "".join(f"@{key}={value}" for key, value in sorted(options.items()))


def method_options(methods: list[str], pairs: list[str]) -> dict:
    """--option KEY=VALUE pairs as typed method options, checked against every method of the run before any runs."""
    if not pairs:
        return {}
    if {ZERO_SHOT, LORA} & set(methods):
        raise SoftPromptError("--option applies to soft-prompt methods only (LoRA's learning rate is --lora-lr)")
    for method in methods:  # every method of the run must accept them; they read alike for each
        options = parse_options(method_class(method).config_class, pairs, f"--option for {method}")
    return options


def cell_path(results: Path, method: str, task: str, seed: int, options: dict | None = None) -> Path:
    return results / Path(task).stem / variant_name(method, options or {}) / f"seed{seed}.json"


def joint_tasks_of(path: Path) -> list[str] | None:
    """The tasks of the joint run that wrote this cell (None: no cell, or a single-task run)."""
    return json.loads(path.read_text()).get("joint_tasks") if path.exists() else None


def runs_to_do(args, methods: list[str], tasks: list[str], seeds: list[int]) -> list[tuple[str, list[str], int]]:
    """(method, tasks, seed) of each run whose cells are not all there. A JOINT method's run covers every task,
    and its cells count as done only if a run on the same tasks wrote them: a 3-task run is another experiment."""
    runs = [(m, [t], s) for t in tasks for m in methods if m not in JOINT for s in (seeds if m != ZERO_SHOT else [0])]
    runs += [(m, tasks, s) for m in methods if m in JOINT for s in seeds]

    def done(method: str, run_tasks: list[str], seed: int) -> bool:
        paths = [cell_path(args.results, method, t, seed, args.options) for t in run_tasks]
        if len(run_tasks) > 1:
            return all(joint_tasks_of(path) == run_tasks for path in paths)
        return paths[0].exists() and joint_tasks_of(paths[0]) is None
    return [run for run in runs if not done(*run)]


def plan(args, methods: list[str], tasks: list[str], seeds: list[int]) -> None:
    """Print the runs still to do, each with the median wall time of the done cells most like it."""
    walls, by_task = {}, {}  # wall seconds of the trained cells by (method, task), and by task for methods without one
    for path in args.results.glob("*/*/seed*.json"):
        record = json.loads(path.read_text())
        if record["method"] == ZERO_SHOT or "options" in record:
            continue
        task = Path(record["task"]).stem
        walls.setdefault((record["method"], task), []).append(record["wall_seconds"])
        if "joint_tasks" not in record:  # a joint run's wall time covers all its tasks
            by_task.setdefault(task, []).append(record["wall_seconds"])

    def estimate(method: str, run_tasks: list[str]) -> float | None:  # a joint run's cells each hold its whole wall time
        guesses = [walls.get((method, Path(t).stem)) or by_task.get(Path(t).stem) for t in run_tasks]
        return max(statistics.median(g) for g in guesses) if all(guesses) else None

    todo = [(run, estimate(run[0], run[1])) for run in runs_to_do(args, methods, tasks, seeds)]
    known = [seconds for _, seconds in todo if seconds is not None]
    print(f"{len(todo)} runs to do, about {timedelta(seconds=round(sum(known)))} by the wall times of the cells done"
          + (f" ({len(todo) - len(known)} with no done cell to go by)" if len(known) < len(todo) else ""))
    for (method, run_tasks, seed), seconds in todo:
        print(f"  {variant_name(method, args.options)} on {','.join(run_tasks)}, seed {seed}: "
              + (str(timedelta(seconds=round(seconds))) if seconds is not None else "?"))


def fill(args, methods: list[str], tasks: list[str], seeds: list[int]) -> None:
    todo = runs_to_do(args, methods, tasks, seeds)
    print(f"{len(todo)} runs to do", flush=True)
    for method, run_tasks, seed in todo:
        print(f"--- {variant_name(method, args.options)} on {','.join(run_tasks)}, seed {seed}", flush=True)
        replaced = [t for t in run_tasks if cell_path(args.results, method, t, seed, args.options).exists()]
        if replaced:  # a joint run whose cells came from other tasks (git keeps the old cells)
            print(f"    replaces the existing cells on {','.join(replaced)}", flush=True)
        start = time.time()
        results = run_cells(method, run_tasks, seed, args)
        variant = {"options": args.options} if args.options else {}
        for task, result in results.items():
            record = {"method": method, **variant, "task": task, "seed": seed, **result, "wall_seconds": round(time.time() - start, 1),
                      "split": load_task(task).split_note, "budget": {"steps": args.steps, "batch_size": args.batch_size,
                      "max_length": args.max_length}, "command": args.command, **versions()}
            path = cell_path(args.results, method, task, seed, args.options)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(record, indent=2))
            print(f"    {task}: accuracy {record['accuracy']:.3f}", flush=True)


def report(args, methods: list[str], tasks: list[str], seeds: list[int]) -> None:
    cells = {}
    for path in args.results.glob("*/*/seed*.json"):
        record = json.loads(path.read_text())
        cells.setdefault((variant_name(record["method"], record.get("options", {})), Path(record["task"]).stem), []).append(record)
    methods, tasks, seeds = grid_so_far(cells, methods, tasks, seeds)
    loaded = [load_task(t) for t in tasks]
    tasks = [Path(t).stem for t in tasks]
    carves = {stem: carve_stats(task) for stem, task in zip(tasks, loaded, strict=True)}
    commands = sorted({r["command"] for runs in cells.values() for r in runs})
    lines = [f"# Method comparison on {args.model}", "",
             f"Report built by: `{args.command}` from the cells in `{args.results.name}/`, which these commands ran:",
             *[f"- `{c}`" for c in commands], "",
             f"Budget per run: {args.steps} optimizer steps of batch {args.batch_size}, inputs cut to {args.max_length} tokens. "
             "Accuracy on each task's held-out test carve (see the split notes), mean ± std over the seeds present; "
             "`n/N` says how many seeds of the grid ran. Missing cells are marked —. "
             "s/step is the median of one run's steps and depends on what else the machine was doing: "
             "read it as a rough size, not a speed comparison.", "",
             "| method | " + " | ".join(tasks) + " | trainable params | s/step |", "|---" * (len(tasks) + 3) + "|",
             "| majority class (always the test carve's commonest answer) | " + " | ".join(f"{carves[t].floor:.1f}" if carves[t] else "—" for t in tasks) + " | 0 |  |",
             "| test rows (± one standard error of an accuracy there) | " + " | ".join(f"{carves[t].rows} (± {carves[t].standard_error:.1f})" if carves[t] else "—" for t in tasks) + " |  |  |"]
    for method in methods:
        row, params, speed = [], "", ""
        for task in tasks:
            runs = cells.get((method, task), [])
            wanted = 1 if method == ZERO_SHOT else len(seeds)
            if not runs:
                row.append(f"— (0/{wanted})")
                continue
            spread = f" ± {accuracy_spread(cells, method, task):.1f}" if len(runs) > 1 else ""
            row.append(f"{mean_accuracy(cells, method, task):.1f}{spread} ({len(runs)}/{wanted})")
            params = f"{runs[0]['trainable_parameters']:,}"
            timed = [r["seconds_per_step"] for r in runs if r.get("seconds_per_step")]
            speed = f"{statistics.median(timed):.2f}" if timed else speed
        lines.append(f"| {method} | " + " | ".join(row) + f" | {params} | {speed} |")
    lines += ["", *claim_lines(cells, methods, tasks, len(seeds), {t: c.standard_error for t, c in carves.items() if c}),
              *paired_lines(cells, tasks),
              *floor_lines(cells, methods, tasks, {t: c.floor for t, c in carves.items() if c}),
              *variant_lines(cells, tasks)]
    lines += joint_lines(cells, args.steps)
    splits = sorted({r["split"] for runs in cells.values() for r in runs})
    lines += ["", "Splits:", *[f"- {s}" for s in splits], "", "![accuracy by method and task](results.png)", ""]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.report, "\n".join(lines))
    chart(cells, methods, tasks, args.report.with_suffix(".png"))
    print(f"wrote {args.report}")


def grid_so_far(cells: dict, methods: list[str], tasks: list[str], seeds: list[int]) -> tuple[list[str], list[str], list[int]]:
    """This run's methods, tasks and seeds together with every one the cells hold, in the default grid's order:
    a run that fills part of the grid must not write a report that hides the rest."""
    records = [r for runs in cells.values() for r in runs]
    specs = {Path(r["task"]).stem: r["task"] for r in records} | {Path(t).stem: t for t in tasks}  # this run's spelling wins
    methods = in_order([*methods, *(r["method"] for r in records if "options" not in r)], [ZERO_SHOT, *METHODS, LORA])
    stems = in_order([*(Path(t).stem for t in tasks), *(Path(r["task"]).stem for r in records)], TASKS)
    return methods, [specs[stem] for stem in stems], sorted({*seeds, *(r["seed"] for r in records)})


def in_order(names: list[str], default: list[str]) -> list[str]:
    """Each name once: those of the default grid in its order, then the others as they came."""
    return sorted(dict.fromkeys(names), key=lambda name: default.index(name) if name in default else len(default))


def joint_lines(cells: dict, steps: int) -> list[str]:
    """What each JOINT method's cells were trained on, and a warning where seeds come from different task sets."""
    seeds_by_set = {}
    for (name, _), runs in sorted(cells.items()):
        if name.split("@")[0] not in JOINT:
            continue
        for r in runs:
            names = ",".join(Path(t).stem for t in r.get("joint_tasks", [r["task"]]))
            seeds_by_set.setdefault(name, {}).setdefault(names, set()).add(r["seed"])
    lines = []
    for name, sets in seeds_by_set.items():
        runs = "; ".join(f"on {names} (seeds {', '.join(map(str, sorted(seeds)))})" for names, seeds in sorted(sets.items()))
        lines.append(f"\n{name}: one run per seed trains on all its tasks at once, for {steps} steps per task: {runs}; "
                     "its cells are that run's per-task test accuracies."
                     + (" **Its cells mix runs on different task sets: rerun them on one set before comparing.**" if len(sets) > 1 else ""))
    return lines


def paired_lines(cells: dict, tasks: list[str]) -> list[str]:
    """Each claim seed by seed: a method and its baseline run with the same seed see the same training batches and
    the same test rows, so a loss on every seed says more than a mean margin inside the test carve's noise."""
    lines = ["", ("Seed by seed (same seed: same training batches, same test rows): on how many seeds the method "
                  "scored at least its baseline, and each seed's difference in points."), "",
             "| method vs baseline | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for method, baseline in dict.fromkeys((method, baseline) for _, method, baseline, _ in CLAIMS):
        row = []
        for task in tasks:
            ours, theirs = ({r["seed"]: 100 * r["accuracy"] for r in cells.get((name, task), [])} for name in (method, baseline))
            differences = [ours[seed] - theirs[seed] for seed in sorted(ours.keys() & theirs.keys())]
            row.append(f"{sum(d >= 0 for d in differences)} of {len(differences)}: " + ", ".join(f"{d:+.1f}" for d in differences)
                       if differences else "—")
        lines.append(f"| {method} vs {baseline} | " + " | ".join(row) + " |")
    return lines


def floor_lines(cells: dict, methods: list[str], tasks: list[str], floors: dict[str, float]) -> list[str]:
    """Which methods clear the majority-class floor per task: where none do, the claims above compare noise."""
    lines = ["", "Above the majority-class floor (mean accuracy > always answering the commonest label):", ""]
    for task in [t for t in tasks if t in floors]:
        scores = {m: mean_accuracy(cells, m, task) for m in methods}
        measured = {m: v for m, v in scores.items() if v is not None}
        above = [f"{m} {v:.1f}" for m, v in measured.items() if v > floors[task] + 1e-9]  # matching the floor is not clearing it
        lines.append(f"- {task} (floor {floors[task]:.1f}): {len(above)} of {len(measured)} measured" + (f": {', '.join(above)}" if above else ""))
    return lines


def variant_lines(cells: dict, tasks: list[str]) -> list[str]:
    """Each variant's accuracy beside its method's defaults on the same seeds (the fair comparison)."""
    variants = sorted({name for name, _ in cells if "@" in name})
    if not variants:
        return []
    lines = ["", "## Tried beyond the defaults", "",
             ("Variants set one of a method's options (--option); each cell reads variant vs the method's default "
              "on the same seeds (how many seeds), — where either is missing."), "",
             "| variant | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for name in variants:
        row = []
        for task in tasks:
            ours = {r["seed"]: r["accuracy"] for r in cells.get((name, task), [])}
            default = {r["seed"]: r["accuracy"] for r in cells.get((name.split("@")[0], task), [])}
            shared = sorted(ours.keys() & default.keys())
            row.append(f"{100 * statistics.mean(ours[s] for s in shared):.1f} vs "
                       f"{100 * statistics.mean(default[s] for s in shared):.1f} ({len(shared)})" if shared else "—")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines


class CarveStats(NamedTuple):
    rows: int  # labelled test rows
    floor: float  # majority share in points: the accuracy of always answering the commonest label
    standard_error: float  # binomial, of an accuracy at the floor, in points: smaller differences are noise


def carve_stats(task) -> CarveStats | None:
    """What a test carve lets one conclude; None for a carve without labels."""
    labels = Counter(e.label for e in task.test if e.label is not None)
    if not labels:
        return None
    share = labels.most_common(1)[0][1] / labels.total()
    return CarveStats(labels.total(), 100 * share, 100 * math.sqrt(share * (1 - share) / labels.total()))


def mean_accuracy(cells: dict, method: str, task: str) -> float | None:
    runs = cells.get((method, task))
    return 100 * statistics.mean(r["accuracy"] for r in runs) if runs else None


def accuracy_spread(cells: dict, method: str, task: str) -> float:
    """Standard deviation over seeds in points; 0 where fewer than two seeds ran."""
    scores = [100 * r["accuracy"] for r in cells.get((method, task), [])]
    return statistics.stdev(scores) if len(scores) > 1 else 0.0


def claim_lines(cells: dict, methods: list[str], tasks: list[str], grid_seeds: int, noise: dict[str, float]) -> list[str]:
    """The issue's claims, judged from the cells present: a claim holds once it has held on enough tasks,
    fails once too few tasks are left for it to hold, and is open otherwise. Margins smaller than the task's
    test-carve standard error (`noise`, points) are named: the verdict counts them, a reader should not."""
    lines = ["## The claims, judged on the cells present", "",
             "Means over the seeds present (the n/N above): a verdict reached on fewer seeds than the grid's can change.", ""]
    for claim, method, baseline, needed in CLAIMS:
        needed = min(needed or len(tasks), len(tasks))
        measured = [(t, mean_accuracy(cells, method, t), mean_accuracy(cells, baseline, t)) for t in tasks]
        measured = [(t, ours, theirs) for t, ours, theirs in measured if ours is not None and theirs is not None]
        held = sum(ours >= theirs for _, ours, theirs in measured)
        verdict = ("holds" if held >= needed else "does not hold" if held + len(tasks) - len(measured) < needed else "open")
        detail = "; ".join(f"{t} {ours:.1f} vs {theirs:.1f}" for t, ours, theirs in measured) or "no task measured"
        seeds = min((len(cells[(m, t)]) for t, *_ in measured for m in (method, baseline)), default=0)
        close = [f"{t} {ours - theirs:+.1f} vs ± {noise[t]:.1f}" for t, ours, theirs in measured if t in noise and abs(ours - theirs) < noise[t]]
        lines.append(f"- {claim}, needed on {needed} of {len(tasks)} tasks: held on {held} of {len(measured)} measured "
                     f"({detail}): **{verdict}**" + (f" (on {seeds} of {grid_seeds} seeds)" if seeds < grid_seeds else "")
                     + (f"; margins within one test-carve standard error: {', '.join(close)}" if close else ""))
    for task in [t for t in MUST_BEAT_ZERO_SHOT if t in tasks]:
        floor = mean_accuracy(cells, ZERO_SHOT, task)
        scores = {m: mean_accuracy(cells, m, task) for m in methods if m != ZERO_SHOT}
        if floor is None:
            lines.append(f"- every method beats zero-shot on {task}: no zero-shot cell yet: **open**")
            continue
        below = [f"{m} {v:.1f}" for m, v in scores.items() if v is not None and v <= floor]
        missing = [m for m, v in scores.items() if v is None]
        verdict = "does not hold" if below else "open" if missing else "holds"
        lines.append(f"- every method beats zero-shot ({floor:.1f}) on {task}: {sum(v is not None for v in scores.values()) - len(below)} "
                     f"of {len(scores)} do" + (f"; not: {', '.join(below)}" if below else "")
                     + (f"; no cell yet: {', '.join(missing)}" if missing else "") + f": **{verdict}**")
    return lines


def chart_floor(means: list[float], errors: list[float]) -> float:
    """The y-axis start: a multiple of 10 under every bar's lowest error-bar end, so no bar or whisker is cut
    (a fixed start hid zero-shot's 34.4 on mrpc), yet high enough that small differences stay visible."""
    lows = [mean - error for mean, error in zip(means, errors) if not math.isnan(mean)]
    return max(0.0, 10 * math.floor(min(lows, default=0) / 10 - 0.05))


def chart(cells: dict, methods: list[str], tasks: list[str], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(min(14, 4 + 2.5 * len(tasks)), 4.5))
    width = 0.8 / len(methods)
    colors = plt.get_cmap("tab20").colors  # more methods than the default 10-colour cycle
    all_means, all_errors = [], []
    for i, method in enumerate(methods):
        means = [math.nan if (mean := mean_accuracy(cells, method, t)) is None else mean for t in tasks]
        errors = [accuracy_spread(cells, method, t) for t in tasks]
        axis.bar([x + i * width for x in range(len(tasks))], means, width, yerr=errors, label=method, color=colors[i % len(colors)])
        all_means += means
        all_errors += errors
    axis.set_xticks([x + 0.4 - width / 2 for x in range(len(tasks))], tasks)
    axis.set_ylabel("test accuracy (%)")
    axis.set_ylim(chart_floor(all_means, all_errors), 100)
    axis.legend(fontsize=7, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join([ZERO_SHOT, *METHODS, LORA]))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per run (the same for every method)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256, help="inputs longer than this lose their beginning (BoolQ passages)")
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="set a method option (e.g. learning_rate=0.03) for a variant run; repeatable")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "compare")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from existing cells")
    parser.add_argument("--plan", action="store_true", help="list the runs still to do with estimated wall times; run nothing")
    args = parser.parse_args()
    args.command = "python benchmarks/compare.py " + " ".join(sys.argv[1:])
    methods, tasks, seeds = args.methods.split(","), args.tasks.split(","), [int(s) for s in args.seeds.split(",")]
    try:
        args.options = method_options(methods, args.option)
    except SoftPromptError as error:
        parser.error(str(error))
    if args.plan:
        plan(args, methods, tasks, seeds)
        return
    if not args.report_only:
        args.base = load_model(args.model)
        fill(args, methods, tasks, seeds)
    report(args, methods, tasks, seeds)


if __name__ == "__main__":
    main()
