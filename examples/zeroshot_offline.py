"""The paper's zero-shot experiment on the offline twins: vision digits 1-7 paired with spoken
digits 1-7 train the heads; digits 8 and 9 are recognised across modalities at test time.

    python examples/zeroshot_offline.py --seeds 3 --weights crossbar
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lsm.contrastive import ZeroShotConfig
from lsm.contrastive.run import format_zeroshot, run_zeroshot
from lsm.data.demo import ensure_demo_twins


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="lsm-demo")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--weights", choices=["gaussian", "crossbar"], default="gaussian")
    p.add_argument("--epochs", type=int, default=100)
    args = p.parse_args(argv)
    base = Path(args.dir)
    nm, td = ensure_demo_twins(base)
    factory = None
    if args.weights == "crossbar":
        from lsm.weights import CrossbarWeights

        factory = CrossbarWeights
    result = run_zeroshot(nm, td, args.seeds, ZeroShotConfig(epochs=args.epochs),
                          base / "runs", base / "features", weights_factory=factory)
    print(format_zeroshot(result))
    return result


if __name__ == "__main__":
    main()
