#!/usr/bin/env bash
# Create ./.venv if needed and install rram-lsm (editable) with its test tools. Idempotent: a
# second run with an unchanged pyproject.toml installs nothing.
#
# torch: with no GPU, the CPU build is installed first (`pip install torch==2.13.0`, which the
# package's `torch>=2.1` then accepts), so pip never pulls the multi-GB CUDA wheels. With an
# NVIDIA GPU (nvidia-smi works) the default CUDA build is installed instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "rram-lsm needs Python >= 3.10; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

stamp=".venv/.rram-lsm-installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
    exit 0
fi

if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "== installing torch (CUDA build: a GPU is present)"
        "${PIP[@]}" install torch
    else
        echo "== installing torch==2.13.0 (CPU build: no GPU found)"
        "${PIP[@]}" install torch==2.13.0
    fi
fi
echo "== installing rram-lsm and its test tools"
"${PIP[@]}" install -e ".[test]"
rm -f .venv/.rram-lsm-installed-*
touch "$stamp"
