#!/usr/bin/env bash
# Set up (first run only) and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lsm demo "$@"
