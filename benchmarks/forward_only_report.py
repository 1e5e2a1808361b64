"""benchmarks/results/forward_only.md and .png, from what benchmarks/forward_only.py's parts wrote: the compare
cells on sst2, the untrained prompt's accuracy, the dev tuning, the memory of a step and the remote run."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from paired import mcnemar_against_untrained, p_text
from softprompt.storage import atomic_path, write_text_atomic
from softprompt.training.plots import plt

OPTIMIZERS = ["zo-sgd", "cma-es", "sharpzo"]
BBT_SST2 = 90.5  # Sun et al. 2022 (arXiv 2201.03514): BBT on RoBERTa-large, 16 examples per class, 8000 forward calls


def seeds_of(cells: Path, name: str) -> dict[int, dict]:
    return {record["seed"]: record for record in (json.loads(p.read_text()) for p in sorted((cells / name).glob("seed*.json")))}


def summary(records: dict[int, dict]) -> str:
    scores = [100 * r["accuracy"] for r in records.values()]
    spread = f" ± {statistics.stdev(scores):.1f}" if len(scores) > 1 else ""
    return f"{statistics.mean(scores):.1f}{spread}" if scores else "—"


def runs(chosen_init: dict) -> list[tuple[str, str, str]]:
    """(cell folder name, optimizer label, --init) of every row, AdamW first within each start: prompt tuning's
    default start (text) and `chosen_init`, named as benchmarks/compare.py names their cells."""
    from compare import variant_name

    return [(variant_name("prompt-tuning", options, optimizer), optimizer, options.get("init", "text"))
            for options in ({}, chosen_init) for optimizer in ["adamw", *OPTIMIZERS]]


def accuracy_lines(cells: Path, results: Path, chosen_init: dict) -> list[str]:
    bare = seeds_of(cells, "zero-shot")[0]
    floor = 100 * bare["accuracy"]
    start = json.loads((results / "start.json").read_text())["accuracy"] if (results / "start.json").exists() else {}
    lines = ["| optimizer | start (--init) | test accuracy (mean ± std) | per seed | forward passes per run | steps per run | beats zero-shot "
             "| against zero-shot, paired |", "|---|---|---|---|---|---|---|---|",
             f"| none: the frozen model, zero-shot |  | {floor:.1f} |  | 0 | 0 |  |  |",
             *(f"| none: the untrained prompt | {init} | {100 * score:.1f} |  | 0 | 0 | {'yes' if 100 * score > floor else 'no'} |  |"
               for init, score in start.items())]
    for name, label, init in runs(chosen_init):
        records = seeds_of(cells, name)
        if not records:
            lines.append(f"| {label} | {init} | — (no cell yet) |  |  |  |  |  |")
            continue
        per_seed = ", ".join(f"{100 * r['accuracy']:.1f}" for _, r in sorted(records.items()))
        passes = sorted({r.get("forward_passes") or 3 * r["steps"] for r in records.values()})  # AdamW's older cells: 3 a step
        mean = statistics.mean(100 * r["accuracy"] for r in records.values())
        beats = sum(100 * r["accuracy"] > floor for r in records.values())
        lines.append(f"| {label} | {init} | {summary(records)} | {per_seed} | {', '.join(map(str, passes))} | "
                     f"{', '.join(str(s) for s in sorted({r['steps'] for r in records.values()}))} | "
                     f"{'yes' if mean > floor else 'no'} (mean; {beats} of {len(records)} seeds) | {against_zero_shot(records, bare)} |")
    lines.append(f"| BBT paper: CMA-ES on RoBERTa-large, 16 examples per class, 8,000 forward calls |  | {BBT_SST2} |  |  |  | "
                 "another model, data and budget: context only |  |")
    return lines + ["", "*Against zero-shot, paired*: McNemar's exact test over the 272 test rows of every seed, pooled (zero-shot "
                    "answers each row the same on every seed): the difference in points, p, and the difference the test would "
                    "detect 80% of the time at p < 0.05."]


def against_zero_shot(records: dict[int, dict], bare: dict) -> str:
    """The paired test of a row's seeds against the bare model's answers on the same test rows."""
    if not bare.get("correct"):
        return "zero-shot's rows not recorded"
    result = mcnemar_against_untrained({seed: r["correct"] for seed, r in records.items() if r.get("correct")}, bare["correct"])
    if result is None:
        return "rows not recorded"
    verdict = {"holds": "better", "does not hold": "worse"}.get(result.verdict(), "undecided")
    return f"{result.difference:+.1f}, p {p_text(result.p_value)}, detectable {result.detectable:.1f}: {verdict}"


def tuning_lines(results: Path) -> list[str]:
    lines = ["| optimizer | options | dev accuracy at each epoch's end (and the last step) | mean loss of the last 20 steps | forward passes |",
             "|---|---|---|---|---|"]
    start = results / "tuning" / "start.json"
    if start.exists():
        scores = json.loads(start.read_text())
        lines.append(f"| none: the frozen model, zero-shot |  | {100 * scores['zero_shot_dev_accuracy']:.1f} |  | 0 |")
        lines += [f"| none: the untrained prompt | init={init} | {100 * score:.1f} |  | 0 |" for init, score in scores["dev_accuracy"].items()]
    for path in sorted((results / "tuning").glob("*@*.json")):
        r = json.loads(path.read_text())
        lines.append(f"| {r['optimizer']} | {', '.join(f'{k}={v}' for k, v in r['options'].items())} | "
                     f"{', '.join(f'{100 * s:.1f}' for s in r['dev_accuracy'])} | {r['last_20_steps_loss']:.3f} | {r['forward_passes']} |")
    return lines


def memory_lines(results: Path) -> list[str]:
    if not (results / "memory.json").exists():
        return ["Not measured yet: `python benchmarks/forward_only.py --parts memory`."]
    runs = json.loads((results / "memory.json").read_text())["runs"]
    adamw = runs["adamw@candidates_per_pass=0"]["step_peak_mib"]
    lines = ["| step | peak memory the step adds (MiB) | / AdamW's | process peak (MiB) | forward passes | seconds |",
             "|---|---|---|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['step_peak_mib']:.0f} | {r['step_peak_mib'] / adamw:.2f} | {r['process_peak_mib']:.0f} | "
                     f"{r['forward_passes']} | {r['seconds']} |")
    return lines


def remote_lines(results: Path) -> list[str]:
    if not (results / "remote.json").exists():
        return ["Not measured yet: `python benchmarks/forward_only.py --parts remote`."]
    r = json.loads((results / "remote.json").read_text())
    same = r["accuracy"]["local"] == r["accuracy"]["remote"]
    return [f"cma-es, seed 0, {r['steps']} steps, `--init random` in both (a client holds no embedding table): test accuracy "
            f"{100 * r['accuracy']['local']:.1f} locally, {100 * r['accuracy']['remote']:.1f} through the server "
            f"({'the same' if same else 'different'}); the largest difference of a step's loss {r['max_abs_step_loss_difference']:.1e}, "
            f"of a prompt entry {r['max_abs_prompt_difference']:.1e} (target: 1e-4). Wall time: {r['wall_seconds']['local']:.0f} s "
            f"locally, {r['wall_seconds']['remote']:.0f} s through the server (same machine)."]


def write_report(results: Path, cells: Path, chosen_init: dict) -> None:
    """`results`: forward_only.py's folder; `cells`: the compare cells of sst2; `chosen_init`: the second start's options."""
    text = ["# Forward-only optimizers on SST-2 (smollm2-135m, prompt tuning, 20 tokens)", "",
            "Made by `python benchmarks/forward_only.py` (its docstring has each part's command). Test accuracy on the SST-2 "
            "carve (600 train / 272 test; one standard error of an accuracy near 80% is ±2.4 points), seeds 0-2, batch 8. "
            "The budget is forward passes: an AdamW step is a forward and a backward pass, a backward pass counted as two "
            "forward passes, so AdamW's 150 steps are 450 forward passes of a batch; each forward-only optimizer ran the "
            "steps that fit in 450 (the trainer counts them). The cells are `benchmarks/results/compare/sst2/` "
            "(AdamW's and zero-shot's from the method comparison). Each optimizer runs from two starts: prompt tuning's "
            "default `--init text` (the task's description, repeated to 20 tokens) and `--init vocab` (20 sampled "
            "vocabulary rows), the start that scored best on the dev carve (below): at 450 forward passes a run ends "
            "near where it starts.", "", *accuracy_lines(cells, results, chosen_init), "",
            "![test accuracy by optimizer](forward_only.png)", "",
            "## Options, chosen on a dev carve", "",
            "Seed 0, 100 of the 600 training examples held out as dev, the other 500 trained on, the same budget; the test "
            "carve was not read. The defaults in the code are the chosen options; the starts are scored on the same dev rows.",
            "", *tuning_lines(results), "",
            "## Memory of a training step", "",
            "One step on the same batch (seed 0's second), each in a fresh process after a first step, with glibc returning "
            "freed blocks to the system (`MALLOC_MMAP_THRESHOLD_=65536`): the resident memory's peak during the step minus "
            "before it, i.e. what the step adds to the loaded model (the frozen weights, the same for every optimizer). "
            "Target: a forward-only step at most 0.6x AdamW's.", "", *memory_lines(results), "",
            "## Through a server", "", *remote_lines(results), ""]
    write_text_atomic(results.parent / "forward_only.md", "\n".join(text))
    chart(cells, results.parent / "forward_only.png", chosen_init)


def chart(cells: Path, path: Path, chosen_init: dict) -> None:
    rows = [(f"{label}\n{init}", [100 * r["accuracy"] for r in seeds_of(cells, name).values()]) for name, label, init in runs(chosen_init)]
    rows = [(label, scores) for label, scores in rows if scores]
    colors = {"adamw": "tab:blue", "zo-sgd": "tab:orange", "cma-es": "tab:green", "sharpzo": "tab:red"}
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.bar([label for label, _ in rows], [statistics.mean(s) for _, s in rows],
             yerr=[statistics.stdev(s) if len(s) > 1 else 0 for _, s in rows], color=[colors[label.split()[0]] for label, _ in rows])
    zero = 100 * seeds_of(cells, "zero-shot")[0]["accuracy"]
    axis.axhline(zero, color="black", linestyle="--", label=f"zero-shot {zero:.1f}")
    axis.axhline(BBT_SST2, color="gray", linestyle=":", label=f"BBT paper {BBT_SST2} (RoBERTa-large)")
    axis.set_ylim(50, 100)
    axis.set_ylabel("SST-2 test accuracy (%)")
    axis.set_title("450 forward passes of a batch of 8 (= 150 AdamW steps); optimizer and --init")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
