"""The comparison report (docs/results.md and its bar chart), built from the cells benchmarks/compare.py wrote.

`cells` maps (method or variant name, task) to that cell's run records, one per seed. Everything here is a
function of those records and the tasks' test carves, so it is tested without training anything.
"""
from __future__ import annotations

import math
import shlex
import statistics
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from paired import holm, mcnemar, mcnemar_against_untrained, p_text  # beside this file, which is on the path of the scripts and the tests that load it
from softprompt.methods import METHODS
from softprompt.training.plots import plt

ROOT = Path(__file__).resolve().parent.parent
# The grid's names, shared with the runner (benchmarks/compare.py), which imports them from here.
ZERO_SHOT, LORA = "zero-shot", "lora"
JOINT = {"multitask-prompt-tuning"}  # trained on all the run's tasks at once: one run fills a cell per task
TASKS = ["sst2", "rte", "mrpc", "boolq"]
CLAIMS = [  # (the claim, method, baseline, on how many tasks it must hold: None = every task)
    ("LoPA >= prompt tuning (same m)", "lopa", "prompt-tuning", 3),
    ("CaPT (one vector per layer) >= prompt tuning (20 tokens)", "capt", "prompt-tuning", 3),
    ("PT-MoE >= prompt tuning", "pt-moe", "prompt-tuning", None),
]
MUST_BEAT_ZERO_SHOT = ["sst2", "boolq"]
# A test carve under this many labelled rows (RTE 100, MRPC 128: ± 4-5 points) cannot tell these methods apart:
# its task stays in the table, with its floor, but judges no claim.
CLAIM_ROWS = 200


def report_text(args, cells: dict, methods: list[str], tasks: list[str], seeds: list[int], carves: dict, shelves: dict) -> str:
    """docs/results.md. `args` is the command line building it (model, budget, command, results folder);
    `carves` holds each task's CarveStats (None for a carve without labels); `shelves` the unfinished cells' shelf
    records by (task, method as its cells are named, seed)."""
    noise = {t: c.standard_error for t, c in carves.items() if c}
    floors = {t: c.floor for t, c in carves.items() if c}
    splits = sorted({r["split"] for runs in cells.values() for r in runs})
    judging = claim_tasks(tasks, carves)
    return "\n".join([*header_lines(args, cells), *stale_lines(cells, carves), *narrow_grid_lines(cells, args.lr_grid), *table_lines(cells, methods, tasks, seeds, carves), *shelf_lines(shelves), "",
                      *claim_lines(cells, methods, judging, len(seeds), noise, left_out_note(tasks, judging, carves)),
                      *paired_lines(cells, judging), *floor_lines(cells, methods, tasks, floors), *variant_lines(cells, tasks),
                      *optimizer_lines(cells, tasks, args.steps), *tuning_lines(cells, tasks), *joint_lines(cells, f"{args.epochs} epochs" if args.epochs else f"{args.steps} steps per task"),
                      "", "Splits:", *[f"- {s}" for s in splits], "",
                      f"![accuracy by method and task]({args.report.with_suffix('.png').name})", ""])


def shelf_lines(shelves: dict) -> list[str]:
    """The cells a grid has begun: how many of its rates each has trained, and their dev scores so far."""
    if not shelves:
        return []
    lines = ["", "In progress: cells some of whose rates are trained and wait on the cell's shelf (`<task>/<method>/unfinished/`, "
             "committed); rerunning the command that began them trains the rest, then tests the chosen rate."]
    for (task, name, seed), shelf in sorted(shelves.items()):
        scores = ", ".join(f"{rate}: {score:.2f}" for rate, score in shelf["dev_scores"].items())
        lines.append(f"- {task}, {name}, seed {seed}: {len(shelf['dev_scores'])} of {len(shelf['budget']['lr_grid'])} rates "
                     f"trained (dev {scores}; best so far {shelf['best']['rate']})")
    return lines


def claim_tasks(tasks: list[str], carves: dict) -> list[str]:
    """The tasks whose test carve is big enough to judge a claim (CLAIM_ROWS labelled rows)."""
    return [t for t in tasks if carves.get(t) and carves[t].rows >= CLAIM_ROWS]


def left_out_note(tasks: list[str], judging: list[str], carves: dict) -> str:
    left_out = [f"{t} ({carves[t].rows} rows, ± {carves[t].standard_error:.1f})" if carves.get(t) else f"{t} (no labelled test rows)"
                for t in tasks if t not in judging]
    return f"Only tasks with at least {CLAIM_ROWS} labelled test rows judge a claim; in the table only: {', '.join(left_out)}." if left_out else ""


def without_report(command: str) -> list[str]:
    """A command's words less its --report option (in either spelling)."""
    words, kept = iter(shlex.split(command)), []
    for word in words:
        if word == "--report":
            next(words, None)
        elif not word.startswith("--report="):
            kept.append(word)
    return kept


def header_lines(args, cells: dict) -> list[str]:
    """Which commands made the cells, and the budget every run had. Each command is shown with this report's
    --report: lanes that wrote scratch reports ran the same cells, and the line a reader copies must rebuild this
    report, not a scratch file (nor, with no --report, the default docs/results.md)."""
    report = args.report.relative_to(ROOT) if args.report.is_relative_to(ROOT) else args.report
    commands = sorted({shlex.join([*without_report(r["command"]), "--report", str(report)]) for runs in cells.values() for r in runs})
    return [f"# Method comparison on {args.model}", "",
            f"Report built by: `{args.command}` from the cells in `{args.results.name}/`, which these commands ran "
            "(each shown with this report's `--report`: where a run wrote its report does not change its cells):",
            *[f"- `{c}`" for c in commands], "",
            f"Budget per run: {f'{args.epochs} epochs of the train carve' if args.epochs else f'{args.steps} optimizer steps'} "
            f"in batches of {args.batch_size}, inputs cut to {args.max_length} tokens. "
            + (f"Learning rate: each run trains once per rate of {', '.join(f'{r:g}' for r in args.lr_grid)} on the train carve "
               f"less a dev carve of {args.dev_size} of its rows (seeded by the seed), and the rate whose best epoch scores "
               "highest on the dev carve is the one tested (see \"Chosen learning rates\"); the test carve never picks anything. "
               if args.lr_grid else "Learning rate: each method's default (`softprompt list`), LoRA's --lora-lr. ")
            + "Accuracy on each task's held-out test carve (see the split notes), mean ± std over the seeds present; "
            "`n/N` says how many seeds of the grid ran. Missing cells are marked —. "
            "s/step is the median of one run's steps and depends on what else the machine was doing: "
            "read it as a rough size, not a speed comparison.", ""]


def stale_lines(cells: dict, carves: dict) -> list[str]:
    """A warning for each task whose cells ran on another carve than the task's current one (its test rows moved)."""
    lines = []
    for task, carve in carves.items():
        if not carve:  # no labels, no carve statistics: nothing to compare against
            continue
        stale = sorted(f"{name} seed {r['seed']}" for (name, t), runs in cells.items() if t == task
                       for r in runs if r["split"] != carve.split)
        if stale:
            lines.append(f"**{len(stale)} {task} cells ran on an older carve than the task's current one ({carve.split}); "
                         f"rerun them before reading their numbers:** {', '.join(stale)}.")
    return [*lines, ""] if lines else []


def narrow_grid_lines(cells: dict, grid: list[float]) -> list[str]:
    """A warning naming the tuned cells that tried fewer rates than the report's grid: their method had less of a chance."""
    rates = [f"{rate:g}" for rate in grid]
    narrow = sorted(f"{name} on {task} seed {r['seed']}" for (name, task), runs in cells.items() for r in runs
                    if "dev_scores" in r and set(rates) - set(r["dev_scores"]))
    return [f"**{len(narrow)} cells tried only some of the rates {', '.join(rates)}; the grid's command widens them (each trains "
            f"the rates it lacks):** {', '.join(narrow)}.", ""] if narrow else []


def table_lines(cells: dict, methods: list[str], tasks: list[str], seeds: list[int], carves: dict) -> list[str]:
    """The accuracy table: what each test carve allows (floor, noise), then a row per method."""
    return [*table_header(tasks),
            "| majority class (always the test carve's commonest answer) | " + " | ".join(f"{carves[t].floor:.1f}" if carves[t] else "—" for t in tasks) + " | 0 |  |",
            "| test rows (± one standard error of an accuracy there) | " + " | ".join(f"{carves[t].rows} (± {carves[t].standard_error:.1f})" if carves[t] else "—" for t in tasks) + " |  |  |",
            *[table_row(cells, method, tasks, 1 if method == ZERO_SHOT else len(seeds)) for method in methods]]


def table_header(tasks: list[str]) -> list[str]:
    return ["| method | " + " | ".join(tasks) + f" | trainable params | s/step on {tasks[0]} |", "|---" * (len(tasks) + 3) + "|"]


def table_row(cells: dict, method: str, tasks: list[str], wanted: int) -> str:
    """A method's mean ± spread (seeds present/wanted) per task, its trainable parameters, and its median s/step
    on the first task: tasks differ several-fold in tokens per step, so one column must name one task."""
    row, params = [], ""
    for task in tasks:
        runs = cells.get((method, task), [])
        if not runs:
            row.append(f"— (0/{wanted})")
            continue
        spread = f" ± {accuracy_spread(cells, method, task):.1f}" if len(runs) > 1 else ""
        row.append(f"{mean_accuracy(cells, method, task):.1f}{spread} ({len(runs)}/{wanted})")
        params = f"{runs[0]['trainable_parameters']:,}"
    timed = [r["seconds_per_step"] for r in cells.get((method, tasks[0]), []) if r.get("seconds_per_step")]
    speed = f"{statistics.median(timed):.2f}" if timed else ""
    return f"| {method} | " + " | ".join(row) + f" | {params} | {speed} |"


def grid_so_far(cells: dict, methods: list[str], tasks: list[str], seeds: list[int]) -> tuple[list[str], list[str], list[int]]:
    """This run's methods, tasks and seeds together with every one the cells hold, in the default grid's order:
    a run that fills part of the grid must not write a report that hides the rest."""
    records = [r for runs in cells.values() for r in runs]
    specs = {Path(r["task"]).stem: r["task"] for r in records} | {Path(t).stem: t for t in tasks}  # this run's spelling wins
    adamw_methods = [r["method"] for r in records if not {"options", "preset"} & r.keys() and r.get("optimizer", "adamw") == "adamw"]
    methods = in_order([*methods, *adamw_methods], [ZERO_SHOT, *METHODS, LORA])
    stems = in_order([*(Path(t).stem for t in tasks), *(Path(r["task"]).stem for r in records)], TASKS)
    return methods, [specs[stem] for stem in stems], sorted({*seeds, *(r["seed"] for r in records)})


def in_order(names: list[str], default: list[str]) -> list[str]:
    """Each name once: those of the default grid in its order, then the others as they came."""
    return sorted(dict.fromkeys(names), key=lambda name: default.index(name) if name in default else len(default))


def tuning_lines(cells: dict, tasks: list[str]) -> list[str]:
    """For cells run with --lr-grid: the rate each seed's run chose on its dev carve, per method and task, starred
    at an end of the grid (the method's best rate may lie beyond it), with its dev margin or the rates it tied, and a
    count of the choices the dev carve barely decided."""
    chosen = {(name, task): sorted((r["seed"], chosen_rate(r)) for r in runs)
              for (name, task), runs in cells.items() if all("dev_scores" in r for r in runs)}
    if not chosen:
        return []
    lines = ["", "## Chosen learning rates", "",
             ("The rate each seed's run chose on its dev carve (seed: rate); * marks an end of the grid, where the method's best "
              "rate may lie beyond it; \"by\" is how many dev rows the rate scored above the next best, \"tied\" counts the other rates "
              "that scored the same (ties go to the smaller). A margin of a row or two says the dev carve hardly told the rates apart."),
             "", "| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for name in sorted({name for name, _ in chosen}):
        lines.append(f"| {name} | " + " | ".join(", ".join(f"{seed}: {rate}" for seed, rate in chosen.get((name, t), [])) or "—"
                                                    for t in tasks) + " |")
    margins = [margin for (name, task), runs in cells.items() if (name, task) in chosen and task in tasks
               for margin in map(dev_margin, runs) if margin is not None]
    close = sum(margin <= 2 for margin in margins)
    return lines + ["", f"{close} of the {len(margins)} choices among two or more rates were tied or won by at most 2 dev rows."]


def chosen_rate(record: dict) -> str:
    """A tuned cell's rate as the table shows it: e.g. 0.03* (by 2), or 0.001 (tied with 3). The margin, in dev rows
    over the next best rate, says how firmly the dev carve chose: a margin of a row or two is close to a coin toss."""
    rate, scores = chosen_key(record), record["dev_scores"]
    tied = sum(score == scores[rate] for score in scores.values()) - 1
    margin = dev_margin(record)
    decided = f" (tied with {tied})" if tied else f" (by {margin})" if margin is not None else ""
    return rate + ("*" if rate in (next(iter(scores)), next(reversed(scores))) else "") + decided


def chosen_key(record: dict) -> str:
    """A tuned cell's chosen rate as its dev_scores key (compare.py writes rates with :g)."""
    return f"{record['train_settings']['learning_rate']:g}"


def dev_margin(record: dict) -> int | None:
    """How many dev rows a tuned cell's chosen rate scored above the next best rate (0: tied; None: a grid of one rate)."""
    rate = chosen_key(record)
    others = [score for other, score in record["dev_scores"].items() if other != rate]
    return round((record["dev_scores"][rate] - max(others)) * record["budget"]["dev_size"]) if others else None


def joint_lines(cells: dict, length: str) -> list[str]:
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
        lines.append(f"\n{name}: one run per seed trains on all its tasks at once, for {length}: {runs}; "
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
             ("Variants set some of a method's options (--option, or a recipe's with --preset); each cell reads variant vs the method's default "
              "on the same seeds (how many seeds), — where either is missing."), "",
             "| variant | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for name in variants:
        row = []
        for task in tasks:
            means = shared_means(cells, name, name.split("@")[0], task)
            row.append(f"{means[0]:.1f} vs {means[1]:.1f} ({means[2]})" if means else "—")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines + variant_paired_lines(cells, variants, tasks)


def variant_paired_lines(cells: dict, variants: list[str], tasks: list[str]) -> list[str]:
    """Each variant row by row (McNemar, seeds pooled) against its method's defaults (what the recipe changes) and
    against the baseline of its method's claims (the claim read at this recipe)."""
    found = []
    for name in variants:
        method = name.split("@")[0]
        for other in dict.fromkeys([method, *(baseline for _, claimed, baseline, _ in CLAIMS if claimed == method)]):
            for task in tasks:
                result = mcnemar(row_outcomes(cells, name, task), row_outcomes(cells, other, task))
                if result:
                    change = {"holds": "better", "does not hold": "worse"}.get(result.verdict(), "no difference found")
                    found.append(paired_line(f"{name} vs {other}, {task}", result, change))
    return ["", ("Paired row by row (McNemar's exact test, seeds pooled; each comparison on its own, uncorrected): each variant "
                 "against its method's defaults, then against the baseline of its method's claim."), "", *found] if found else []


def optimizer_lines(cells: dict, tasks: list[str], steps: int) -> list[str]:
    """Forward-only optimizers' cells (method+optimizer), each beside its method under AdamW on the same seeds."""
    names = sorted({name for name, _ in cells if "+" in name})
    if not names:
        return []
    lines = ["", "## Forward-only optimizers", "",
             (f"Each run had the forward passes of AdamW's {steps} steps ({3 * steps} passes of a batch: a backward pass "
              "counts as two). Each cell reads mean ± std over seeds vs the method under AdamW on the same seeds (how many "
              "seeds); the last column is the forward passes one run made."), "",
             "| method + optimizer | " + " | ".join(tasks) + " | forward passes |", "|---" * (len(tasks) + 2) + "|"]
    for name in names:
        row, passes = [], set()
        for task in tasks:
            ours = {r["seed"]: 100 * r["accuracy"] for r in cells.get((name, task), [])}
            adamw = {r["seed"]: 100 * r["accuracy"] for r in cells.get((name.split("+")[0], task), [])}
            passes |= {r.get("forward_passes") for r in cells.get((name, task), [])}
            shared = sorted(ours.keys() & adamw.keys())
            spread = f" ± {statistics.stdev(ours[s] for s in shared):.1f}" if len(shared) > 1 else ""
            row.append(f"{statistics.mean(ours[s] for s in shared):.1f}{spread} vs {statistics.mean(adamw[s] for s in shared):.1f} "
                       f"({len(shared)})" if shared else "—")
        lines.append(f"| {name} | " + " | ".join(row) + f" | {', '.join(str(p) for p in sorted(passes - {None})) or '—'} |")
    return lines


class CarveStats(NamedTuple):
    rows: int  # labelled test rows
    floor: float  # majority share in points: the accuracy of always answering the commonest label
    standard_error: float  # binomial, of an accuracy at the floor, in points: smaller differences are noise
    split: str = ""  # the task's split note now: a cell with another one ran on an older carve


def carve_stats(task) -> CarveStats | None:
    """What a test carve lets one conclude; None for a carve without labels."""
    labels = Counter(e.label for e in task.test if e.label is not None)
    if not labels:
        return None
    share = labels.most_common(1)[0][1] / labels.total()
    return CarveStats(labels.total(), 100 * share, 100 * math.sqrt(share * (1 - share) / labels.total()), task.split_note)


def mean_points(accuracies) -> float:
    """Mean accuracy in points: fractions averaged, then scaled, so a mean printed in two places rounds alike
    (64.5 and 68.0 read 66.3 in the table and the claim lines, not 66.2 in one)."""
    return 100 * statistics.mean(accuracies)


def shared_means(cells: dict, method: str, baseline: str, task: str) -> tuple[float, float, int] | None:
    """Each one's mean accuracy (points) over the seeds both ran, and how many seeds that is; None if none: a mean
    over other seeds than its baseline's would compare seeds, not methods."""
    ours, theirs = ({r["seed"]: r["accuracy"] for r in cells.get((name, task), [])} for name in (method, baseline))
    shared = sorted(ours.keys() & theirs.keys())
    return (mean_points(ours[s] for s in shared), mean_points(theirs[s] for s in shared), len(shared)) if shared else None


def mean_accuracy(cells: dict, method: str, task: str) -> float | None:
    runs = cells.get((method, task))
    return mean_points(r["accuracy"] for r in runs) if runs else None


def accuracy_spread(cells: dict, method: str, task: str) -> float:
    """Standard deviation over seeds in points; 0 where fewer than two seeds ran."""
    scores = [100 * r["accuracy"] for r in cells.get((method, task), [])]
    return statistics.stdev(scores) if len(scores) > 1 else 0.0


def claim_lines(cells: dict, methods: list[str], tasks: list[str], grid_seeds: int, noise: dict[str, float], note: str = "") -> list[str]:
    """The issue's claims read on the means of the cells present: met once a claim's method is ahead on enough
    tasks, not met once too few tasks are left, open otherwise. A margin inside the noise counts here, so these
    readings are worded apart from the paired verdicts, which alone say holds / does not hold. Margins smaller
    than the task's test-carve standard error (`noise`, points) are named. `note` says which tasks judge nothing."""
    lines = ["## The claims on the means", "",
             "Means over the seeds both methods ran (zero-shot's one run stands for every seed: it trains nothing). A margin "
             "inside the noise counts here, so these lines decide nothing: the verdicts are the paired ones below."
             + (f" {note}" if note else ""), ""]
    for claim, method, baseline, needed in CLAIMS:
        needed = tasks_needed(needed, tasks)
        measured = [(t, *means) for t in tasks if (means := shared_means(cells, method, baseline, t))]
        held = sum(ours >= theirs for _, ours, theirs, _ in measured)
        reading = ("met on the means" if held >= needed else "not met on the means" if held + len(tasks) - len(measured) < needed else "open")
        detail = "; ".join(f"{t} {ours:.1f} vs {theirs:.1f}" for t, ours, theirs, _ in measured) or "no task measured"
        seeds = min((shared for *_, shared in measured), default=0)
        close = [f"{t} {ours - theirs:+.1f} vs ± {noise[t]:.1f}" for t, ours, theirs, _ in measured if t in noise and abs(ours - theirs) < noise[t]]
        lines.append(f"- {claim}, needed on {needed} of {len(tasks)} tasks: held on {held} of {len(measured)} measured "
                     f"({detail}): {reading}" + (f" (on {seeds} of {grid_seeds} seeds)" if seeds < grid_seeds else "")
                     + (f"; margins within one test-carve standard error: {', '.join(close)}" if close else ""))
    lines += zero_shot_lines(cells, methods, tasks)
    return lines + paired_lines_per_claim(cells, tasks) + paired_zero_shot_lines(cells, methods, tasks)


def tasks_needed(needed: int | None, tasks: list[str]) -> int:
    """On how many of the judging tasks a claim must hold: CLAIMS' count (None: every task), at most the tasks there are."""
    return min(needed or len(tasks), len(tasks))


def paired_lines_per_claim(cells: dict, tasks: list[str]) -> list[str]:
    """Each claim per task by McNemar's exact test on the test rows of every seed both ran, pooled, with the
    difference it could detect: holds / does not hold / undecided at this power."""
    lines = ["", "### The claims, paired row by row", "",
             "McNemar's exact test over the test rows of every seed both methods ran (pooled). A claim is tested once per "
             f"task, so its {len(tasks)} tasks are one family: each task's p is adjusted by Holm's step-down over them (a task "
             "not measured yet counts as p = 1), and the verdict is read at adjusted p < 0.05. *detectable* is the difference "
             "one test alone finds 80% of the time at p < 0.05; under the correction it takes more. Where a task is undecided, "
             f"*seeds to decide* is how many seeds of its test carve would find the difference measured 80% of the time at p < "
             f"0.05 / {len(tasks)} (Bonferroni's, the strictest step of Holm's), were the difference and the share of rows the "
             "two disagree on to stay as measured: a figure for planning runs, not evidence. Only cells that recorded each "
             "row's outcome count.", ""]
    found = []
    for claim, method, baseline, needed in CLAIMS:
        results = {task: result for task in tasks
                   if (result := mcnemar(row_outcomes(cells, method, task), row_outcomes(cells, baseline, task)))}
        adjusted = holm({task: result.p_value for task, result in results.items()}, len(tasks))
        verdicts = {task: result.verdict(adjusted[task]) for task, result in results.items()}
        found += [paired_line(f"{claim}, {task}", result, verdicts[task], adjusted[task], len(tasks)) for task, result in results.items()]
        if verdicts:
            found.append(paired_claim_line(claim, verdicts, tasks_needed(needed, tasks), len(tasks)))
    return lines + (found or ["- no claim yet has cells of both its method and its baseline with per-row outcomes "
                              "(cells written before they were recorded need a rerun)"])


def paired_claim_line(claim: str, verdicts: dict[str, str], needed: int, tasks: int) -> str:
    """A claim over its tasks by the paired verdicts alone, so a margin inside the noise decides nothing: it holds
    once significantly better on `needed` tasks, does not hold once significantly worse on so many that too few
    tasks are left, is undecided at this power when every task is measured, and open while some are not."""
    counts = Counter(verdicts.values())
    if counts["holds"] >= needed:
        verdict = "holds"
    elif tasks - counts["does not hold"] < needed:
        verdict = "does not hold"
    else:
        verdict = "undecided at this power" if len(verdicts) == tasks else "open"
    return (f"- **{claim}, over the tasks** (needed on {needed} of {tasks}): better on {counts['holds']}, worse on "
            f"{counts['does not hold']}, undecided on {counts['undecided']}, not measured on {tasks - len(verdicts)}: **{verdict}**")


def paired_line(label: str, result, verdict: str, adjusted_p: float | None = None, family: int | None = None) -> str:
    """One paired comparison as the report lists it: the difference, the rows that decide it, p (and its
    correction, where one applies), power, verdict; and where a claim's test in a `family` is undecided, the
    seeds it would take to decide it."""
    holm_p = "" if adjusted_p is None else f", Holm p {p_text(adjusted_p)}"
    line = (f"- {label}: {result.difference:+.1f} points over {result.rows} paired rows ({result.method_only} vs "
            f"{result.baseline_only} right alone), p {p_text(result.p_value)}{holm_p}, detectable {result.detectable:.1f}: **{verdict}**")
    if family is None or verdict != "undecided":
        return line
    seeds = result.seeds_to_decide(family)
    return line + (" (no difference to decide)" if seeds is None else f" (seeds to decide: {seeds}; {result.seeds} ran)")


def row_outcomes(cells: dict, method: str, task: str) -> dict[int, str]:
    """seed -> the cell's per-row outcomes ('1'/'0' per test row), for the cells that recorded them."""
    return {record["seed"]: record["correct"] for record in cells.get((method, task), []) if record.get("correct")}


def zero_shot_lines(cells: dict, methods: list[str], tasks: list[str]) -> list[str]:
    """The claim that every method beats zero-shot, read on the means on each task where it must."""
    lines = []
    for task in [t for t in MUST_BEAT_ZERO_SHOT if t in tasks]:
        floor = mean_accuracy(cells, ZERO_SHOT, task)
        scores = {m: mean_accuracy(cells, m, task) for m in methods if m != ZERO_SHOT}
        if floor is None or not any(v is not None for v in scores.values()):
            lines.append(f"- every method beats zero-shot on {task}: no {'zero-shot' if floor is None else 'trained'} cell yet: open")
            continue
        below = [f"{m} {v:.1f}" for m, v in scores.items() if v is not None and v <= floor]
        missing = [m for m, v in scores.items() if v is None]
        reading = "not met on the means" if below else "open" if missing else "met on the means"
        lines.append(f"- every method beats zero-shot ({floor:.1f}) on {task}: {sum(v is not None for v in scores.values()) - len(below)} "
                     f"of {len(scores)} do" + (f"; not: {', '.join(below)}" if below else "")
                     + (f"; no cell yet: {', '.join(missing)}" if missing else "") + f": {reading}")
    return lines


def paired_zero_shot_lines(cells: dict, methods: list[str], tasks: list[str]) -> list[str]:
    """The claim that every method beats zero-shot, per task by McNemar's exact test of each method's rows (seeds
    pooled) against the bare model's answers on the same rows. Every method must win, so each test is read at
    p < 0.05 on its own (an intersection-union test needs no correction): it holds once all do, does not hold
    once one is significantly worse, and is open while a method has no cell."""
    lines = []
    for task in [t for t in MUST_BEAT_ZERO_SHOT if t in tasks]:
        bare = row_outcomes(cells, ZERO_SHOT, task)
        if not bare:
            lines.append(f"- **every method beats zero-shot on {task}**: no zero-shot cell with per-row outcomes yet: **open**")
            continue
        answers = next(iter(bare.values()))
        results = {m: mcnemar_against_untrained(trained, answers)
                   for m in methods if m != ZERO_SHOT and (trained := row_outcomes(cells, m, task))}
        results = {m: result for m, result in results.items() if result}
        verdicts = {m: result.verdict() for m, result in results.items()}
        lines += [paired_line(f"{m} vs zero-shot, {task}", result, verdicts[m]) for m, result in results.items()]
        counts = Counter(verdicts.values())
        missing = [m for m in methods if m != ZERO_SHOT and m not in results]
        verdict = ("does not hold" if counts["does not hold"] else "open" if missing
                   else "holds" if counts["holds"] == len(results) else "undecided at this power")
        lines.append(f"- **every method beats zero-shot on {task}** (each at p < 0.05): better for {counts['holds']}, worse for "
                     f"{counts['does not hold']}, undecided for {counts['undecided']}"
                     + (f", no per-row outcomes yet: {', '.join(missing)}" if missing else "") + f": **{verdict}**")
    return lines


def chart_floor(means: list[float], errors: list[float]) -> float:
    """The y-axis start: a multiple of 10 under every bar's lowest error-bar end, so no bar or whisker is cut
    (a fixed start hid zero-shot's 34.4 on mrpc), yet high enough that small differences stay visible."""
    lows = [mean - error for mean, error in zip(means, errors) if not math.isnan(mean)]
    return max(0.0, 10 * math.floor(min(lows, default=0) / 10 - 0.05))


def chart(cells: dict, methods: list[str], tasks: list[str], path: Path, floors: dict[str, float] | None = None) -> None:
    """A bar per method and task (mean accuracy, whiskers the spread over seeds), and each task's majority-class
    line (so a bar at the floor does not read as a result), saved as a PNG at `path`."""
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
    for x, task in enumerate(tasks):
        if (floors or {}).get(task) is not None:
            axis.hlines(floors[task], x - width / 2, x + 0.8 - width / 2, colors="black", linestyles="dashed",
                        label="majority class" if x == 0 else None)
            all_means.append(floors[task])
            all_errors.append(0.0)
    axis.set_xticks([x + 0.4 - width / 2 for x in range(len(tasks))], tasks)
    axis.set_ylabel("test accuracy (%)")
    axis.set_ylim(chart_floor(all_means, all_errors), 100)
    axis.legend(fontsize=7, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
