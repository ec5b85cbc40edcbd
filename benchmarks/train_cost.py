"""Training cost of the LSM pipeline against a BPTT spiking RNN (`lsm bench train-cost`).

    python benchmarks/train_cost.py [--json]
"""

import sys

from lsm.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "train-cost", *sys.argv[1:]]))
