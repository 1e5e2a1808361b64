"""Smoke run of the vision grid on the tiny DINOv2 and a folder of images: cells are written, the report holds the
table, the paired claims and the missing cells, and the chart is drawn."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
