"""Every code block in docs/ runs, so the docs cannot go stale.

Each page runs in its own empty folder, its blocks in order (a page may train a prompt and then export
it). Shell blocks run in bash with the virtualenv's `softprompt` on PATH, python blocks in a fresh
interpreter. A block whose first line is `# file: NAME` is written to NAME instead (a config file
shown in the docs). A block right after `<!-- docs-test: skip (why) -->` is not run; the test warns
with the reason, so skipping is never silent.

The docs use the embedded models; here SOFTPROMPT_HOME points at a folder where smollm2-135m holds the tiny
random Llama and dinov2-s the tiny random DINOv2, so the commands and APIs run exactly as written but fast (the
numbers they print mean nothing). A page that uses Fashion-MNIST is skipped where the dataset is not installed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from softprompt.methods import all_methods

from softprompt.backbones import weights_fingerprint

from softprompt.backbones.loading import FINGERPRINT_FILE
from softprompt.tasks import fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((.+?)\)\s*-->")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
RUN = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}


def pages() -> list[Path]:
    return sorted(set(DOCS.glob("*.md")) | set(DOCS.glob("**/*.md")))


def blocks(page: Path) -> list[tuple[int, str, str, str | None]]:
    """(line, language, code, skip reason) for every fenced block of a page."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip().splitlines()
        skip = SKIP.search(before[-1]) if before else None
        found.append((text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2), skip.group(1) if skip else None))
    return found


@pytest.fixture(scope="session")
def stand_in_home(tmp_path_factory, tiny_model_dir, tiny_base):
    home = tmp_path_factory.mktemp("softprompt-home")
    folder = home / "models" / "smollm2-135m"
    shutil.copytree(tiny_model_dir, folder)
    (folder / FINGERPRINT_FILE).write_text(weights_fingerprint(tiny_base.model))
    torch.manual_seed(0)  # dinov2-s: a tiny random DINOv2 with the real 14 px patches (64 of them at 112 px)
    vit = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, patch_size=14)).eval()
    vit.save_pretrained(home / "models" / "dinov2-s")
    (home / "models" / "dinov2-s" / FINGERPRINT_FILE).write_text(weights_fingerprint(vit))
    return home


def test_the_docs_have_pages_and_runnable_blocks():
    assert {"quickstart.md", "cli.md", "peft.md", "distributed.md"} <= {p.name for p in pages()}
    assert {p.stem for p in (DOCS / "methods").glob("*.md")} >= set(all_methods())  # a page per registered method
    assert sum(RUN.get(language) is not None for page in pages() for _, language, _, _ in blocks(page)) >= 15


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_code_block_of_the_page_runs(page, tmp_path, stand_in_home):
    env = {**os.environ, "SOFTPROMPT_HOME": str(stand_in_home), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    if "fashion-mnist" in page.read_text() and not fashion_mnist.installed():
        pytest.skip(f"{page.name} uses Fashion-MNIST: the tasks {fashion_mnist.INSTALL}")
    for line, language, code, skip in blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        if skip:
            warnings.warn(f"{where}: block not run ({skip})", stacklevel=1)
            continue
        if code.startswith("# file: "):
            name, body = code.split("\n", 1)
            (tmp_path / name.removeprefix("# file: ").strip()).write_text(body)
            continue
        if language not in RUN:
            continue
        command = ["bash", "-euo", "pipefail", "-c", code] if RUN[language] == "bash" else [sys.executable, "-c", code]
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, f"{where} failed ({run.returncode}):\n{code}\n--- stdout\n{run.stdout[-2000:]}\n--- stderr\n{run.stderr[-3000:]}"


def test_the_cli_reference_is_what_the_parsers_say():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py")], capture_output=True, text=True, check=True)
    assert run.stdout == (DOCS / "cli.md").read_text(), "docs/cli.md is stale: python scripts/cli_reference.py > docs/cli.md"
