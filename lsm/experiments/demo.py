"""``lsm demo``: the whole system on the offline twins, in one table.

The reservoirs' weights come from the emulated macro by default: for each reservoir a fresh die
is served over TCP, a random block is formed into it over the lab protocol, its conductance map
is read and converted (``weights="chip"``, registered by ``hw.weights``; the ``lsm`` command
imports it). Then the supervised readouts on both datasets, each beside the same readout on the
input events ("no reservoir"), and the zero-shot protocol; every job leaves its run directory,
and the demo one more with the table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsm.experiments.common import WEIGHT_SOURCES, check_seeds
from lsm.features import DEFAULT_N_WINDOWS, READOUT_FEATURES
from lsm.validation import check_choice

__all__ = ["DemoConfig", "run_demo", "format_demo"]

_TITLES = {"nmnist": "N-MNIST", "ntidigits": "N-TIDIGITS"}


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings.

    Parameters
    ----------
    workdir : path
        Working folder: ``twins/`` (the offline datasets), ``features/`` (the feature cache)
        and ``runs/`` (one run directory per job) go here.
    n_seeds : int
        Reservoir draws (seeds 0 .. n_seeds-1) of every job; with ``weights="chip"`` each seed
        is a fresh emulated die.
    weights : {"chip", "crossbar", "gaussian"}
        Where the reservoirs' weights come from (:data:`lsm.experiments.common.WEIGHT_SOURCES`).
    features : {"windows", "rates", "counts"}
        What the readouts and heads see (:mod:`lsm.features`).
    n_windows : int
        Time windows of ``"windows"``.
    """

    workdir: str | os.PathLike = "lsm-demo"
    n_seeds: int = 3
    weights: str = "chip"
    features: str = "windows"
    n_windows: int = DEFAULT_N_WINDOWS

    def __post_init__(self) -> None:
        check_seeds("DemoConfig", self.n_seeds)
        check_choice("weights", self.weights, WEIGHT_SOURCES)
        check_choice("features", self.features, READOUT_FEATURES)


def run_demo(cfg: DemoConfig = DemoConfig(), progress: bool = True) -> dict:
    """Twins, then ``lsm train`` on each dataset (with its no-reservoir line) and ``lsm
    zeroshot``; returns ``{"supervised": {dataset: result}, "zeroshot": result, "run_dir",
    "plots", ...}``."""
    from lsm.data.demo import ensure_demo_twins
    from lsm.experiments.common import WEIGHT_SOURCE_TITLES, make_weights, write_run_files
    from lsm.experiments.supervised import SupervisedConfig, run_supervised
    from lsm.experiments.zeroshot import ZeroShotRunConfig, run_zeroshot
    from lsm.io import check_output_dir
    from lsm.runs import run_directory

    base = check_output_dir(cfg.workdir, "workdir")
    make_weights(cfg.weights)  # a source that cannot be built is reported before any work
    nm, td = ensure_demo_twins(base, progress)
    cache, runs = base / "features", base / "runs"
    kind = dict(n_seeds=cfg.n_seeds, weights=cfg.weights, runs_dir=runs, cache=cache,
                features=cfg.features, n_windows=cfg.n_windows)
    supervised = {}
    for name, path in (("nmnist", nm), ("ntidigits", td)):
        _step(f"supervised readout on {_TITLES[name]} ({cfg.n_seeds} reservoirs, "
              f"{cfg.weights} weights)", progress)
        supervised[name] = run_supervised(SupervisedConfig(name, path, **kind), progress)
    _step("zero-shot protocol (contrastive heads on both modalities)", progress)
    zeroshot = run_zeroshot(ZeroShotRunConfig(nm, td, **kind), progress)
    runs_made = [r["run_dir"] for r in (*supervised.values(), zeroshot)]
    result = {"workdir": str(Path(cfg.workdir)), "weights": cfg.weights,
              "weights_title": WEIGHT_SOURCE_TITLES[cfg.weights],
              "supervised": supervised, "zeroshot": zeroshot,
              "plots": sorted(str(p) for r in runs_made for p in Path(r).glob("*.png"))}
    with run_directory(runs, "demo") as run:
        result["run_dir"] = str(run)
        result["plots"].insert(0, str(_plot(run / "summary.png", result)))
        write_run_files(run, {"run": cfg, "seeds": list(range(cfg.n_seeds)),
                              "runs": runs_made}, _summary(result))
    return result


def _plot(path: Path, result: dict) -> Path:
    """The table as a figure: supervised accuracy (LSM, no reservoir) per dataset, and
    zero-shot top-1 on seen and unseen classes per direction, with chance levels."""
    from matplotlib.figure import Figure

    from lsm.plots import save_figure

    fig = Figure(figsize=(10, 4))
    a, b = fig.subplots(1, 2)
    sup = result["supervised"]
    x = np.arange(len(sup))
    for k, (label, get) in enumerate((
            ("LSM", lambda r: r["test_accuracy"]),
            ("no reservoir", lambda r: r.get("no_reservoir", {}).get("test_accuracy")))):
        vals = [get(r) for r in sup.values()]
        if any(v is None for v in vals):
            continue
        a.bar(x + (k - 0.5) * 0.38, [v["mean"] for v in vals], 0.38,
              yerr=[v["std"] for v in vals], capsize=4, label=label)
    for i, r in enumerate(sup.values()):
        a.hlines(r["chance"], i - 0.45, i + 0.45, color="r", ls="--", lw=1)
    a.set_xticks(x, [_TITLES[n] for n in sup])
    a.set_ylim(0, 1)
    a.set_ylabel("test accuracy")
    a.set_title("supervised (mean +- std over seeds; red: chance)", fontsize=9)
    a.legend(fontsize=8, loc="lower right")
    zs = result["zeroshot"]["summary"]
    names = (("audio_to_image", "audio -> image"), ("image_to_audio", "image -> audio"))
    for k, block in enumerate(("seen", "unseen")):
        vals = [zs.get(f"{block}/{d}/top1") for d, _ in names]
        if any(v is None for v in vals):
            continue
        b.bar(np.arange(2) + (k - 0.5) * 0.38, [v["mean"] for v in vals], 0.38,
              yerr=[v["std"] for v in vals], capsize=4, label=f"{block} classes")
        for i, v in enumerate(vals):
            b.hlines(v["chance"], i + (k - 1) * 0.38, i + k * 0.38, color="r", ls="--", lw=1)
    b.set_xticks(np.arange(2), [t for _, t in names])
    b.set_ylim(0, 1)
    b.set_ylabel("top-1 retrieval")
    b.set_title("zero-shot (red: chance)", fontsize=9)
    b.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"lsm demo: {result['weights_title']}", fontsize=10)
    return save_figure(fig, path)


def _step(text: str, progress: bool) -> None:
    import sys

    if progress:
        print(f"lsm demo: {text} ...", file=sys.stderr, flush=True)


def _summary(result: dict) -> dict:
    """The result without per-seed details (what ``--json`` prints and metrics.json holds)."""
    def strip(r: dict) -> dict:
        return {k: v for k, v in r.items() if k != "per_seed"}

    return {**{k: v for k, v in result.items() if k not in ("supervised", "zeroshot")},
            "supervised": {k: strip(v) for k, v in result["supervised"].items()},
            "zeroshot": strip(result["zeroshot"])}


def _pm(v: dict) -> str:
    return f"{100 * v['mean']:5.1f} +- {100 * v['std']:4.1f} %"


def format_demo(result: dict) -> str:
    """One table: supervised accuracy per modality (LSM vs no reservoir, chance), zero-shot
    top-1 on seen and unseen classes against chance with p-values, the weight source, plots."""
    sup = result["supervised"]
    zs = result["zeroshot"]
    first = next(iter(sup.values()))
    unseen = zs.get("protocol", {}).get("unseen", ())
    lines = [f"weights: {result['weights_title']}",
             f"data: {', '.join(_TITLES[k] + ' ' + v['data'] for k, v in sup.items())}; "
             f"{first['seeds']} reservoir seed(s); {first['readout']['kind']} readout on "
             f"{first['features']} features",
             "",
             "supervised test accuracy (mean +- std over seeds)",
             f"  {'dataset':<12}{'LSM':<18}{'no reservoir':<18}chance"]
    for name, r in sup.items():
        base = r.get("no_reservoir", {}).get("test_accuracy")
        lines.append(f"  {_TITLES[name]:<12}{_pm(r['test_accuracy']):<18}"
                     f"{_pm(base) if base else '-':<18}{100 * r['chance']:.1f} %")
    lines += ["",
              f"zero-shot top-1 (unseen digits {','.join(map(str, unseen))}; mean +- std over "
              "seeds [chance], one-sided p of above chance)",
              f"  {'direction':<16}{'seen classes':<36}unseen classes"]
    for direction, title in (("audio_to_image", "audio -> image"),
                             ("image_to_audio", "image -> audio")):
        cells = []
        for block in ("seen", "unseen"):
            v = zs["summary"].get(f"{block}/{direction}/top1")
            if v is None:
                cells.append("-")
                continue
            p = v.get("p_above_chance")
            cells.append(f"{_pm(v)} [{100 * v['chance']:4.1f} %]"
                         + (f" p={p:.3f}" if p is not None else ""))
        lines.append(f"  {title:<16}{cells[0]:<36}{cells[1]}")
    lines += ["", "plots:", *(f"  {p}" for p in result["plots"]),
              f"run directory: {result['run_dir']}"]
    return "\n".join(lines)
