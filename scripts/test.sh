#!/usr/bin/env bash
# Set up (first run only), lint, and run the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff check"
.venv/bin/ruff check .
echo "== pytest"
exec .venv/bin/python -m pytest -q "$@"
