"""Smoke run of the comparison benchmark on the tiny model: cells are written, skipped when present,
and the report marks what is missing."""
from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import softprompt

ROOT = Path(__file__).resolve().parent.parent


def compare(*args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare.py"), *args], capture_output=True, text=True, cwd=ROOT)


def load_script(name: str):
    """benchmarks/<name>.py as a module, to test its functions without running a grid."""
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import each other from beside them
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_report():
    return load_script("compare_report")


def clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def test_compare_fills_cells_skips_done_ones_and_reports_missing(tmp_path, tiny_model_dir, reviews_file):
    common = ["--model", str(tiny_model_dir), "--tasks", str(reviews_file), "--steps", "2", "--batch-size", "4",
              "--results", str(tmp_path / "cells"), "--report", str(tmp_path / "results.md")]
    run = compare(*common, "--methods", "zero-shot,prompt-tuning,lora", "--seeds", "0")
    assert run.returncode == 0, run.stderr
    cell = json.loads((tmp_path / "cells" / "reviews" / "prompt-tuning" / "seed0.json").read_text())
    assert 0 <= cell["accuracy"] <= 1 and cell["steps"] == 2 and cell["command"].startswith("python benchmarks/compare.py")
    assert (tmp_path / "cells" / "reviews" / "lora" / "seed0.json").exists()

    again = compare(*common, "--methods", "zero-shot,prompt-tuning,lora,capt", "--seeds", "0,1", "--report-only")
    assert again.returncode == 0, again.stderr
    report = (tmp_path / "results.md").read_text()
    assert "| prompt-tuning | " in report and "(1/2)" in report and "| capt | — (0/2)" in report
    assert "| majority class (always the test carve's commonest answer) | 50.0 | 0 |" in report  # test carve: one positive, one negative
    assert "| test rows (± one standard error of an accuracy there) | 2 (± 35.4) |" in report  # sqrt(0.5 * 0.5 / 2)
    above = [f"{name} {100 * json.loads((tmp_path / 'cells' / 'reviews' / name / 'seed0.json').read_text())['accuracy']:.1f}"
             for name in ("zero-shot", "prompt-tuning", "lora")]
    above = [entry for entry in above if float(entry.split()[-1]) > 50]
    assert f"- reviews (floor 50.0): {len(above)} of 3 measured" + (f": {', '.join(above)}" if above else "") + "\n" in report
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "Only tasks with at least 200 labelled test rows judge a claim; in the table only: reviews (2 rows, ± 35.4)." in report
    assert "- LoPA >= prompt tuning (same m), needed on 0 of 0 tasks" in report  # a 2-row carve judges nothing

    plan = compare(*common, "--methods", "zero-shot,prompt-tuning,lora,capt", "--seeds", "0,1", "--plan")
    walls = {name: json.loads((tmp_path / "cells" / "reviews" / name / "seed0.json").read_text())["wall_seconds"]
             for name in ("prompt-tuning", "lora")}
    assert plan.returncode == 0 and plan.stdout.splitlines()[1:] == [  # capt has no cell: the task's trained cells go for it
        f"  prompt-tuning on {reviews_file}, seed 1: {clock(walls['prompt-tuning'])}",
        f"  lora on {reviews_file}, seed 1: {clock(walls['lora'])}",
        *[f"  capt on {reviews_file}, seed {seed}: {clock(statistics.median(walls.values()))}" for seed in (0, 1)]]
    assert plan.stdout.startswith("4 runs to do, about ") and report == (tmp_path / "results.md").read_text()

    rerun = compare(*common, "--methods", "prompt-tuning", "--seeds", "0")
    assert "0 runs to do" in rerun.stdout
    report = (tmp_path / "results.md").read_text()  # a run on part of the grid still reports every cell there
    assert "| zero-shot | " in report and "| lora | " in report and "| prompt-tuning | " in report


def test_compare_trains_multitask_prompt_tuning_once_for_all_tasks(tmp_path, tiny_model_dir, reviews_file):
    """A joint method's run trains on every task at once (steps per task x tasks) and fills one cell per task."""
    critics = tmp_path / "critics.jsonl"
    critics.write_text(reviews_file.read_text())
    common = ["--model", str(tiny_model_dir), "--steps", "2", "--batch-size", "4", "--results", str(tmp_path / "cells"),
              "--report", str(tmp_path / "results.md"), "--methods", "multitask-prompt-tuning", "--seeds", "0"]
    run = compare(*common, "--tasks", f"{reviews_file},{critics}")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("--- multitask-prompt-tuning on") == 1
    cells = [json.loads((tmp_path / "cells" / task / "multitask-prompt-tuning" / "seed0.json").read_text()) for task in ("reviews", "critics")]
    assert [cell["task"] for cell in cells] == [str(reviews_file), str(critics)]
    assert all(cell["steps"] == 4 and cell["joint_tasks"] == [str(reviews_file), str(critics)] for cell in cells)
    assert "multitask-prompt-tuning: one run per seed trains on all its tasks at once, for 2 steps per task: on reviews,critics (seeds 0);" in (
        tmp_path / "results.md").read_text()

    alone = compare(*common, "--tasks", str(critics))  # a run on other tasks is another experiment: not skipped
    assert "1 runs to do" in alone.stdout and "replaces the existing cells on " + str(critics) in alone.stdout
    assert "joint_tasks" not in json.loads((tmp_path / "cells" / "critics" / "multitask-prompt-tuning" / "seed0.json").read_text())
    report = (tmp_path / "results.md").read_text()
    assert "on critics (seeds 0); on reviews,critics (seeds 0);" in report and "mix runs on different task sets" in report


def test_compare_keeps_variant_cells_apart_and_reports_them_beside_the_defaults(tmp_path, tiny_model_dir, reviews_file):
    """--option runs a variant: its cells get their own folder and table, and the option reaches the method."""
    common = ["--model", str(tiny_model_dir), "--tasks", str(reviews_file), "--steps", "2", "--batch-size", "4", "--seeds", "0",
              "--methods", "prompt-tuning", "--results", str(tmp_path / "cells"), "--report", str(tmp_path / "variants.md")]
    assert compare(*common).returncode == 0
    run = compare(*common, "--option", "num_virtual_tokens=4")
    assert run.returncode == 0, run.stderr
    default, variant = (json.loads((tmp_path / "cells" / "reviews" / name / "seed0.json").read_text())
                        for name in ("prompt-tuning", "prompt-tuning@num_virtual_tokens=4"))
    assert variant["options"] == {"num_virtual_tokens": 4} and "options" not in default
    assert 5 * variant["trainable_parameters"] == default["trainable_parameters"]  # 4 tokens instead of the default 20
    report = (tmp_path / "variants.md").read_text()
    assert f"| prompt-tuning | {100 * default['accuracy']:.1f} (1/1) |" in report  # the variant does not join the main row
    assert (f"| prompt-tuning@num_virtual_tokens=4 | {100 * variant['accuracy']:.1f} vs {100 * default['accuracy']:.1f} (1) |"
            in report)
    difference = 100 * (variant["accuracy"] - default["accuracy"])
    assert f"- prompt-tuning@num_virtual_tokens=4 vs prompt-tuning, reviews: {difference:+.1f} points over 2 paired rows" in report
    assert report.endswith("![accuracy by method and task](variants.png)\n")  # the report's own chart, not another report's
    assert (tmp_path / "variants.png").exists() and not (tmp_path / "results.png").exists()

    typo = compare(*common, "--option", "num_virtual_token=4")
    assert typo.returncode == 2 and "unknown option(s) ['num_virtual_token']" in typo.stderr
    assert not (tmp_path / "cells" / "reviews" / "prompt-tuning@num_virtual_token=4").exists()


def test_compare_gives_a_forward_only_optimizer_adamws_forward_passes_in_rows_of_its_own(tmp_path, tiny_model_dir, reviews_file):
    common = ["--model", str(tiny_model_dir), "--tasks", str(reviews_file), "--steps", "4", "--batch-size", "4", "--seeds", "0",
              "--methods", "prompt-tuning", "--results", str(tmp_path / "cells"), "--report", str(tmp_path / "results.md")]
    run = compare(*common, "--optimizers", "adamw,zo-sgd")
    assert run.returncode == 0, run.stderr
    adamw, zo = (json.loads((tmp_path / "cells" / "reviews" / name / "seed0.json").read_text()) for name in ("prompt-tuning", "prompt-tuning+zo-sgd"))
    assert (adamw["forward_passes"], adamw["steps"]) == (12, 4) and (zo["forward_passes"], zo["steps"]) == (12, 6)
    assert zo["optimizer"] == "zo-sgd" and "optimizer" not in adamw
    report = (tmp_path / "results.md").read_text()
    assert f"| prompt-tuning | {100 * adamw['accuracy']:.1f} (1/1) |" in report  # zo-sgd's cell does not join AdamW's row
    assert f"| prompt-tuning+zo-sgd | {100 * zo['accuracy']:.1f} vs {100 * adamw['accuracy']:.1f} (1) | 12 |" in report


def test_compare_picks_each_runs_learning_rate_on_a_dev_carve_and_keeps_budgets_apart(tmp_path, tiny_model_dir, reviews_file):
    common = ["--model", str(tiny_model_dir), "--tasks", str(reviews_file), "--steps", "2", "--batch-size", "4", "--seeds", "0",
              "--results", str(tmp_path / "cells"), "--report", str(tmp_path / "results.md")]
    run = compare(*common, "--methods", "prompt-tuning,lora", "--lr-grid", "0.3,0.001", "--dev-size", "4")
    assert run.returncode == 0, run.stderr
    report = (tmp_path / "results.md").read_text()
    for name in ("prompt-tuning", "lora"):
        cell = json.loads((tmp_path / "cells" / "reviews" / name / "seed0.json").read_text())
        scores = cell["dev_scores"]
        assert list(scores) == ["0.3", "0.001"] and all(0 <= score <= 1 for score in scores.values())
        best = max(scores, key=lambda rate: (scores[rate], -list(scores).index(rate)))  # ties: the earlier rate
        assert f"{cell['train_settings']['learning_rate']:g}" == best and f"| {name} | 0: {best}*" in report  # a 2-rate grid: both rates are its ends
        assert cell["budget"] == {"steps": 2, "batch_size": 4, "max_length": 256, "lr_grid": [0.3, 0.001], "dev_size": 4}
    assert "each run trains once per rate of 0.3, 0.001 on the train carve less a dev carve of 4" in report

    untuned = compare(*common, "--methods", "prompt-tuning")  # another budget in the same folder: refused, nothing run
    assert untuned.returncode == 2 and "give another budget its own --results" in untuned.stderr
    forward_only = compare(*common, "--methods", "prompt-tuning", "--optimizers", "cma-es", "--lr-grid", "0.1")
    assert forward_only.returncode == 2 and "--lr-grid: cma-es has no learning rate to choose" in forward_only.stderr
    zero_rate = compare(*common, "--methods", "prompt-tuning", "--lr-grid", "0,0.1")
    assert zero_rate.returncode == 2 and "--lr-grid needs rates > 0 and --dev-size >= 1, got [0.0, 0.1] and 100" in zero_rate.stderr
    both = compare(*common, "--methods", "prompt-tuning", "--lr-grid", "0.1", "--option", "learning_rate=0.03")
    assert both.returncode == 2 and "--lr-grid chooses the learning rate: drop --option learning_rate" in both.stderr


def test_a_widened_grid_trains_only_the_rates_a_cell_lacks_and_writes_the_cell_a_fresh_run_would(tmp_path, tiny_model_dir, reviews_file):
    common = ["--model", str(tiny_model_dir), "--tasks", str(reviews_file), "--steps", "2", "--batch-size", "4", "--seeds", "0,1",
              "--methods", "zero-shot,prompt-tuning", "--dev-size", "4"]

    def cells(folder: str, *grid: str) -> dict[int, dict]:
        run = compare(*common, "--lr-grid", ",".join(grid), "--results", str(tmp_path / folder), "--report", str(tmp_path / f"{folder}.md"))
        assert run.returncode == 0, run.stderr
        return {seed: json.loads((tmp_path / folder / "reviews" / "prompt-tuning" / f"seed{seed}.json").read_text()) for seed in (0, 1)}

    fresh = cells("fresh", "0.3", "0.001")
    narrow = cells("widened", "0.3")
    assert compare(*common, "--lr-grid", "0.3,0.001", "--results", str(tmp_path / "widened"), "--report", str(tmp_path / "before.md"),
                   "--report-only").returncode == 0
    assert ("**2 cells tried only some of the rates 0.3, 0.001; the grid's command widens them (each trains the rates it lacks):** "
            "prompt-tuning on reviews seed 0, prompt-tuning on reviews seed 1.") in (tmp_path / "before.md").read_text()
    seed1 = tmp_path / "widened" / "reviews" / "prompt-tuning" / "seed1.json"
    kept = {**narrow[1], "dev_scores": {"0.3": 1.0}}  # no rate can beat this on the dev carve: the cell's test result must stand
    seed1.write_text(json.dumps(kept))
    widen = compare(*common, "--lr-grid", "0.3,0.001", "--results", str(tmp_path / "widened"), "--report", str(tmp_path / "widened.md"))
    assert widen.returncode == 0, widen.stderr
    assert widen.stdout.count("lr 0.3: tried by the cell already") == 2 and "zero-shot on" not in widen.stdout  # zero-shot has no rate to add
    widened = {seed: json.loads((tmp_path / "widened" / "reviews" / "prompt-tuning" / f"seed{seed}.json").read_text()) for seed in (0, 1)}
    for key in ("accuracy", "correct", "dev_scores", "train_settings", "steps"):  # seed 0: the cell a fresh run of the wide grid writes
        assert widened[0][key] == fresh[0][key], key
    assert widened[1]["dev_scores"] == {"0.3": 1.0, "0.001": fresh[1]["dev_scores"]["0.001"]}
    assert {key: widened[1][key] for key in ("accuracy", "correct", "train_settings")} == {key: kept[key] for key in ("accuracy", "correct", "train_settings")}
    assert widened[1]["widened_from"]["lr_grid"] == [0.3] and widened[1]["budget"]["lr_grid"] == [0.3, 0.001]
    assert widened[1]["wall_seconds"] > narrow[1]["wall_seconds"]
    assert "tried only some of the rates" not in (tmp_path / "widened.md").read_text()

    narrower_again = compare(*common, "--lr-grid", "0.3", "--results", str(tmp_path / "widened"), "--report", str(tmp_path / "widened.md"))
    assert narrower_again.returncode == 2 and "give another budget its own --results" in narrower_again.stderr  # cells tried more rates


def test_compare_trains_an_epoch_budget_in_a_folder_of_its_own(tmp_path, tiny_model_dir, reviews_file):
    """--epochs N: every rate runs N passes over the train carve less the dev carve, whatever --steps says."""
    common = ["--model", str(tiny_model_dir), "--tasks", str(reviews_file), "--batch-size", "4", "--seeds", "0", "--methods", "prompt-tuning",
              "--lr-grid", "0.1", "--dev-size", "2", "--results", str(tmp_path / "cells"), "--report", str(tmp_path / "results.md")]
    run = compare(*common, "--epochs", "2")
    assert run.returncode == 0, run.stderr
    cell = json.loads((tmp_path / "cells" / "reviews" / "prompt-tuning" / "seed0.json").read_text())
    train_rows = sum(1 for _ in reviews_file.open()) - 2 - 2  # less the 2-row test carve and the 2-row dev carve
    assert cell["steps"] == 2 * math.ceil(train_rows / 4) and cell["train_settings"]["max_steps"] == 0
    assert cell["budget"] == {"epochs": 2, "batch_size": 4, "max_length": 256, "lr_grid": [0.1], "dev_size": 2}
    assert "Budget per run: 2 epochs of the train carve in batches of 4" in (tmp_path / "results.md").read_text()

    steps = compare(*common, "--steps", "2")  # the 150-step budget belongs in another folder
    assert steps.returncode == 2 and "give another budget its own --results" in steps.stderr
    forward_only = compare(*common, "--epochs", "2", "--optimizers", "zo-sgd")
    assert forward_only.returncode == 2 and "--epochs needs a count >= 1 and AdamW alone" in forward_only.stderr


def test_compare_resumes_a_cell_stopped_mid_run_to_the_same_result(tmp_path, tiny_model_dir, reviews_file, monkeypatch, capsys):
    """Stopped in its second rate, a grid cell resumes that rate from .runs/ and takes the first from the shelf; a fresh
    checkout (no .runs/) takes the first rate from the shelf too: both write the cell the unbroken run wrote."""
    from softprompt.training.outputs import finish
    from softprompt.training.trainer import Trainer

    compare_script = load_script("compare")
    monkeypatch.setattr(compare_script, "CHECKPOINT_EVERY", 2)

    def run(results: str, *flags: str) -> None:
        monkeypatch.setattr(sys, "argv", ["compare.py", "--model", str(tiny_model_dir), "--tasks", str(reviews_file), "--steps", "4",
                                          "--batch-size", "4", "--seeds", "0", "--methods", "prompt-tuning", "--lr-grid", "0.3,0.001",
                                          "--dev-size", "4", "--results", str(tmp_path / results), "--report", str(tmp_path / f"{results}.md"), *flags])
        compare_script.main()

    run("straight")
    original_step = Trainer._step

    def dies_in_the_second_rate(self, group):
        record = original_step(self, group)
        if self.config.learning_rate == 0.001:
            record["seconds"] = 1000.0  # steps 1-2 reach the checkpoint with these timings
        if self.step == 3 and self.config.learning_rate == 0.001:
            raise KeyboardInterrupt  # a session's end: step 2's checkpoint survives, and the first rate's whole run
        return record

    monkeypatch.setattr(Trainer, "_step", dies_in_the_second_rate)
    with pytest.raises(KeyboardInterrupt):
        run("stopped")
    monkeypatch.setattr(Trainer, "_step", original_step)
    shelf = tmp_path / "stopped" / "reviews" / "prompt-tuning" / "unfinished"
    assert sorted(f.name for f in shelf.iterdir()) == ["seed0.json", "seed0.lr=0.3.safetensors"]  # the trained rate, committed
    assert not (tmp_path / "stopped" / "reviews" / "prompt-tuning" / "seed0.json").exists()
    shelved_seconds = json.loads((shelf / "seed0.json").read_text())["wall_seconds"]  # the first rate's, in the stopped process
    run("stopped", "--report-only")  # the report tells what the shelf holds
    dev = json.loads((shelf / "seed0.json").read_text())["dev_scores"]["0.3"]
    assert f"- reviews, prompt-tuning, seed 0: 1 of 2 rates trained (dev 0.3: {dev:.2f}; best so far 0.3)\n" in (tmp_path / "stopped.md").read_text()
    shutil.copytree(tmp_path / "stopped", tmp_path / "fresh", ignore=shutil.ignore_patterns(".runs"))  # a fresh checkout of it
    capsys.readouterr()
    run("stopped")
    out = capsys.readouterr().out
    assert "lr 0.3: trained already, on the shelf (dev " in out and "lr 0.001: resumed at step 2" in out
    run("fresh")
    out = capsys.readouterr().out
    assert "lr 0.3: trained already, on the shelf (dev " in out and "resumed" not in out
    straight, resumed, fresh = (json.loads((tmp_path / name / "reviews" / "prompt-tuning" / "seed0.json").read_text())
                                for name in ("straight", "stopped", "fresh"))
    same = ("accuracy", "correct", "dev_scores", "steps", "forward_passes", "train_settings")
    assert {key: resumed[key] for key in same} == {key: straight[key] for key in same} == {key: fresh[key] for key in same}
    assert min(resumed["wall_seconds"], fresh["wall_seconds"]) > shelved_seconds > 0  # the stopped process's time counts
    assert resumed["wall_seconds"] > 2000 > fresh["wall_seconds"]  # and so do the resumed rate's steps before the stop
    assert not (tmp_path / "stopped" / ".runs" / "reviews" / "prompt-tuning" / "seed0").exists()  # the work folder goes once the cell is written
    assert not shelf.exists() and "In progress" not in (tmp_path / "stopped.md").read_text()  # and the shelf

    # the cell's test result is the chosen rate's own run, as one trained on its own scores it
    chosen = max(straight["dev_scores"], key=straight["dev_scores"].get)
    trainer = Trainer(softprompt.TrainConfig(task=str(reviews_file), method="prompt-tuning", model=str(tiny_model_dir), seed=0, max_steps=4,
                                             learning_rate=float(chosen), batch_size=4, dev_size=4, zero_shot=False,
                                             output_dir=str(tmp_path / "alone")))
    trainer.train()
    assert finish(trainer).metrics["correct"] == straight["correct"]


def test_processes_filling_one_folder_never_run_the_same_cell(tmp_path, tiny_model_dir, reviews_file):
    """A run another live process holds is skipped; once that process lets go (or dies), the run is free."""
    import fcntl

    common = ["--model", str(tiny_model_dir), "--tasks", str(reviews_file), "--steps", "2", "--batch-size", "4", "--seeds", "0",
              "--methods", "prompt-tuning", "--results", str(tmp_path / "cells"), "--report", str(tmp_path / "results.md")]
    work = tmp_path / "cells" / ".runs" / "reviews" / "prompt-tuning" / "seed0"
    work.mkdir(parents=True)
    with open(work / "holder.pid", "w") as lock:  # this test's process stands for a lane running the cell
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242")
        lock.flush()
        held = compare(*common)
        assert held.returncode == 0 and "--- prompt-tuning on " in held.stdout and ": process 4242 is running it; skipped" in held.stdout
        assert not (tmp_path / "cells" / "reviews" / "prompt-tuning" / "seed0.json").exists()
    freed = compare(*common)
    assert freed.returncode == 0, freed.stderr
    assert (tmp_path / "cells" / "reviews" / "prompt-tuning" / "seed0.json").exists() and not work.exists()


@pytest.mark.parametrize("left_by", [".runs/budget.json", "reviews/prompt-tuning/unfinished/seed0.json"])
def test_compare_refuses_to_resume_unfinished_runs_of_another_budget(tmp_path, tiny_model_dir, reviews_file, left_by):
    """A grid stopped at 300 steps, before its first cell: its work folder (.runs/, this machine's) or its shelf
    (committed: a fresh checkout's) must not be resumed by a 2-step run."""
    stale = tmp_path / "cells" / left_by
    stale.parent.mkdir(parents=True)
    budget = {"steps": 300, "batch_size": 4, "max_length": 256}
    stale.write_text(json.dumps(budget if left_by.startswith(".runs") else {"budget": budget, "dev_scores": {"0.3": 0.5}, "wall_seconds": 9.0}))
    run = compare("--model", str(tiny_model_dir), "--tasks", str(reviews_file), "--steps", "2", "--batch-size", "4", "--seeds", "0",
                  "--methods", "prompt-tuning", "--results", str(tmp_path / "cells"), "--report", str(tmp_path / "results.md"))
    assert run.returncode == 2 and "cells or unfinished runs (.runs/, */unfinished/)" in run.stderr and '{"steps": 300' in run.stderr
    assert not (tmp_path / "cells" / "reviews" / "prompt-tuning" / "seed0.json").exists()  # nothing ran
    assert sorted(p.relative_to(tmp_path / "cells").as_posix() for p in (tmp_path / "cells").rglob("*") if p.is_file()) == [left_by]  # nor was lost


def test_compare_runs_a_preset_as_a_variant_at_the_comparisons_budget(tmp_path, tiny_model_dir, reviews_file):
    common = ["--model", str(tiny_model_dir), "--tasks", str(reviews_file), "--steps", "2", "--batch-size", "4", "--seeds", "0",
              "--results", str(tmp_path / "cells"), "--report", str(tmp_path / "results.md")]
    assert compare(*common, "--methods", "pt-moe").returncode == 0
    run = compare(*common, "--methods", "pt-moe", "--preset", "paper")
    assert run.returncode == 0, run.stderr
    default, paper = (json.loads((tmp_path / "cells" / "reviews" / name / "seed0.json").read_text()) for name in ("pt-moe", "pt-moe@preset=paper"))
    assert paper["preset"] == "paper" and paper["train_settings"]["batch_size"] == 4 and paper["steps"] == 2  # not the paper's 64 x 1500
    hidden = json.loads((tiny_model_dir / "config.json").read_text())["hidden_size"]
    experts, tokens, rank = 2, 40, 36  # the preset's shape: its experts, projection and router
    assert paper["trainable_parameters"] == experts * tokens * rank + rank * hidden + hidden * experts + experts != default["trainable_parameters"]
    report = (tmp_path / "results.md").read_text()
    assert f"| pt-moe@preset=paper | {100 * paper['accuracy']:.1f} vs {100 * default['accuracy']:.1f} (1) |" in report
    assert f"| pt-moe | {100 * default['accuracy']:.1f} (1/1) |" in report

    as_published = compare(*common, "--methods", "capt", "--preset", "paper", "--plan")  # CaPT's defaults are its paper's
    assert as_published.returncode == 0 and as_published.stdout.startswith(
        "--preset paper: capt already runs it by default; nothing to run for it\n0 runs to do")

    lacking = compare(*common, "--methods", "prompt-tuning", "--preset", "paper")
    assert lacking.returncode == 2 and "--preset paper: prompt-tuning has no such preset (methods with one: capt, lopa, pt-moe)" in lacking.stderr


def test_serve_speed_smoke_run(tmp_path, tiny_model_dir):
    """Every part of the serving benchmark runs on the tiny model and reports its ratios (no timing asserted)."""
    out = tmp_path / "serve_speed.txt"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve_speed.py"), "--model", str(tiny_model_dir),
                          "--eval-rows", "16", "--latency-rows", "2", "--mixed-batches", "1", "--repeats", "1", "--clients", "2", "--requests", "2",
                          "--unbatched-requests", "1", "--new-tokens", "2", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    report = out.read_text()
    assert report.startswith("$ python benchmarks/serve_speed.py --model")
    for line in ("ratio cached / bare", "ours / PEFT", "mixed / single", "ours / PEFT ="):
        assert line in report
    assert "0 failed of 4, 8 tokens generated" in report  # completions: 2 clients x 2 requests x 2 new tokens
    for workload in ("completions", "classify"):
        assert f"{workload}: batched / one-at-a-time throughput" in report


def test_serve_speed_soak_part_runs_the_server_process_and_reads_its_memory(tmp_path, tiny_model_dir):
    """Part (f) starts `softprompt serve`, loops mixed classify/completions clients, and reports failures and RSS."""
    out = tmp_path / "soak.txt"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve_speed.py"), "--model", str(tiny_model_dir),
                          "--eval-rows", "16", "--parts", "f", "--duration", "2", "--warmup", "1", "--clients", "4", "--new-tokens", "2",
                          "--threads", "1", "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr
    report = out.read_text()
    assert "(f) soak" in report and "server RSS after warm-up" in report
    assert re.search(r": 0 failed of \d+, \d+ tokens generated, p50", report)


def test_claims_are_read_on_the_means_of_the_cells_present():
    """On the means a claim is met, not met or open depending on the tasks measured, worded apart from the paired
    verdicts (which alone say holds / does not hold); zero-shot floors name the losers."""
    report_module = load_report()
    scores = {("prompt-tuning", "sst2"): [0.80, 0.82], ("lopa", "sst2"): [0.85], ("capt", "sst2"): [0.70],
              ("prompt-tuning", "rte"): [0.60], ("lopa", "rte"): [0.61], ("capt", "rte"): [0.50],
              ("prompt-tuning", "mrpc"): [0.70], ("lopa", "mrpc"): [0.70], ("pt-moe", "sst2"): [0.90], ("zero-shot", "sst2"): [0.75]}
    cells = {key: [{"seed": seed, "accuracy": a} for seed, a in enumerate(values)] for key, values in scores.items()}
    lines = report_module.claim_lines(cells, ["zero-shot", "prompt-tuning", "lopa", "capt", "pt-moe", "lora"], ["sst2", "rte", "mrpc", "boolq"], 2,
                                      {"sst2": 3.0, "rte": 2.0})  # test-carve standard errors; mrpc has none
    claims = {line.split(",")[0][2:]: line for line in lines if line.startswith("- ")}
    # sst2: LoPA ran seed 0 only, so prompt tuning's 80.0 on seed 0 is its baseline, not its mean of 81.0 over seeds 0-1
    assert "held on 3 of 3 measured (sst2 85.0 vs 80.0; rte 61.0 vs 60.0; mrpc 70.0 vs 70.0): met on the means" in claims["LoPA >= prompt tuning (same m)"]
    assert claims["LoPA >= prompt tuning (same m)"].endswith("; margins within one test-carve standard error: rte +1.0 vs ± 2.0")  # sst2's +4 is not
    assert "held on 0 of 2 measured" in claims["CaPT (one vector per layer) >= prompt tuning (20 tokens)"]
    assert claims["CaPT (one vector per layer) >= prompt tuning (20 tokens)"].endswith(": not met on the means (on 1 of 2 seeds)")  # 2 tasks left < 3
    assert "needed on 4 of 4 tasks: held on 1 of 1 measured" in claims["PT-MoE >= prompt tuning"]
    assert claims["PT-MoE >= prompt tuning"].endswith(": open (on 1 of 2 seeds)")
    floor = next(line for line in lines if "zero-shot (75.0) on sst2" in line)
    assert "3 of 5 do; not: capt 70.0; no cell yet: lora" in floor and floor.endswith(": not met on the means")
    # the claim line rounds a mean the way the table does: 64.5 and 68.0 read 66.3 in both, not 66.2 in one
    halves = {("pt-moe", "arc-easy"): [{"seed": 0, "accuracy": 0.645}, {"seed": 1, "accuracy": 0.68}],
              ("prompt-tuning", "arc-easy"): [{"seed": 0, "accuracy": 0.70}, {"seed": 1, "accuracy": 0.655}]}
    ours = report_module.shared_means(halves, "pt-moe", "prompt-tuning", "arc-easy")[0]
    assert f"{ours:.1f}" == f"{report_module.mean_accuracy(halves, 'pt-moe', 'arc-easy'):.1f}" == "66.3"


def test_only_test_carves_big_enough_to_decide_judge_claims():
    """RTE (100 rows) and MRPC (128) stay in the table but judge no claim; a task without labels judges none either."""
    report_module = load_report()
    carves = {"sst2": report_module.CarveStats(272, 50.0, 3.0), "rte": report_module.CarveStats(100, 59.0, 4.9),
              "boolq": report_module.CarveStats(1000, 60.6, 1.5), "unlabelled": None}
    judging = report_module.claim_tasks(["sst2", "rte", "boolq", "unlabelled"], carves)
    assert judging == ["sst2", "boolq"]
    assert report_module.left_out_note(["sst2", "rte", "boolq", "unlabelled"], judging, carves) == (
        "Only tasks with at least 200 labelled test rows judge a claim; in the table only: rte (100 rows, ± 4.9), unlabelled (no labelled test rows).")
    assert report_module.left_out_note(["sst2"], ["sst2"], carves) == ""


def test_a_variant_is_paired_row_by_row_with_its_methods_defaults_and_its_claims_baseline():
    report_module = load_report()
    cells = {("lopa", "sst2"): [{"seed": 0, "correct": "1" * 20 + "0" * 10}, {"seed": 1, "correct": "1" * 30}],
             ("lopa@preset=paper", "sst2"): [{"seed": 0, "correct": "0" * 10 + "1" * 20}],  # 20 rows swap: 2.80 * sqrt((20/30) / 30) = 41.8 detectable
             ("capt@preset=paper", "sst2"): [{"seed": 1, "correct": "0" * 10 + "1" * 20}],  # 10 rows lost, none gained
             ("prompt-tuning", "sst2"): [{"seed": 0, "correct": "0" * 30}]}  # the paper recipe right alone on 20 rows
    assert report_module.variant_paired_lines(cells, ["capt@preset=paper", "lopa@preset=paper"], ["sst2", "boolq"]) == [
        "", ("Paired row by row (McNemar's exact test, seeds pooled; each comparison on its own, uncorrected): each variant "
             "against its method's defaults, then against the baseline of its method's claim."), "",
        "- lopa@preset=paper vs lopa, sst2: +0.0 points over 30 paired rows (10 vs 10 right alone), p = 1.000, detectable 41.8: **no difference found**",
        "- lopa@preset=paper vs prompt-tuning, sst2: +66.7 points over 30 paired rows (20 vs 0 right alone), p < 0.001, detectable 41.8: **better**"]
    cells[("capt", "sst2")] = [{"seed": 1, "correct": "1" * 30}]
    assert report_module.variant_paired_lines(cells, ["capt@preset=paper"], ["sst2"])[-1] == (
        "- capt@preset=paper vs capt, sst2: -33.3 points over 30 paired rows (0 vs 10 right alone), p = 0.002, detectable 29.5: **worse**")


def test_chosen_rates_show_the_grids_ends_ties_and_dev_margins():
    report_module = load_report()
    def cell(seed, rate, scores):
        return {"seed": seed, "train_settings": {"learning_rate": rate}, "budget": {"dev_size": 100},
                "dev_scores": dict(zip(["0.001", "0.003", "0.01", "0.03"], scores))}
    cells = {("capt", "sst2"): [cell(1, 0.01, [0.7, 0.8, 0.9, 0.85]), cell(0, 0.03, [0.73, 0.54, 0.86, 0.88])],
             ("lopa", "sst2"): [cell(0, 0.001, [0.86, 0.86, 0.86, 0.85])],
             ("lora", "sst2"): [{**cell(0, 0.003, []), "dev_scores": {"0.003": 0.8}}]}  # a grid of one rate: no margin to tell
    assert report_module.tuning_lines(cells, ["sst2", "boolq"])[-5:] == [
        "| capt | 0: 0.03* (by 2), 1: 0.01 (by 5) | — |", "| lopa | 0: 0.001* (tied with 2) | — |", "| lora | 0: 0.003* | — |",
        "", "2 of the 3 choices among two or more rates were tied or won by at most 2 dev rows."]


def test_no_claim_holds_before_anything_is_measured_against_zero_shot():
    report_module = load_report()
    zero_shot_only = {("zero-shot", "sst2"): [{"seed": 0, "accuracy": 0.78, "correct": "10"}]}
    lines = report_module.zero_shot_lines(zero_shot_only, ["zero-shot", "prompt-tuning"], ["sst2"])
    assert lines == ["- every method beats zero-shot on sst2: no trained cell yet: open"]
    assert report_module.paired_lines_per_claim(zero_shot_only, ["sst2"])[-1].startswith("- no claim yet has cells of both")
    assert report_module.paired_zero_shot_lines(zero_shot_only, ["zero-shot", "prompt-tuning"], ["sst2"]) == [
        "- **every method beats zero-shot on sst2** (each at p < 0.05): better for 0, worse for 0, undecided for 0, "
        "no per-row outcomes yet: prompt-tuning: **open**"]
    assert report_module.paired_zero_shot_lines(zero_shot_only, ["zero-shot", "prompt-tuning"], ["boolq"]) == [
        "- **every method beats zero-shot on boolq**: no zero-shot cell with per-row outcomes yet: **open**"]


def test_every_method_beats_zero_shot_is_judged_row_by_row_against_the_bare_models_answers_on_each_seed():
    """Zero-shot ran once; its answers pair with every seed of a method, and every method must win at p < 0.05."""
    report_module = load_report()
    bare = "1" * 4 + "0" * 8  # 4 of 12 right
    cells = {("zero-shot", "boolq"): [{"seed": 0, "correct": bare}],
             ("prompt-tuning", "boolq"): [{"seed": s, "correct": "1" * 12} for s in range(3)],  # 8 rows won on each seed
             ("capt", "boolq"): [{"seed": 0, "correct": "1" * 6 + "0" * 6}]}  # 2 rows won: p = 0.5
    lines = report_module.paired_zero_shot_lines(cells, ["zero-shot", "prompt-tuning", "capt"], ["boolq"])
    assert lines[0].startswith("- prompt-tuning vs zero-shot, boolq: +66.7 points over 36 paired rows (24 vs 0 right alone)")
    assert lines[0].endswith("**holds**")
    assert lines[1].startswith("- capt vs zero-shot, boolq: +16.7 points over 12 paired rows (2 vs 0 right alone), p = 0.500")
    assert lines[2] == ("- **every method beats zero-shot on boolq** (each at p < 0.05): better for 1, worse for 0, "
                        "undecided for 1: **undecided at this power**")
    cells[("capt", "boolq")] = [{"seed": 1, "correct": "0" * 12}]  # 4 rows lost: p 0.125
    worse = report_module.paired_zero_shot_lines(cells, ["zero-shot", "prompt-tuning", "capt"], ["boolq"])
    assert worse[-1].endswith("better for 1, worse for 0, undecided for 1: **undecided at this power**")
    cells[("capt", "boolq")] = [{"seed": s, "correct": "0" * 12} for s in range(2)]  # 8 rows lost: p 0.008
    assert report_module.paired_zero_shot_lines(cells, ["zero-shot", "prompt-tuning", "capt"], ["boolq"])[-1].endswith(
        "better for 1, worse for 1, undecided for 0: **does not hold**")
    cells[("capt", "boolq")] = [{"seed": s, "correct": "1" * 12} for s in range(2)]  # 16 rows won
    assert report_module.paired_zero_shot_lines(cells, ["zero-shot", "prompt-tuning", "capt"], ["boolq"])[-1].endswith(
        "better for 2, worse for 0, undecided for 0: **holds**")


def test_a_claim_over_its_tasks_is_judged_by_the_paired_verdicts_not_by_margins_inside_the_noise():
    report_module = load_report()
    better, same = "1" * 20, "1" * 10 + "0" * 10  # 10 rows only the method gets right: p = 2 / 2^10
    cells = {("prompt-tuning", "sst2"): [{"seed": 0, "correct": same}], ("pt-moe", "sst2"): [{"seed": 0, "correct": better}],
             ("prompt-tuning", "sciq"): [{"seed": 0, "correct": better}], ("pt-moe", "sciq"): [{"seed": 0, "correct": "1" * 19 + "0"}],
             ("lopa", "sst2"): [{"seed": 0, "correct": better}], ("capt", "sst2"): [{"seed": 0, "correct": "0" * 20}]}
    overall = {line.split(", over the tasks")[0][4:]: line for line in report_module.paired_lines_per_claim(cells, ["sst2", "sciq", "boolq"])
               if ", over the tasks" in line}
    # PT-MoE: better on sst2, one row worse on sciq (p = 1): a mean would count sciq against it, the paired test does not
    assert overall["PT-MoE >= prompt tuning"].endswith(
        "(needed on 3 of 3): better on 1, worse on 0, undecided on 1, not measured on 1: **open**")
    assert overall["LoPA >= prompt tuning (same m)"].endswith("better on 1, worse on 0, undecided on 0, not measured on 2: **open**")
    assert overall["CaPT (one vector per layer) >= prompt tuning (20 tokens)"].endswith(  # needed on 3 of 3: one loss decides
        "better on 0, worse on 1, undecided on 0, not measured on 2: **does not hold**")
    assert report_module.paired_claim_line("c", {"a": "holds", "b": "holds", "c": "does not hold"}, 2, 3).endswith("**holds**")
    assert report_module.paired_claim_line("c", {"a": "does not hold", "b": "undecided"}, 2, 3).endswith("**open**")
    assert report_module.paired_claim_line("c", {"a": "does not hold", "b": "does not hold"}, 2, 3).endswith("**does not hold**")
    assert report_module.paired_claim_line("c", {"a": "undecided", "b": "holds", "c": "does not hold"}, 2, 3).endswith(
        "**undecided at this power**")


def test_claims_are_compared_seed_by_seed_on_the_seeds_both_have():
    report_module = load_report()
    cells = {("prompt-tuning", "sst2"): [{"seed": 0, "accuracy": 0.80}, {"seed": 1, "accuracy": 0.82}, {"seed": 2, "accuracy": 0.84}],
             ("lopa", "sst2"): [{"seed": 2, "accuracy": 0.83}, {"seed": 0, "accuracy": 0.81}],  # seed 1 missing, order as globbed
             ("lopa", "rte"): [{"seed": 0, "accuracy": 0.60}]}  # no baseline on rte
    assert report_module.paired_lines(cells, ["sst2", "rte"])[-3:] == [
        "| lopa vs prompt-tuning | 1 of 2: +1.0, -1.0 | — |",
        "| capt vs prompt-tuning | — | — |",
        "| pt-moe vs prompt-tuning | — | — |",
    ]


def test_matching_the_majority_floor_is_not_clearing_it():
    """mrpc's floor is 84/128 = 65.625: a method with the same 84 right answers is not above it, though 65.6 rounds alike."""
    report_module = load_report()
    cells = {("lopa", "mrpc"): [{"accuracy": 84 / 128}], ("capt", "mrpc"): [{"accuracy": 85 / 128}]}
    lines = report_module.floor_lines(cells, ["lopa", "capt"], ["mrpc"], {"mrpc": 100 * 84 / 128})
    assert lines[-1] == "- mrpc (floor 65.6): 1 of 2 measured: capt 66.4"


def test_chart_starts_below_every_bar_and_whisker():
    """A fixed start at 40 hid zero-shot's 34.4 on mrpc; the start now follows the lowest error-bar end."""
    report_module = load_report()
    assert report_module.chart_floor([34.4, 86.3, math.nan], [0.0, 1.5, 0.0]) == 30  # a missing cell (nan) is ignored
    assert report_module.chart_floor([57.3, 47.3], [2.0, 4.0]) == 40  # 43.3 is the lowest whisker end
    assert report_module.chart_floor([50.0], [0.0]) == 40  # a bar ending on a multiple of 10 keeps a margin below it
    assert report_module.chart_floor([3.0], [5.0]) == 0  # never below zero


def test_spread_is_the_seed_standard_deviation_in_points():
    """The table's ± and the chart's whiskers: sample std over seeds, 0 where one or no seed ran."""
    report_module = load_report()
    cells = {("lopa", "sst2"): [{"accuracy": 0.80}, {"accuracy": 0.84}, {"accuracy": 0.86}], ("lopa", "rte"): [{"accuracy": 0.5}]}
    assert math.isclose(report_module.accuracy_spread(cells, "lopa", "sst2"), statistics.stdev([80, 84, 86]))  # 3.06, not the population 2.49
    assert report_module.accuracy_spread(cells, "lopa", "rte") == 0.0
    assert report_module.accuracy_spread(cells, "lopa", "mrpc") == 0.0


def test_the_speed_column_is_read_on_the_task_its_header_names():
    """Tasks differ several-fold in tokens per step: the s/step column is the first task's median, whatever ran after."""
    report_module = load_report()
    run = {"accuracy": 0.8, "trainable_parameters": 11520}
    cells = {("lopa", "sst2"): [run | {"seconds_per_step": s} for s in (2.0, 1.0, 4.0)], ("lopa", "sciq"): [run | {"seconds_per_step": 7.7}],
             ("capt", "sciq"): [run | {"seconds_per_step": 5.0}]}
    assert report_module.table_header(["sst2", "sciq"])[0].endswith("| s/step on sst2 |")
    assert report_module.table_row(cells, "lopa", ["sst2", "sciq"], 3).endswith("| 11,520 | 2.00 |")  # not sciq's 7.70
    assert report_module.table_row(cells, "capt", ["sst2", "sciq"], 3) == "| capt | — (0/3) | 80.0 (1/3) | 11,520 |  |"


def test_the_header_lists_each_cells_command_once_whatever_report_it_wrote():
    """Lanes that wrote scratch reports ran the same cells as the one that wrote docs/: one line, naming this report."""
    report_module = load_report()
    base = "python benchmarks/compare.py --tasks sst2 --seeds 0"
    cells = {("lopa", "sst2"): [{"command": f"{base} --report /tmp/lane1.md"}, {"command": f"{base} --report=docs/results.md"}],
             ("capt", "sst2"): [{"command": f"{base} --report docs/results.md --methods capt"}]}
    args = type("Args", (), {"model": "m", "command": "python benchmarks/compare.py --report-only", "report": ROOT / "docs" / "results.md", "results": Path("compare"),
                             "epochs": None, "steps": 150, "batch_size": 8, "max_length": 256, "lr_grid": None})
    listed = [line for line in report_module.header_lines(args, cells) if line.startswith("- `")]
    assert listed == [f"- `{base} --methods capt --report docs/results.md`", f"- `{base} --report docs/results.md`"]
    args.report = Path("docs/tuned.md")
    assert [line for line in report_module.header_lines(args, cells) if line.startswith("- `")][1] == f"- `{base} --report docs/tuned.md`"


def test_cells_from_an_older_carve_of_a_task_are_flagged():
    report_module = load_report()
    now, before = "boolq: 2270 train / 1000 test", "boolq: 2770 train / 500 test"
    carves = {"boolq": report_module.CarveStats(1000, 62.0, 1.5, now), "sst2": report_module.CarveStats(272, 51.0, 3.0, "sst2: ...")}
    cells = {("lopa", "boolq"): [{"seed": 0, "split": before}, {"seed": 1, "split": now}], ("capt", "boolq"): [{"seed": 0, "split": now}],
             ("lopa", "sst2"): [{"seed": 0, "split": "sst2: ..."}]}
    assert report_module.stale_lines(cells, carves) == [
        f"**1 boolq cells ran on an older carve than the task's current one ({now}); rerun them before reading their numbers:** lopa seed 0.", ""]
    assert report_module.stale_lines({("capt", "boolq"): cells[("capt", "boolq")]}, carves) == []


def test_mcnemar_pools_the_common_seeds_and_states_its_power():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from paired import exact_two_sided, mcnemar

    assert exact_two_sided(0, 6) == 2 / 64 and exact_two_sided(3, 6) == 1.0  # by hand: 2 * C(6,0) / 2^6
    method = {0: "1111100000", 1: "1111111000", 2: "1" * 10}  # seed 2 has no baseline: left out
    baseline = {0: "1000000000", 1: "1111100000"}
    paired = mcnemar(method, baseline)
    assert (paired.rows, paired.method_only, paired.baseline_only) == (20, 6, 0)
    assert paired.p_value == 2 / 64 and paired.verdict() == "holds" and paired.difference == 30.0
    assert mcnemar(baseline, method).verdict() == "does not hold"
    assert mcnemar({0: "10"}, {0: "01"}).verdict() == "undecided"
    assert round(paired.detectable, 1) == 34.3  # 20 pairs, 30% disagreeing: (1.96 + 0.84) * sqrt(0.3 / 20), at 80% power
    # seeds of 10 rows to find 30 points with 30% disagreeing: 0.3 * (100 * 2.80 / 30)^2 = 26.2 rows alone, and
    # 0.3 * (100 * (2.58 + 0.84) / 30)^2 = 38.9 rows at 0.05 / 5; none where both got as many rows right
    assert paired.seeds == 2 and paired.seeds_to_decide() == 3 and paired.seeds_to_decide(family=5) == 4
    assert mcnemar({0: "10"}, {0: "01"}).seeds_to_decide() is None


def test_holm_adjusts_each_claims_tasks_as_one_family():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from paired import holm

    # by hand, family of 5: 0.001 * 5 = 0.005; 0.011 * 4 = 0.044; 0.012 * 3 = 0.036 is raised to 0.044; 0.3 * 2 = 0.6
    assert holm({"a": 0.011, "b": 0.001, "c": 0.012, "d": 0.3}, 5) == pytest.approx({"a": 0.044, "b": 0.005, "c": 0.044, "d": 0.6})
    assert holm({"a": 0.5}, 3) == {"a": 1.0} and holm({}, 5) == {}


def test_a_task_significant_alone_is_undecided_once_the_claims_tasks_are_corrected_together():
    report_module = load_report()
    # 9 rows only prompt tuning gets right, 1 only PT-MoE: exact p = 2 * 11 / 2^10 = 0.021 alone, 3 * 0.021 = 0.064 over 3 tasks
    ours, theirs = "0" * 9 + "1" + "1" * 10, "1" * 9 + "0" + "1" * 10
    cells = {("prompt-tuning", "sst2"): [{"seed": 0, "correct": theirs}], ("pt-moe", "sst2"): [{"seed": 0, "correct": ours}]}
    lines = [line for line in report_module.paired_lines_per_claim(cells, ["sst2", "sciq", "boolq"]) if "PT-MoE" in line]
    assert lines[0] == ("- PT-MoE >= prompt tuning, sst2: -40.0 points over 20 paired rows (1 vs 9 right alone), p = 0.021, "
                        "Holm p = 0.064, detectable 44.3: **undecided** (seeds to decide: 2; 1 ran)")  # 0.5 * (100 * 3.24 / 40)^2 = 32.7 rows
    assert lines[1].endswith("better on 0, worse on 0, undecided on 1, not measured on 2: **open**")
    assert report_module.paired_line("even", report_module.mcnemar({0: "10"}, {0: "01"}), "undecided", 1.0, 3).endswith(
        "**undecided** (no difference to decide)")
    assert report_module.paired_lines_per_claim(cells, ["sst2"])[-1].endswith(  # a family of one: no correction, one loss decides
        "better on 0, worse on 1, undecided on 0, not measured on 0: **does not hold**")


def test_serve_speed_scheduling_part_compares_continuous_and_static_servers(tmp_path, tiny_model_dir):
    """Part (g) runs the same mixed load on a continuous-batching and a static-batching server, then completions
    batched vs one-at-a-time, and reports both ratios (no timing asserted)."""
    out = tmp_path / "scheduling.txt"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve_speed.py"), "--model", str(tiny_model_dir),
                          "--eval-rows", "16", "--parts", "g", "--clients", "4", "--long-tokens", "6", "--generations", "2", "--short-requests", "3",
                          "--unbatched-clients", "1", "--threads", "1", "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr
    report = out.read_text()
    assert report.count("0 failed: classify 6 requests") == 2  # 2 clients x 3, on the continuous and the static server
    assert "completions 4 (24 tokens)" in report  # 2 generating clients x 2 completions x 6 tokens, on each server
    assert "short requests' p99 latency, continuous / old static batcher =" in report
    assert "completions throughput, batched / one-at-a-time =" in report


def test_bf16_report_pairs_the_dtypes_row_by_row_over_the_seeds_that_recorded_rows(tmp_path):
    def dtype(correct: str, tokens_per_s: float) -> dict:
        return {"accuracy": correct.count("1") / len(correct), "tokens_per_s": tokens_per_s, "steps": 3, "correct": correct}

    (tmp_path / "sst2-seed0.json").write_text(json.dumps({"seed": 0, "float32": {"accuracy": 0.9, "tokens_per_s": 40, "steps": 3},
                                                          "bfloat16": {"accuracy": 0.8, "tokens_per_s": 20, "steps": 3}}))
    (tmp_path / "sst2-seed1.json").write_text(json.dumps({"seed": 1, "float32": dtype("1111100000", 40), "bfloat16": dtype("1110000001", 10)}))
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bf16_cpu.py"), "--report-only", "--results", str(tmp_path),
                          "--output", str(tmp_path / "report.txt")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    report = (tmp_path / "report.txt").read_text()
    assert "seed 0: float32 90.0%, bfloat16 80.0% (-10.0 points); training tokens/s 40 vs 20 (0.50x); 3 steps; rows not recorded" in report
    assert "seed 1: float32 50.0%, bfloat16 40.0% (-10.0 points); training tokens/s 40 vs 10 (0.25x)" in report
    assert "mean bf16 - fp32 over 2 seed(s): -10.0 points" in report
    # seed 1 alone is paired: bf16 right alone on row 10, fp32 alone on rows 4 and 5; exact p = 2 * P(X <= 1 | 3) = 1.0
    assert "paired over 10 rows: bf16 right alone on 1, fp32 alone on 2; McNemar p = 1.000" in report


def test_forward_only_rows_are_paired_with_zero_shots_answers_on_every_seed():
    report_module = load_script("forward_only_report")
    bare = {"seed": 0, "accuracy": 0.5, "correct": "1100"}
    records = {0: {"correct": "1111"}, 1: {"correct": "1110"}}  # right alone on rows 3-4 of seed 0 and row 3 of seed 1
    assert report_module.against_zero_shot(records, bare).startswith("+37.5, p = 0.250, detectable ")
    assert report_module.against_zero_shot(records, {"accuracy": 0.5}) == "zero-shot's rows not recorded"
    # right alone on all 16 rows: exact p = 2 / 2^16, which three decimals would print as a p of zero
    always_right = report_module.against_zero_shot({0: {"correct": "1" * 16}}, {"seed": 0, "correct": "0" * 16})
    assert always_right.startswith("+100.0, p < 0.001, detectable ")


def test_capt_sink_refuses_an_unknown_row_before_loading_the_model():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "capt_sink.py"), "--only", "paper,papr"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert "--only: unknown row papr; the rows: bare, paper, bos, zero-every, mean-input, zero-input" in result.stderr
    assert "Loading weights" not in result.stderr
