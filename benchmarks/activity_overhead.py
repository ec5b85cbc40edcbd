"""What activity counting (``LSM.encode(..., return_activity=True)``) costs the kernels.

The same events are encoded with counting off and on, in interleaved rounds, on the workloads
of ``lsm bench encode`` (float32 and int16 weights) and on the simulated crossbar in the loop.
Printed per path: samples/s off and on, the cost ``rate_off / rate_on - 1`` of the best rounds
and its range over the rounds, and whether it stays under ``--budget`` (default 5 %) in every
round; no verdict when the rounds spread more than 1.25x or other processes took more than
10 % of the CPUs.

    python benchmarks/activity_overhead.py [--quick] [--budget 0.05] [--json]
"""

import argparse
import json

import numpy as np

from lsm import LSM
from lsm.bench.encode import NOISY_SPREAD, WORKLOADS, OtherLoad, _round_rates
from lsm.events import EventBatch
from lsm.weights import CrossbarWeights


def _paths(quick: bool):
    """(name, lsm, events) of each path measured."""
    for w in WORKLOADS:
        n = w.n_samples_quick if quick else w.n_samples
        rng = np.random.default_rng(0)
        raster = (rng.random((n, w.config.n_bins, w.config.n_inputs))
                  < w.input_activity).astype(np.uint8)
        events = EventBatch.from_raster(raster)
        yield f"{w.name} float32", LSM(w.config), events
        yield f"{w.name} int16", LSM(w.config.replace(weight_format="int16")), events
        if w.name == "paper":
            m = max(n // 8, 64)
            yield ("paper crossbar in the loop", LSM(w.config, CrossbarWeights(in_loop=True)),
                   events.select(slice(0, m)))


def measure(name: str, lsm: LSM, events: EventBatch, rounds: int, budget: float) -> dict:
    n = len(events)
    lsm.encode(events.select(slice(0, 4)), progress=False, return_activity=True)  # compile
    lsm.encode(events.select(slice(0, 4)), progress=False)
    fns = {"off": lambda: lsm.encode(events, features="counts", progress=False,
                                     batch_size=n),
           "on": lambda: lsm.encode(events, features="counts", progress=False, batch_size=n,
                                    return_activity=True)}
    with OtherLoad() as load:
        rates = _round_rates(fns, n, rounds)
    off, on = np.asarray(rates["off"]), np.asarray(rates["on"])
    per_round = off / on - 1.0
    spread = float(max(off.max() / off.min(), on.max() / on.min()))
    cost = float(off.max() / on.max() - 1.0)
    if load.share is not None and load.share > 0.10:
        verdict = f"too noisy to conclude (other processes used {100 * load.share:.0f} %)"
    elif spread > NOISY_SPREAD:
        verdict = f"too noisy to conclude (rates moved {spread:.2f}x between rounds)"
    elif per_round.max() <= budget:
        verdict = f"under {100 * budget:.0f} % in every round"
    elif per_round.min() > budget:
        verdict = f"over {100 * budget:.0f} % in every round"
    else:
        verdict = "inconclusive"
    return {"path": name, "samples": n, "off_samples_per_s": float(off.max()),
            "on_samples_per_s": float(on.max()), "cost": cost,
            "cost_rounds": [float(per_round.min()), float(np.median(per_round)),
                            float(per_round.max())],
            "spread": spread, "other_load": load.share, "verdict": verdict}


def main(quick: bool = False, budget: float = 0.05) -> list:
    rounds = 3 if quick else 7
    return [measure(name, lsm, events, rounds, budget) for name, lsm, events in _paths(quick)]


def format_rows(rows: list) -> str:
    lines = [f"{'path':<28}{'off /s':>10}{'on /s':>10}{'cost':>8}   rounds (min-med-max)   "
             "verdict"]
    for r in rows:
        lo, med, hi = (100 * v for v in r["cost_rounds"])
        lines.append(f"{r['path']:<28}{r['off_samples_per_s']:>10,.0f}"
                     f"{r['on_samples_per_s']:>10,.0f}{100 * r['cost']:>7.1f}%   "
                     f"{lo:5.1f} {med:5.1f} {hi:5.1f} %       {r['verdict']}")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and rounds")
    ap.add_argument("--budget", type=float, default=0.05,
                    help="the cost counted as cheap (fraction; default 0.05)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = ap.parse_args()
    result = main(a.quick, a.budget)
    print(json.dumps(result) if a.json else format_rows(result))
