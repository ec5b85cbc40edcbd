"""The paper's zero-shot experiment on the offline twins: vision digits 1-7 paired with spoken
digits 1-7 train the heads; digits 8 and 9 are recognised across modalities at test time.

    python examples/zeroshot_offline.py --n-seeds 3 --weights crossbar
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lsm.contrastive import ZeroShotConfig
from lsm.data.demo import ensure_demo_twins
from lsm.experiments import ZeroShotRunConfig, format_zeroshot, run_zeroshot
from lsm.experiments.common import WEIGHT_SOURCES


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="lsm-demo", help="twins, feature cache and runs")
    p.add_argument("--n-seeds", type=int, default=3, help="reservoir draws (seeds 0 .. N-1)")
    p.add_argument("--weights", choices=WEIGHT_SOURCES, default="gaussian")
    p.add_argument("--epochs", type=int, default=100)
    args = p.parse_args(argv)
    base = Path(args.workdir)
    nm, td = ensure_demo_twins(base)
    cfg = ZeroShotRunConfig(nm, td, ZeroShotConfig(epochs=args.epochs), args.n_seeds,
                            args.weights, base / "runs", base / "features")
    result = run_zeroshot(cfg)
    print(format_zeroshot(result))
    return result


if __name__ == "__main__":
    main()
