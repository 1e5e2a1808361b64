r"""Compare every method with zero-shot and LoRA on several tasks and seeds, one cell at a time.

Each (method, task, seed) cell is its own run whose result is kept as a JSON file under the results
folder; cells already there are skipped, and the report (docs/results.md + a bar chart) is rebuilt from
whatever cells exist, marking the missing ones. So the grid can be filled over several sessions: a run stopped
mid-cell resumes from its last checkpoint (every 25 steps, under <results>/.runs/, which git ignores), and the rates
of a --lr-grid it has trained wait on the cell's shelf (<task>/<method>/unfinished/, committed with the cells), so even
a fresh checkout loses only the rate in progress. Several
processes can fill one folder at once (the same command started once per core): each skips the runs another holds.

    python benchmarks/compare.py                       # the full grid (many hours on 2 CPU cores)
    python benchmarks/compare.py --tasks sst2 --seeds 0 --methods prompt-tuning,capt
    python benchmarks/compare.py --report-only         # rebuild the report from existing cells
    python benchmarks/compare.py --plan                # list the runs still to do and how long they should take
    python benchmarks/compare.py --tasks sst2 --seeds 0 --methods capt --option learning_rate=0.03
    python benchmarks/compare.py --tasks sst2 --methods prompt-tuning --optimizers zo-sgd,cma-es,sharpzo

A run with --option is a variant: its cells are kept apart (e.g. capt@learning_rate=0.03/) and reported
in their own table beside the default method on the same seeds, never mixed into the main table.

--lr-grid gives every method the same tuning budget: each run trains once per rate on the train carve less a
seeded dev carve (--dev-size rows), and the rate whose best epoch scores highest there is tested; the chosen rate
and every rate's dev score go in the cell. A results folder holds one budget (steps, batch, length, grid): the
script refuses to add cells of another, so a tuned grid gets its own folder and report:

    python benchmarks/compare.py --lr-grid 1e-3,3e-3,1e-2,3e-2,1e-1 --tasks sst2,boolq,piqa,arc-easy,sciq \
        --results benchmarks/results/compare_tuned --report docs/results_tuned.md
    python benchmarks/compare.py --methods lopa,capt,pt-moe --preset paper     # the paper recipes' shapes, as variants

A grid widens in place: asked for rates the folder's cells lack (as 1e-1 was added to 1e-3..3e-2), a cell trains only the
missing rates and is tested again only if one of them beats its chosen rate on the dev carve; each rate's run depends
on nothing but the seed and the rate, so the cell is the one a fresh run of the wider grid writes.

A --preset run takes the preset's method options only: steps, batch and rate stay the comparison's, equal for all.
A method whose preset is its defaults (CaPT's paper preset) runs nothing: its default cells are that recipe.

--epochs N is the longer budget: every run (each rate of the grid) makes N passes over its train carve less the dev
carve instead of --steps, in its own folder:

    python benchmarks/compare.py --epochs 10 --lr-grid 1e-3,3e-3,1e-2,3e-2,1e-1 --tasks sst2 \
        --results benchmarks/results/compare_10_epochs --report docs/results_10_epochs.md

--optimizers adds an axis: a forward-only optimizer's cells (e.g. prompt-tuning+cma-es/) get the forward passes
AdamW's --steps cost (a step: a forward and a backward pass, counted as two forward passes) and are reported
in their own rows beside the method under AdamW.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import softprompt  # noqa: E402
from softprompt.evaluation import evaluate  # noqa: E402
from softprompt.runtime.scoring import no_prompt  # noqa: E402
from softprompt.configs import parse_options  # noqa: E402
from softprompt.backbones import load_model  # noqa: E402
from softprompt.errors import SoftPromptError  # noqa: E402
from softprompt.methods import METHODS, method_class  # noqa: E402
from softprompt.training.optimizers import optimizer_class  # noqa: E402
from softprompt.storage import write_text_atomic  # noqa: E402
from softprompt.tasks import load_task  # noqa: E402

# the report lives beside this script, and a script's own folder is first on sys.path
from compare_report import JOINT, LORA, TASKS, ZERO_SHOT, carve_stats, chart, grid_so_far, report_text  # noqa: E402

CHECKPOINT_EVERY = 25  # steps: what a run stopped mid-cell can lose
SHELF = "unfinished"  # the folder beside a cell where its trained rates wait (shelf_path)
LORA_OPTIONS = {"rank": 8, "alpha": 16.0, "target_modules": "q_proj,v_proj"}  # the LoRA baseline's fixed shape: r=8 on q,v


def versions() -> dict:
    import peft
    import transformers

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"softprompt_commit": commit, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": platform.python_version()}


def steps_within(optimizer: str, options: dict, adamw_steps: int) -> int:
    """The steps of `optimizer` (with its own options) that fit in the forward passes of `adamw_steps` AdamW steps."""
    return max(1, optimizer_class(optimizer).steps_within(options, 3 * adamw_steps))


def run_method(method: str, tasks: list[str], seed: int, args, options: dict, learning_rate: float = 0.0,
               optimizer: str = "adamw") -> dict[str, dict]:
    """Train `method` with these method options on the tasks at once (one task for all but JOINT methods); each
    task's test result. A learning rate of 0 keeps the method's (or optimizer's) own. A joint run gets `steps` per
    task, so each task sees as many of its own batches as a single-task run.

    With --lr-grid, one run per rate trains on the train carve less a dev carve of --dev-size rows (seeded by the
    seed; the test carve is never read) and the rate whose best epoch scores highest on the dev carve is the one
    whose prompt is tested; every rate's dev score goes into the cell.

    Each run checkpoints into the cell's work folder (work_folder) and resumes from there: a grid stopped mid-cell
    (a session's end) loses at most CHECKPOINT_EVERY steps of it. Each trained rate goes on the cell's shelf
    (shelf_path, committed), so a fresh checkout loses at most the rate in progress; the chosen rate's prompt is
    tested from the shelf. Each task's result carries the run's wall time, that of the processes before this one too."""
    from softprompt.training import checkpoints
    from softprompt.training.outputs import finish
    from softprompt.training.trainer import Trainer

    rates = args.lr_grid or [learning_rate]
    work = work_folder(args, method, tasks, seed, optimizer)
    tried = cell_to_widen(args, cell_path(args.results, method, tasks[0], seed, args.variant, optimizer)).get("dev_scores", {})
    shelf_file = shelf_path(args, method, tasks, seed, optimizer)
    shelf = shelved(shelf_file)

    def trainer_at(rate: float) -> Trainer:
        length = {"epochs": args.epochs} if args.epochs else {"max_steps": steps_within(optimizer, {}, args.steps) * len(tasks)}
        config = softprompt.TrainConfig(task=",".join(tasks), method=method, seed=seed, optimizer=optimizer, **length,
                                        method_options={**preset_options(method, args.preset), **options}, learning_rate=rate,
                                        batch_size=args.batch_size, max_length=args.max_length, output_dir=str(work / f"lr={rate:g}"),
                                        zero_shot=False, checkpoint_every=CHECKPOINT_EVERY,
                                        dev_size=args.dev_size if args.lr_grid else 0)  # no grid: train on the whole carve, keep the last prompt
        return Trainer(config, base=args.base)

    dev_scores = {}
    for rate in rates:
        if f"{rate:g}" in tried:
            dev_scores[rate] = tried[f"{rate:g}"]
            print(f"    lr {rate:g}: tried by the cell already (dev {dev_scores[rate]:.3f})", flush=True)
            continue
        if f"{rate:g}" in shelf["dev_scores"]:
            dev_scores[rate] = shelf["dev_scores"][f"{rate:g}"]
            print(f"    lr {rate:g}: trained already, on the shelf (dev {dev_scores[rate]:.3f})", flush=True)
            continue
        start, trainer = time.perf_counter(), trainer_at(rate)
        if (trainer.output_dir / checkpoints.CHECKPOINT).exists():
            checkpoints.load(trainer)  # refuses a checkpoint of another run
            print(f"    lr {rate:g}: resumed at step {trainer.step}", flush=True)
        before = sum(record.get("seconds", 0) for record in trainer.history)  # a resumed rate's steps in the stopped process
        trainer.train()
        dev_scores[rate] = trainer.best_score
        shelf = shelve(shelf_file, args, shelf, trainer, before + time.perf_counter() - start)
        del trainer  # the shelf keeps the best rate's prompt
    scores = {f"{rate:g}": score for rate, score in dev_scores.items()}
    best = max(rates, key=dev_scores.get)  # ties: the earlier rate
    if f"{best:g}" in tried:  # a rate the cell had tried wins: its test result stands
        return {task: {"dev_scores": scores, "wall_seconds": shelf["wall_seconds"]} for task in tasks}
    start, chosen = time.perf_counter(), trainer_at(best)
    restore(chosen, shelf_file, shelf)
    result = finish(chosen)
    wall = {"wall_seconds": shelf["wall_seconds"] + time.perf_counter() - start}  # the shelf's: every process's rates
    log = [json.loads(line) for line in (chosen.output_dir / "metrics.jsonl").read_text().splitlines()]
    joint = {"joint_tasks": tasks} if len(tasks) > 1 else {}
    cost = {"forward_passes": sum(r.get("forward_passes", 0) for r in log)}
    settings = {"train_settings": {**{key: getattr(chosen.config, key) for key in ("learning_rate", "lr_schedule", "batch_size", "max_steps")},
                                   "peak_lr": max(r["lr"] for r in log if "lr" in r)}}  # the rate in force (learning_rate 0: the default)
    if args.lr_grid:
        settings["dev_scores"] = scores
    return {task: {"accuracy": prompt.info["metrics"]["accuracy"], **joint, **cost, **settings, **wall,  # prompts come in the order of the tasks
                   **{key: prompt.info["metrics"].get(key) for key in ("trainable_parameters", "seconds_per_step", "steps", "correct")}}
            for task, prompt in zip(tasks, result.prompts.values(), strict=True)}


def shelf_path(args, method: str, tasks: list[str], seed: int, optimizer: str) -> Path:
    """Where a run's trained rates wait until its cells are written: beside its (first) cell, so they are committed
    with the cells and a grid split over sessions loses at most the rate in progress, even on a fresh checkout
    (.runs/ is not committed). The record holds each trained rate's dev score and the log of the best one so far,
    whose prompt state is the .safetensors file named after its rate (a few KB to a few MB)."""
    cell = cell_path(args.results, method, tasks[0], seed, args.variant, optimizer)
    return cell.parent / SHELF / cell.name


def shelf_state(path: Path, rate: str) -> Path:
    return path.with_name(f"{path.stem}.lr={rate}.safetensors")


def shelved(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"dev_scores": {}, "wall_seconds": 0.0}


def shelve(path: Path, args, shelf: dict, trainer, seconds: float) -> dict:
    """Put a trained rate on the shelf; its prompt state replaces the shelved one only if it scored higher on the
    dev carve (ties: the earlier rate). The record is rewritten before the old state goes, so a kill in between
    leaves a shelf that is whole."""
    from safetensors.torch import save_file

    from softprompt.training.checkpoints import end_of_run

    rate, best = f"{trainer.config.learning_rate:g}", shelf.get("best")
    updated = {"budget": budget(args), "dev_scores": {**shelf["dev_scores"], rate: trainer.best_score},
               "wall_seconds": shelf["wall_seconds"] + seconds, "best": best}
    if best is None or trainer.best_score > shelf["dev_scores"][best["rate"]]:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(trainer.best_state, shelf_state(path, rate))
        updated["best"] = {"rate": rate, **end_of_run(trainer)}
    write_text_atomic(path, json.dumps(updated))
    if best is not None and updated["best"] is not best:
        shelf_state(path, best["rate"]).unlink()
    return updated


def restore(trainer, path: Path, shelf: dict) -> None:
    """Give a fresh trainer at the shelf's best rate the state and log its run ended with: what finish() reads."""
    from safetensors.torch import load_file

    from softprompt.training.checkpoints import restore_end_of_run

    rate = shelf["best"]["rate"]
    restore_end_of_run(trainer, load_file(shelf_state(path, rate)), shelf["dev_scores"][rate], shelf["best"])


def shelf_records(results: Path) -> dict[tuple[str, str, int], dict]:
    """Every shelf in a results folder (shelf_path's layout), by task, method as its cells are named, and seed."""
    return {(path.parent.parent.parent.name, path.parent.parent.name, int(path.stem.removeprefix("seed"))): json.loads(path.read_text())
            for path in results.glob(f"*/*/{SHELF}/seed*.json")}


def clear_shelf(path: Path) -> None:
    for file in [path, *path.parent.glob(f"{path.stem}.lr=*.safetensors")]:
        file.unlink(missing_ok=True)
    if path.parent.exists() and not any(path.parent.iterdir()):
        path.parent.rmdir()


def work_folder(args, method: str, tasks: list[str], seed: int, optimizer: str) -> Path:
    """Where a run's checkpoints wait until its cells are written (then it is removed; git ignores .runs/)."""
    return args.results / ".runs" / "+".join(Path(t).stem for t in tasks) / variant_name(method, args.variant, optimizer) / f"seed{seed}"


def preset_options(method: str, preset: str) -> dict:
    """A preset's method options (the recipe's shape). Its training values (steps, batch, rate) are not taken: every
    method of a comparison gets the same budget, and the rate is the method's default or the grid's choice."""
    return method_class(method).presets[preset].get("method_options", {}) if preset else {}


def preset_changes(method: str, preset: str) -> dict:
    """The preset's method options that differ from the method's defaults: none, and its cells would repeat the method's."""
    defaults = method_class(method).config_class()
    return {key: value for key, value in preset_options(method, preset).items() if getattr(defaults, key) != value}


def run_cells(method: str, tasks: list[str], seed: int, args, optimizer: str = "adamw") -> dict[str, dict]:
    """One run: the results of the cells (method, task, seed) for each task (several only for JOINT methods)."""
    if method == ZERO_SHOT:
        start = time.perf_counter()
        bare = evaluate(args.base, no_prompt, load_task(tasks[0]), max_length=args.max_length, per_example=True)
        return {tasks[0]: {**bare, "trainable_parameters": 0, "seconds_per_step": None, "steps": 0, "wall_seconds": time.perf_counter() - start}}
    if method == LORA:  # trained like every method, with the same batches, schedule and steps; --option is refused for it
        return run_method(method, tasks, seed, args, LORA_OPTIONS, args.lora_lr if optimizer == "adamw" else 0.0, optimizer)
    return run_method(method, tasks, seed, args, args.options, optimizer=optimizer)


def check_grid(args) -> None:
    if args.epochs < 0 or (args.epochs and args.optimizers != "adamw"):
        raise SoftPromptError(f"--epochs needs a count >= 1 and AdamW alone (a forward-only optimizer's budget is AdamW's "
                              f"steps in forward passes), got {args.epochs} and {args.optimizers}")
    if not args.lr_grid:
        return
    if args.dev_size < 1 or min(args.lr_grid) <= 0:
        raise SoftPromptError(f"--lr-grid needs rates > 0 and --dev-size >= 1, got {args.lr_grid} and {args.dev_size}")
    if "learning_rate" in args.options:
        raise SoftPromptError("--lr-grid chooses the learning rate: drop --option learning_rate")
    fixed = [name for name in args.optimizers.split(",") if "learning_rate" not in optimizer_class(name).reads]
    if fixed:
        raise SoftPromptError(f"--lr-grid: {', '.join(fixed)} has no learning rate to choose")


def variant_name(method: str, options: dict, optimizer: str = "adamw") -> str:
    """The name a method's cells go under: the method itself, e.g. capt@learning_rate=0.03 for a variant, and
    e.g. prompt-tuning+cma-es for another optimizer than AdamW."""
    return method + ("" if optimizer == "adamw" else f"+{optimizer}") + "".join(f"@{key}={value}" for key, value in sorted(options.items()))


def method_options(methods: list[str], pairs: list[str], preset: str) -> dict:
    """--option KEY=VALUE pairs as typed method options, checked against every method of the run before any runs,
    and --preset checked to be a preset of each."""
    if (pairs or preset) and {ZERO_SHOT, LORA} & set(methods):
        raise SoftPromptError("--option and --preset apply to soft-prompt methods only (LoRA's learning rate is --lora-lr)")
    lacking = [method for method in methods if preset not in method_class(method).presets] if preset else []
    if lacking:
        raise SoftPromptError(f"--preset {preset}: {', '.join(lacking)} has no such preset (methods with one: "
                              f"{', '.join(name for name, cls in METHODS.items() if preset in cls.presets)})")
    if not pairs:
        return {}
    for method in methods:  # every method of the run must accept them; they read alike for each
        options = parse_options(method_class(method).config_class, pairs, f"--option for {method}")
    return options


def variant_of(record: dict) -> dict:
    """What sets a cell's run apart from the method's defaults: its --option values and its --preset."""
    return {**record.get("options", {}), **({"preset": record["preset"]} if "preset" in record else {})}


def budget(args) -> dict:
    """What every cell of a results folder must share to be compared: steps (or epochs), batch, input length, and the
    learning-rate grid with its dev carve when there is one."""
    length = {"epochs": args.epochs} if args.epochs else {"steps": args.steps}
    shared = {**length, "batch_size": args.batch_size, "max_length": args.max_length}
    return {**shared, "lr_grid": args.lr_grid, "dev_size": args.dev_size} if args.lr_grid else shared


def narrower(recorded: dict, wanted: dict) -> bool:
    """Whether a recorded budget is the wanted one less some rates of its learning-rate grid: its cells can be widened."""
    def rest(budget: dict) -> dict:
        return {key: value for key, value in budget.items() if key != "lr_grid"}
    return bool(recorded.get("lr_grid")) and set(recorded["lr_grid"]) < set(wanted.get("lr_grid", [])) and rest(recorded) == rest(wanted)


def cell_to_widen(args, path: Path) -> dict:
    """The cell at `path` if it ran on a narrower grid of this budget: the rates of its dev_scores need not run again.
    Empty for a missing cell, a cell of this very budget, and a zero-shot cell (it has no rate)."""
    if not path.exists():
        return {}
    record = json.loads(path.read_text())
    return record if "dev_scores" in record and narrower(record["budget"], budget(args)) else {}


def check_budget(args) -> None:
    """Refuse to add cells to a folder whose cells, or unfinished runs, ran on another budget (they would be
    skipped as done, resumed, or compared with cells that had more or less of a chance) unless it only lacks rates
    of this grid (they are widened); else record this budget as the one the folder's unfinished runs (.runs/, and
    shelves: shelf_path) belong to."""
    unfinished = args.results / ".runs" / "budget.json"
    shelves = [shelf["budget"] for shelf in shelf_records(args.results).values()]
    recorded = [r["budget"] for r in cell_records(args.results)] + shelves + ([json.loads(unfinished.read_text())] if unfinished.exists() else [])
    others = sorted({json.dumps(b) for b in recorded if b != budget(args) and not narrower(b, budget(args))})
    if others:
        raise SoftPromptError(f"the cells or unfinished runs (.runs/, */{SHELF}/) in {args.results} ran with {' or '.join(others)}, this run "
                              f"asks for {json.dumps(budget(args))}: give another budget its own --results (and --report)")
    unfinished.parent.mkdir(parents=True, exist_ok=True)
    unfinished.write_text(json.dumps(budget(args)))


def cell_path(results: Path, method: str, task: str, seed: int, options: dict | None = None, optimizer: str = "adamw") -> Path:
    """Where a cell lives; `options` is its variant (variant_of)."""
    return results / Path(task).stem / variant_name(method, options or {}, optimizer) / f"seed{seed}.json"


def joint_tasks_of(path: Path) -> list[str] | None:
    """The tasks of the joint run that wrote this cell (None: no cell, or a single-task run)."""
    return json.loads(path.read_text()).get("joint_tasks") if path.exists() else None


def cell_records(results: Path) -> list[dict]:
    """Every cell written so far (any method, task, seed or variant)."""
    return [json.loads(path.read_text()) for path in results.glob("*/*/seed*.json")]


def load_cells(results: Path) -> dict[tuple[str, str], list[dict]]:
    """The cells as the report reads them: each (method or variant, task)'s records, one per seed."""
    cells = {}
    for record in cell_records(results):
        name = variant_name(record["method"], variant_of(record), record.get("optimizer", "adamw"))
        cells.setdefault((name, Path(record["task"]).stem), []).append(record)
    return cells


def runs_to_do(args, methods: list[str], tasks: list[str], seeds: list[int]) -> list[tuple[str, list[str], int, str]]:
    """(method, tasks, seed, optimizer) of each run whose cells are not all there. A JOINT method's run covers every
    task, and its cells count as done only if a run on the same tasks wrote them: a 3-task run is another experiment."""
    optimizers = args.optimizers.split(",")
    runs = [(m, [t], s, o) for t in tasks for m in methods if m not in JOINT for o in optimizers
            for s in (seeds if m != ZERO_SHOT else [0]) if m != ZERO_SHOT or o == optimizers[0]]
    runs += [(m, tasks, s, o) for m in methods if m in JOINT for o in optimizers for s in seeds]

    return [run for run in runs if not run_done(args, *run)]


def run_done(args, method: str, run_tasks: list[str], seed: int, optimizer: str) -> bool:
    paths = [cell_path(args.results, method, t, seed, args.variant, optimizer) for t in run_tasks]
    if any(cell_to_widen(args, path) for path in paths):
        return False
    if len(run_tasks) > 1:
        return all(joint_tasks_of(path) == run_tasks for path in paths)
    return paths[0].exists() and joint_tasks_of(paths[0]) is None


@contextlib.contextmanager
def other_holder(work: Path):
    """Hold the run whose work folder this is while the block runs: yields None once this process holds it, else
    the pid of the live process that does. So several processes filling one results folder (one per core) never
    run the same cell. The kernel's lock dies with its process: a run stopped by a session's end is free again."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "holder.pid", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            yield lock.read().strip() or "?"
            return
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield None


def plan(args, methods: list[str], tasks: list[str], seeds: list[int]) -> None:
    """Print the runs still to do, each with the median wall time per rate of the done cells most like it, times the
    rates it has to train (a cell to widen trains only the rates it lacks)."""
    walls, by_task = {}, {}  # wall seconds per rate of the trained cells by (method, task), and by task for methods without one
    for record in cell_records(args.results):
        if record["method"] == ZERO_SHOT or variant_of(record) or record.get("optimizer", "adamw") != "adamw":
            continue
        task, per_rate = Path(record["task"]).stem, record["wall_seconds"] / len(record.get("dev_scores") or [None])
        walls.setdefault((record["method"], task), []).append(per_rate)
        if "joint_tasks" not in record:  # a joint run's wall time covers all its tasks
            by_task.setdefault(task, []).append(per_rate)

    def estimate(method: str, run_tasks: list[str], seed: int, optimizer: str) -> float | None:  # a joint run's cells each hold its whole wall time
        guesses = [walls.get((method, Path(t).stem)) or by_task.get(Path(t).stem) for t in run_tasks]
        tried = cell_to_widen(args, cell_path(args.results, method, run_tasks[0], seed, args.variant, optimizer)).get("dev_scores", {})
        shelf = shelved(shelf_path(args, method, run_tasks, seed, optimizer))["dev_scores"]
        rates = len(args.lr_grid or [None]) - len(tried) - len(shelf)
        return rates * max(statistics.median(g) for g in guesses) if all(guesses) else None

    todo = [(run, estimate(*run)) for run in runs_to_do(args, methods, tasks, seeds)]
    known = [seconds for _, seconds in todo if seconds is not None]
    print(f"{len(todo)} runs to do, about {timedelta(seconds=round(sum(known)))} by the wall times of the cells done"
          + (f" ({len(todo) - len(known)} with no done cell to go by)" if len(known) < len(todo) else ""))
    for (method, run_tasks, seed, optimizer), seconds in todo:
        print(f"  {variant_name(method, args.variant, optimizer)} on {','.join(run_tasks)}, seed {seed}: "
              + (str(timedelta(seconds=round(seconds))) if seconds is not None else "?"))


def fill(args, methods: list[str], tasks: list[str], seeds: list[int]) -> None:
    todo = runs_to_do(args, methods, tasks, seeds)
    print(f"{len(todo)} runs to do", flush=True)
    for method, run_tasks, seed, optimizer in todo:
        name = f"{variant_name(method, args.variant, optimizer)} on {','.join(run_tasks)}, seed {seed}"
        work = work_folder(args, method, run_tasks, seed, optimizer)
        with other_holder(work) as holder:
            if holder:
                print(f"--- {name}: process {holder} is running it; skipped", flush=True)
                continue
            if not run_done(args, method, run_tasks, seed, optimizer):  # else another process finished it meanwhile
                print(f"--- {name}", flush=True)
                fill_run(args, method, run_tasks, seed, optimizer)
            shutil.rmtree(work, ignore_errors=True)  # its checkpoints and lock, once its cells are written


def fill_run(args, method: str, run_tasks: list[str], seed: int, optimizer: str) -> None:
    """One run, and its cells written."""
    paths = {t: cell_path(args.results, method, t, seed, args.variant, optimizer) for t in run_tasks}
    widened = {t: record for t, path in paths.items() if (record := cell_to_widen(args, path))}
    replaced = [t for t, path in paths.items() if path.exists() and t not in widened]
    if replaced:  # a joint run whose cells came from other tasks (git keeps the old cells)
        print(f"    replaces the existing cells on {','.join(replaced)}", flush=True)
    results = run_cells(method, run_tasks, seed, args, optimizer)
    variant = ({"options": args.options} if args.options else {}) | ({"preset": args.preset} if args.preset else {})
    variant |= {"optimizer": optimizer} if optimizer != "adamw" and method != ZERO_SHOT else {}
    for task, result in results.items():
        before = widened.get(task, {})
        kept = {} if "accuracy" in result else before  # a widened cell whose chosen rate stood: its test result and the versions that made it
        record = {**kept, "method": method, **variant, "task": task, "seed": seed, **result,
                  "wall_seconds": round(before.get("wall_seconds", 0) + result["wall_seconds"], 3), "split": load_task(task).split_note,
                  "budget": budget(args), "command": args.command, **({} if kept else versions())}
        if before:
            record["widened_from"] = {"lr_grid": before["budget"]["lr_grid"], "command": before["command"]}
        path = cell_path(args.results, method, task, seed, args.variant, variant.get("optimizer", "adamw"))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(record, indent=2))
        print(f"    {task}: accuracy {record['accuracy']:.3f}", flush=True)
    clear_shelf(shelf_path(args, method, run_tasks, seed, optimizer))


def report(args, methods: list[str], tasks: list[str], seeds: list[int]) -> None:
    """Rebuild the report and its chart from every cell there, this run's or not."""
    cells = load_cells(args.results)
    methods, tasks, seeds = grid_so_far(cells, methods, tasks, seeds)
    carves = {Path(t).stem: carve_stats(load_task(t)) for t in tasks}
    stems = [Path(t).stem for t in tasks]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.report, report_text(args, cells, methods, stems, seeds, carves, shelf_records(args.results)))
    chart(cells, methods, stems, args.report.with_suffix(".png"), {t: c.floor for t, c in carves.items() if c})
    print(f"wrote {args.report}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join([ZERO_SHOT, *METHODS, LORA]))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=150, help="AdamW steps per run (the same for every method); "
                        "a forward-only optimizer gets the same forward passes, a backward pass counted as two")
    parser.add_argument("--epochs", type=int, default=0, help="train this many epochs of each task's train carve "
                        "(less the dev carve) instead of --steps: the longer budget, in a results folder of its own")
    parser.add_argument("--optimizers", default="adamw", help="comma-separated: AdamW and/or forward-only optimizers")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256, help="inputs longer than this lose their beginning (BoolQ passages)")
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--lr-grid", type=lambda text: [float(rate) for rate in text.split(",")], default=[],
                        help="comma-separated learning rates: each run tries them all, picks one on a dev carve of the "
                             "train part (--dev-size rows) and tests that one; the chosen rate and every rate's dev score go in the cell")
    parser.add_argument("--dev-size", type=int, default=100, help="rows of the train carve held out to pick the rate (with --lr-grid)")
    parser.add_argument("--preset", default="", help="a variant: each method's named preset (e.g. paper) for its options, "
                        "at the comparison's budget (steps, batch and rate stay the comparison's)")
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
        args.options = method_options(methods, args.option, args.preset)
        check_grid(args)
        if not (args.plan or args.report_only):
            check_budget(args)
    except SoftPromptError as error:
        parser.error(str(error))
    args.variant = {**args.options, **({"preset": args.preset} if args.preset else {})}
    if args.preset and not args.options:
        same = [method for method in methods if not preset_changes(method, args.preset)]
        if same:  # e.g. CaPT, published as its defaults are: a variant run would repeat the default cells
            print(f"--preset {args.preset}: {', '.join(same)} already runs it by default; nothing to run for {'it' if len(same) == 1 else 'them'}", flush=True)
        methods = [method for method in methods if method not in same]
    if args.plan:
        plan(args, methods, tasks, seeds)
        return
    if not args.report_only:
        args.base = load_model(args.model)
        fill(args, methods, tasks, seeds)
    report(args, methods, tasks, seeds)


if __name__ == "__main__":
    main()
