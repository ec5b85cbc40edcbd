"""Energy per inference vs ADC resolution, reservoir size and recurrent sparsity.

The Python API behind ``lsm energy``, in sweeps: each point encodes the same N-MNIST test
samples with activity counting (``LSM.encode(..., return_activity=True)``) and prices them with
the shipped profiles (``imc40`` macro, ``digital-40nm`` event-driven accelerator, ``gpu-a100``).
ADC resolution only re-prices one activity; size and sparsity re-encode.

    python examples/energy_sweep.py [--nmnist DIR] [--samples 200] [--json]

Without ``--nmnist`` the demo's N-MNIST twin is made (or reused) under ``--workdir``
(default ``lsm-demo``). Output: a table on stdout and ``<workdir>/runs/energy_sweep.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from lsm import LSM
from lsm.data.registry import dataset_spec, load_split
from lsm.energy import DEFAULT_PROFILES, Workload, estimate, shipped_profile

ADC_BITS = (4, 6, 8, 10, 12, 14)
SIZES = (50, 100, 200, 400)
P_REC = (1.0, 0.5, 0.2, 0.05)


def _profiles(adc_bits: int | None = None) -> list:
    out = [shipped_profile(n) for n in DEFAULT_PROFILES]
    if adc_bits is not None:
        m = out[0]
        out[0] = dataclasses.replace(m, readout=dataclasses.replace(m.readout, adc_bits=adc_bits))
    return out


def _point(report) -> dict:
    return {p.name: float(np.mean(p.total_j)) for p in report.platforms}


def sweep(events, base_config, progress: bool = False) -> dict:
    """``{"adc_bits": [...], "n_neurons": [...], "p_rec": [...]}``: each a list of rows
    ``{"value": v, "<platform>": J per inference, ...}``."""
    out = {"adc_bits": [], "n_neurons": [], "p_rec": []}
    lsm = LSM(base_config)
    _, activity = lsm.encode(events, features="counts", progress=progress,
                             return_activity=True)
    workload = Workload.from_lsm(lsm)
    for bits in ADC_BITS:
        out["adc_bits"].append({"value": bits,
                                **_point(estimate(activity, workload, _profiles(bits)))})
    for key, values in (("n_neurons", SIZES), ("p_rec", P_REC)):
        for v in values:
            lsm_v = LSM(base_config.replace(**{key: v}))
            _, act = lsm_v.encode(events, features="counts", progress=progress,
                                  return_activity=True)
            out[key].append({"value": v, **_point(estimate(act, Workload.from_lsm(lsm_v),
                                                           _profiles()))})
    return out


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lsm.plots import save_figure

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    labels = {"adc_bits": "macro ADC resolution (bits)", "n_neurons": "reservoir neurons",
              "p_rec": "recurrent connection probability"}
    for ax, key in zip(axes, ("adc_bits", "n_neurons", "p_rec"), strict=True):
        rows = result[key]
        x = [r["value"] for r in rows]
        for name in DEFAULT_PROFILES:
            ax.plot(x, [r[name] for r in rows], "o-", label=name)
        ax.set_yscale("log")
        ax.set_xlabel(labels[key])
        ax.set_ylabel("energy per inference (J)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("energy per inference, N-MNIST test samples, paper LSM unless varied")
    fig.tight_layout()
    return save_figure(fig, path)


def format_result(result: dict) -> str:
    lines = []
    for key, rows in result.items():
        lines.append(f"{key:>10}  " + "  ".join(f"{n:>13}" for n in DEFAULT_PROFILES)
                     + "   digital / macro")
        for r in rows:
            ratio = r["digital-40nm"] / r["imc40"]
            lines.append(f"{r['value']:>10}  " + "  ".join(f"{r[n] * 1e6:>10.3f} uJ"
                                                          for n in DEFAULT_PROFILES)
                         + f"   {ratio:>10.2f}x")
    return "\n".join(lines)


def main(nmnist=None, samples: int = 200, workdir: str = "lsm-demo",
         progress: bool = True) -> dict:
    from lsm.data.demo import ensure_demo_twins

    if nmnist is None:
        nmnist, _ = ensure_demo_twins(Path(workdir), progress, which=("nmnist",))
    spec = dataset_spec("nmnist")
    streams = load_split("nmnist", nmnist, "test", progress=progress)
    events = streams.events.select(slice(0, samples))
    result = sweep(events, spec.lsm_config(), progress)
    result["plot"] = str(plot({k: v for k, v in result.items()},
                              Path(workdir) / "runs" / "energy_sweep.png"))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--nmnist", help="N-MNIST folder (default: the demo's twin)")
    ap.add_argument("--samples", type=int, default=200, help="test samples priced")
    ap.add_argument("--workdir", default="lsm-demo", help="where the twin and the PNG go")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args()
    if a.samples < 1:
        ap.error(f"--samples must be >= 1, got {a.samples}")
    try:
        res = main(a.nmnist, a.samples, a.workdir, not a.no_progress)
    except (OSError, ValueError) as exc:  # a wrong path or a bad dataset: said in one line
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    plot_path = res.pop("plot")
    print(json.dumps(res) if a.json else format_result(res) + f"\nplot: {plot_path}")
