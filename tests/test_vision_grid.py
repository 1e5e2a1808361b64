"""Smoke run of the vision grid on the tiny DINOv2 and a folder of images: cells are written, the report holds the
table, the paired claims and the missing cells, and the chart is drawn."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import CLASSES, striped_image

ROOT = Path(__file__).resolve().parent.parent


def test_the_grid_fills_cells_and_reports_claims_and_gaps(tmp_path, tiny_vit_dir):
    for label, name in enumerate(CLASSES):
        (tmp_path / "stripes" / name).mkdir(parents=True)
        for seed in range(4):
            Image.fromarray(striped_image(label, seed)).save(tmp_path / "stripes" / name / f"{seed}.png")
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vision_grid.py"), "--model", str(tiny_vit_dir), "--tasks",
                          str(tmp_path / "stripes"), "--methods", "linear-probe,vpt-deep", "--seeds", "0,1", "--steps", "2",
                          "--results", str(tmp_path / "cells"), "--report", str(tmp_path / "report.md")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    cell = json.loads((tmp_path / "cells" / "stripes" / "vpt-deep" / "seed1.json").read_text())
    assert 0 <= cell["accuracy"] <= 1 and cell["steps"] == 2 and cell["trainable_parameters"] > 0 and "seeded 80/20" in cell["split"]
    report = (tmp_path / "report.md").read_text()
    assert "| vpt-deep | " in report and "(2/2)" in report and "Missing cells: none" in report
    assert "VPT-deep beats the linear probe" in report and "of 2 seeds" in report
    assert "VIPAMIN beats VPT's default (xavier) init on VPT-deep, as its paper claims" in report and "**open**" in report
    assert (tmp_path / "report.png").stat().st_size > 1000


def test_a_cell_stopped_mid_run_resumes_to_the_same_result(tmp_path, tiny_vit_dir, monkeypatch, capsys):
    from softprompt.training.trainer import Trainer
    from test_benchmarks import load_script

    images = tmp_path / "stripes"
    for label, name in enumerate(CLASSES):
        (images / name).mkdir(parents=True)
        for seed in range(4):
            Image.fromarray(striped_image(label, seed)).save(images / name / f"{seed}.png")
    grid = load_script("vision_grid")
    monkeypatch.setattr(grid, "CHECKPOINT_EVERY", 2)
    monkeypatch.setattr(grid.shutil, "rmtree", lambda path: None)  # keep the work folders: their logs hold each step's loss

    def run(results: str) -> None:
        monkeypatch.setattr(sys, "argv", ["vision_grid.py", "--model", str(tiny_vit_dir), "--tasks", str(images), "--methods",
                                          "full-finetune,vpt-deep", "--seeds", "0", "--steps", "4", "--batch-size", "2",
                                          "--results", str(tmp_path / results), "--report", str(tmp_path / f"{results}.md")])
        grid.main()

    run("straight")
    original_step = Trainer._step

    def dies_at_step_three(self, group):
        record = original_step(self, group)
        if self.step == 3:
            raise KeyboardInterrupt  # a session's end: step 2's checkpoint survives
        return record

    monkeypatch.setattr(Trainer, "_step", dies_at_step_three)
    with pytest.raises(KeyboardInterrupt):
        run("stopped")
    monkeypatch.setattr(Trainer, "_step", original_step)
    capsys.readouterr()
    run("stopped")  # full-finetune resumes at step 2 (the model's own weights restored), then vpt-deep runs
    assert capsys.readouterr().out.count("resuming from") == 1
    for method in ("full-finetune", "vpt-deep"):
        straight, resumed = (json.loads((tmp_path / name / "stripes" / method / "seed0.json").read_text()) for name in ("straight", "stopped"))
        assert (resumed["accuracy"], resumed["correct"], resumed["steps"]) == (straight["accuracy"], straight["correct"], 4)
        straight_log, resumed_log = ([json.loads(line)["loss"] for line in (tmp_path / name / ".runs" / "steps4-batch2" / "stripes" / method /
                                      "seed0" / "metrics.jsonl").read_text().splitlines() if "loss" in json.loads(line)] for name in ("straight", "stopped"))
        assert len(straight_log) == 4 and resumed_log == pytest.approx(straight_log, abs=1e-6)
