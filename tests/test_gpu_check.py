"""benchmarks/gpu_check.py runs anywhere with tiny shapes, so the GPU check cannot rot between GPU sessions."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from softprompt.methods import BASELINES, METHODS

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_check_runs_on_the_cpu_with_tiny_shapes(tmp_path):
    report = tmp_path / "gpu_check.txt"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--device", "cpu", "--steps", "1",
                          "--warmup", "1", "--output", str(report)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    text = report.read_text()
    assert text.count("ok float32 max|dlogit| 0.0e+00 tokens = cpu; ok bfloat16") == len(METHODS) + len(BASELINES)
    assert "ours / peft tokens/s" in text and "cached (" in text
