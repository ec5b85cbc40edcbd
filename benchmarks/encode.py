"""Reservoir throughput, side by side (the same as `lsm bench encode`).

    python benchmarks/encode.py [--quick] [--json]
"""

import sys

from lsm.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "encode", *sys.argv[1:]]))
