"""`lsm calibrate compare`: the twin against the chip, on the same LSM and the same data.

One LSM configuration (a dataset's preset with ``n_neurons`` neurons) encodes the same samples
with four weight sources, and the same readout (logistic regression, its strength chosen on a
validation split of the training samples) is fitted on each:

- ``chip``: a fresh block formed on the macro itself (:class:`hw.weights.MacroWeights`) at
  ``chip_offset``, away from the calibrated cells (which the stuck test and write-verify have
  re-programmed);
- ``twin-draw``: chips like this one, ``n_draws`` of them, drawn from the calibration's fitted
  statistics (:class:`lsm.weights.TwinWeights`, ``mode="draw"``, seeds ``seed ... seed + n - 1``);
- ``twin-map``: the calibrated cells as measured after forming, with fresh read noise (when the
  LSM's block fits in the calibrated region);
- ``gaussian``: the software baseline.

The features' statistics (mean firing rate, silent neurons, weight spread) and the accuracy are
printed side by side. Two reservoirs differ even when drawn from one process, so the chip is
judged against the spread of the twin's draws: its z-score in them (``|z| < 2``: a typical draw
of the twin). The weights, independent cell by cell, get a two-sample Kolmogorov-Smirnov test
(chip against the twin's pooled draws, and against the measured map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

__all__ = ["CompareConfig", "run_compare", "format_compare", "SOURCES"]

SOURCES = ("chip", "twin-draw", "twin-map", "gaussian")


@dataclass(frozen=True)
class CompareConfig:
    """Settings of :func:`run_compare`.

    Parameters
    ----------
    calibration : path
        The calibration file.
    dataset : {"ntidigits", "nmnist"}
    data_path : path
        The dataset (N-TIDIGITS HDF5 file or N-MNIST folder).
    n_neurons : int
        Reservoir size (the block is ``(inputs + n) x 2 n`` cells).
    n_train, n_test : int
        Samples used from each split (the first ones in the split's order, at most).
    chip_offset : (row, col)
        Top-left cell of the chip's fresh block.
    seed : int
        Seed of the LSM, the twin's draw and the readout.
    runs_dir : path
        Parent of the run directory.
    """

    calibration: Path
    dataset: str
    data_path: Path
    n_neurons: int = 50
    n_train: int = 400
    n_test: int = 200
    chip_offset: tuple = (128, 0)
    seed: int = 0
    n_draws: int = 5
    runs_dir: Path = Path("runs")

    def __post_init__(self) -> None:
        from lsm.validation import check_choice, check_int

        check_choice("dataset", self.dataset, ("ntidigits", "nmnist"))
        check_int("CompareConfig", "n_neurons", self.n_neurons, 2, 2048)
        check_int("CompareConfig", "n_train", self.n_train, 10)
        check_int("CompareConfig", "n_test", self.n_test, 10)
        check_int("CompareConfig", "n_draws", self.n_draws, 2, 1000)


def _subset(streams, n: int):
    k = min(n, len(streams.labels))
    return streams.events.select(slice(0, k)), np.asarray(streams.labels[:k])


def _ks(a: np.ndarray, b: np.ndarray) -> dict:
    r = stats.ks_2samp(np.ravel(a), np.ravel(b))
    return {"ks": float(r.statistic), "p": float(r.pvalue)}


def run_compare(cfg: CompareConfig, macro_weights, progress: bool = True) -> dict:
    """Encode and classify with each source; write ``config.toml``, ``metrics.json`` and
    ``compare.png`` into a run directory; return the metrics (with ``run_dir``).

    Parameters
    ----------
    cfg : CompareConfig
    macro_weights : callable
        ``macro_weights(offset) -> WeightSource`` for the chip (the CLI passes a
        :class:`hw.weights.MacroWeights` factory with the resource, limits and journal).
    """
    from lsm import LSM
    from lsm.crossbar.calfile import read_calibration
    from lsm.crossbar.mapping import DifferentialMapping
    from lsm.data.registry import dataset_spec, load_split
    from lsm.experiments.common import write_run_files
    from lsm.features import event_features
    from lsm.readout import ReadoutConfig, fit_readout
    from lsm.runs import run_directory
    from lsm.weights import TwinWeights

    cal = read_calibration(cfg.calibration)
    spec = dataset_spec(cfg.dataset)
    config = spec.lsm_config(n_neurons=cfg.n_neurons, seed=cfg.seed)
    train = load_split(cfg.dataset, cfg.data_path, "train", progress=progress)
    test = load_split(cfg.dataset, cfg.data_path, "test", progress=progress)
    (x_tr, y_tr), (x_te, y_te) = _subset(train, cfg.n_train), _subset(test, cfg.n_test)
    block = DifferentialMapping(config.n_inputs, config.n_neurons).region.shape
    sources = {"chip": [macro_weights(tuple(cfg.chip_offset))],
               "twin-draw": [TwinWeights(cfg.calibration, mode="draw", seed=cfg.seed + k)
                             for k in range(cfg.n_draws)]}
    if block[0] <= cal.shape[0] and block[1] <= cal.shape[1]:
        sources["twin-map"] = [TwinWeights(cfg.calibration, mode="map", read_noise=True)]
    sources["gaussian"] = [None]
    rows, feats, weights = {}, {}, {}
    for name, draws in sources.items():
        per = []
        for source in draws:
            lsm = LSM(config, weights=source)
            f_tr = lsm.encode(x_tr, features="rates", progress=progress)
            f_te = lsm.encode(x_te, features="rates", progress=progress)
            readout = fit_readout(f_tr, y_tr, ReadoutConfig(kind="probe"), seed=cfg.seed)
            w = np.concatenate([lsm.w_in.ravel(), lsm.w_rec.ravel()])
            per.append({"accuracy": float((readout.predict(f_te) == y_te).mean()),
                        "mean_rate": float(f_te.mean()),
                        "silent_fraction": float((f_te.sum(axis=0) == 0).mean()),
                        "w_std": float(w.std()), "w_mean": float(w.mean())})
            feats.setdefault(name, f_te)
            weights.setdefault(name, []).append(w)
        row = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
        acc = row["accuracy"]
        row["accuracy_se"] = math.sqrt(acc * (1 - acc) / len(y_te))
        if len(per) > 1:
            row["draws"] = len(per)
            row["spread"] = {k: float(np.std([p[k] for p in per], ddof=1)) for k in per[0]}
        rows[name] = row
    # every supervised result beside the same readout on the input events ("no reservoir")
    readout = fit_readout(event_features(x_tr, "rates"), y_tr, ReadoutConfig(kind="probe"),
                          seed=cfg.seed)
    no_reservoir = float((readout.predict(event_features(x_te, "rates")) == y_te).mean())
    chip, twin = rows["chip"], rows["twin-draw"]
    # no spread among the draws: the z-score is undefined (None), never "typical"
    twin["chip_z"] = {k: (chip[k] - twin[k]) / twin["spread"][k] if twin["spread"][k] > 0
                      else None for k in ("accuracy", "mean_rate", "w_std")}
    for name in sources:
        if name.startswith("twin"):
            rows[name]["weights_vs_chip"] = _ks(weights["chip"][0],
                                                np.concatenate(weights[name]))
    result = {"calibration": str(cfg.calibration), "sha256": cal.sha256,
              "dataset": cfg.dataset, "data_path": str(cfg.data_path),
              "n_train": int(len(y_tr)), "n_test": int(len(y_te)), "n_neurons": cfg.n_neurons,
              "chance": 1.0 / len(np.unique(y_tr)), "block": list(block), "sources": rows,
              "no_reservoir_accuracy": no_reservoir}
    with run_directory(cfg.runs_dir, "calibrate-compare") as run:
        png = _plot(rows, feats, run / "compare.png")
        result.update(run_dir=str(run), png=str(png))
        write_run_files(run, {"run": cfg, "lsm": config}, result)
    return result


def _plot(rows: dict, feats: dict, path: Path) -> Path:
    from matplotlib.figure import Figure

    from lsm.plots import save_figure

    fig = Figure(figsize=(10, 4))
    a, b = fig.subplots(1, 2)
    names = list(rows)
    acc = [rows[n]["accuracy"] for n in names]
    se = [rows[n]["accuracy_se"] for n in names]
    a.bar(names, acc, yerr=se, capsize=4, color=["C3", "C0", "C2", "0.6"][:len(names)])
    a.set_ylabel("test accuracy")
    a.set_ylim(0, 1)
    a.set_title("same LSM, same readout")
    for n, f in feats.items():
        b.hist(f.mean(axis=1), bins=30, histtype="step", density=True, label=n)
    b.set_xlabel("mean firing rate per sample (spikes / bin)")
    b.set_ylabel("density")
    b.legend()
    b.set_title("features: chip vs twin")
    fig.tight_layout()
    return save_figure(fig, path)


def format_compare(result: dict) -> str:
    lines = [f"twin vs chip: {result['dataset']} ({result['n_train']} train / "
             f"{result['n_test']} test samples), {result['n_neurons']} neurons, block "
             f"{result['block'][0]} x {result['block'][1]} cells, chance "
             f"{100 * result['chance']:.1f} %",
             f"{'source':<10} {'draws':>5} {'accuracy %':>14} {'mean rate':>16} {'w std':>14}"
             f"  weights vs chip: KS (p)"]
    for name, r in result["sources"].items():
        sp = r.get("spread")
        acc = (f"{100 * r['accuracy']:.1f} +- {100 * sp['accuracy']:.1f}" if sp else
               f"{100 * r['accuracy']:.1f} +- {100 * r['accuracy_se']:.1f}")
        rate = (f"{r['mean_rate']:.4f} +- {sp['mean_rate']:.4f}" if sp else
                f"{r['mean_rate']:.4f}")
        wstd = f"{r['w_std']:.3f} +- {sp['w_std']:.3f}" if sp else f"{r['w_std']:.3f}"
        vs = r.get("weights_vs_chip")
        tail = "" if vs is None else f"  {vs['ks']:.3f} ({vs['p']:.2g})"
        lines.append(f"{name:<10} {r.get('draws', 1):>5} {acc:>14} {rate:>16} {wstd:>14}{tail}")
    z = {k: ("undefined (the draws do not differ)" if v is None else f"{v:+.2f}")
         for k, v in result["sources"]["twin-draw"]["chip_z"].items()}
    if "no_reservoir_accuracy" in result:
        lines.append(f"{'no reservoir':<16} {100 * result['no_reservoir_accuracy']:>14.1f}"
                     "   (the same readout on the input events' rates)")
    lines.append("the chip among the twin's draws (z-score; |z| < 2: a typical draw): accuracy "
                 f"{z['accuracy']}, mean rate {z['mean_rate']}, weight spread {z['w_std']}")
    lines.append(f"run directory: {result['run_dir']}")
    return "\n".join(lines)
