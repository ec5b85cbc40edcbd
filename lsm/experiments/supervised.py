"""Supervised classification on LSM features over seeds and reservoir draws (``lsm train``)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from lsm.config import LSMConfig
from lsm.data.registry import DATASET_NAMES
from lsm.experiments.common import WEIGHT_SOURCES, check_lsm_overrides, check_seeds
from lsm.features import DEFAULT_N_WINDOWS, READOUT_FEATURES, check_features, describe_features
from lsm.readout import ReadoutConfig
from lsm.validation import check_choice

__all__ = ["PAPER_SUPERVISED", "SupervisedConfig", "run_supervised", "format_supervised"]

#: the reference paper's test accuracies (%) on the real datasets
PAPER_SUPERVISED = {"nmnist": 89.11, "ntidigits": 70.79}


@dataclass(frozen=True)
class SupervisedConfig:
    """A supervised run: one dataset, a readout, ``n_seeds`` reservoir draws.

    Parameters
    ----------
    dataset : {"nmnist", "ntidigits"}
        Registry name (:data:`lsm.data.DATASETS`); the paper's preprocessing and encoder.
    path : path
        The dataset: N-MNIST folder or N-TIDIGITS ``.hdf5`` file.
    readout : ReadoutConfig
    n_seeds : int
        Repetitions with seeds 0 .. n_seeds-1, each a fresh reservoir weight draw.
    weights : {"gaussian", "crossbar", "chip"}
        See :data:`lsm.experiments.common.WEIGHT_SOURCES`.
    runs_dir : path
        Parent of the run directory (``<runs_dir>/train-<dataset>-<time>/``).
    cache : path, optional
        Feature cache folder.
    features : {"windows", "rates", "counts"}
        What the readout sees (:mod:`lsm.features`); the paper's readout used rates.
    n_windows : int
        Time windows of ``"windows"``.
    baseline : bool
        Also fit the same readout on the input events' own features (same kind, same windows):
        the "no reservoir" result printed beside the LSM's.
    lsm_overrides : dict
        Fields of the paper's encoder to change (e.g. ``{"n_neurons": 400}``).
    """

    dataset: str
    path: str | os.PathLike
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    n_seeds: int = 1
    weights: str = "gaussian"
    runs_dir: str | os.PathLike = "runs"
    cache: str | os.PathLike | None = None
    features: str = "windows"
    n_windows: int = DEFAULT_N_WINDOWS
    baseline: bool = True
    lsm_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASET_NAMES)
        check_choice("weights", self.weights, WEIGHT_SOURCES)
        check_seeds("SupervisedConfig", self.n_seeds)
        if not isinstance(self.readout, ReadoutConfig):
            raise TypeError(f"readout must be a ReadoutConfig, got {type(self.readout).__name__}")
        check_choice("features", self.features, READOUT_FEATURES)
        check_lsm_overrides("SupervisedConfig", self.lsm_overrides)
        check_features(self.features, self.n_windows,
                       self.lsm_config(0).n_bins, READOUT_FEATURES)

    def lsm_config(self, seed: int) -> LSMConfig:
        """The encoder of reservoir ``seed``: the paper's for the dataset, with the overrides."""
        from lsm.data.registry import dataset_spec

        return dataset_spec(self.dataset).lsm_config(**{**self.lsm_overrides, "seed": seed})


def run_supervised(cfg: SupervisedConfig, progress: bool = True) -> dict:
    """Encode train and test with a fresh reservoir per seed, fit the readout on the training
    split (validation carved from it, by speaker for N-TIDIGITS), score the test split once.

    Writes ``metrics.json``, ``config.toml`` and PNGs (confusion matrix, training curves) into
    a new run directory; returns the metrics (``test_accuracy`` mean/std over seeds, chance,
    per-seed results, ``run_dir``).
    """
    from lsm.data.cache import as_cache
    from lsm.data.formats import data_kind
    from lsm.data.registry import encode_split
    from lsm.experiments.common import make_weights, write_run_files
    from lsm.io import check_output_dir
    from lsm.readout import train_and_test
    from lsm.reservoir import LSM
    from lsm.runs import mean_std, run_directory

    # paths checked before the work; the run directory is made when there is a result to write
    check_output_dir(cfg.runs_dir, "runs folder")
    cache = as_cache(cfg.cache)
    kind = dict(features=cfg.features, n_windows=cfg.n_windows, cache=cache, progress=progress)
    per_seed, baseline, first, lsm_cfg = [], [], None, None
    inputs = None
    for seed in range(cfg.n_seeds):
        lsm_cfg = cfg.lsm_config(seed)
        lsm = LSM(lsm_cfg, weights=make_weights(cfg.weights))
        train = encode_split(cfg.dataset, cfg.path, "train", lsm, **kind)
        test = encode_split(cfg.dataset, cfg.path, "test", lsm, **kind)
        res = train_and_test(train.features, train.labels, test.features, test.labels,
                             cfg.readout, seed, train.groups)
        per_seed.append({k: v for k, v in res.items() if k != "readout"} | {"seed": seed})
        first = first or res
        if cfg.baseline:
            # the input events' own features do not depend on the seed: read them once; the
            # readout's validation split and initialisation do, as for the LSM
            inputs = inputs or tuple(encode_split(cfg.dataset, cfg.path, split, None,
                                                  n_bins=lsm_cfg.n_bins, **kind)
                                     for split in ("train", "test"))
            tr, te = inputs
            b = train_and_test(tr.features, tr.labels, te.features, te.labels, cfg.readout,
                               seed, tr.groups)
            baseline.append({"seed": seed, "test_accuracy": b["test_accuracy"],
                             "val_accuracy": b["val_accuracy"]})
    result = {"dataset": cfg.dataset, "data": data_kind(cfg.path), "root": str(cfg.path),
              "readout": dataclasses.asdict(cfg.readout), "weights": cfg.weights,
              "features": describe_features(cfg.features, cfg.n_windows),
              "seeds": cfg.n_seeds,
              "test_accuracy": mean_std([p["test_accuracy"] for p in per_seed]),
              "chance": per_seed[0]["chance"],
              "paper_accuracy": PAPER_SUPERVISED[cfg.dataset] / 100, "per_seed": per_seed}
    if cfg.baseline:
        result["no_reservoir"] = {"test_accuracy": mean_std([b["test_accuracy"]
                                                             for b in baseline]),
                                  "per_seed": baseline}
    with run_directory(cfg.runs_dir, f"train-{cfg.dataset}") as run:
        result["run_dir"] = str(run)
        write_run_files(run, {"run": cfg, "seeds": list(range(cfg.n_seeds)),
                              "lsm": lsm_cfg.replace(seed=0).to_dict()}, result)
        _plots(run, first)
    return result


def _plots(run: Path, res: dict) -> None:
    from lsm.plots import confusion_plot, training_curves

    r = res["readout"]
    if r.curves.get("loss"):
        training_curves(r.curves, r.best_epoch, run / "training_curves.png")
    confusion_plot(res["confusion"], res["classes"], run / "confusion_matrix.png",
                   f"test accuracy {res['test_accuracy']:.3f}")


def format_supervised(r: dict) -> str:
    """The LSM's test accuracy (mean +- std over seeds) beside the same readout on the input
    events ("no reservoir"), chance and the paper's figure."""
    a = r["test_accuracy"]
    lines = [f"{r['dataset']} ({r['data']}), {r['readout']['kind']} readout on "
             f"{r['features']} features, {r['weights']} weights, {r['seeds']} seed(s):",
             f"  LSM           test accuracy {100 * a['mean']:6.2f} +- {100 * a['std']:5.2f} %"]
    if "no_reservoir" in r:
        b = r["no_reservoir"]["test_accuracy"]
        lines.append(f"  no reservoir  test accuracy {100 * b['mean']:6.2f} +- "
                     f"{100 * b['std']:5.2f} %   (the same readout on the input events)")
    lines.append(f"  chance {100 * r['chance']:.1f} %; paper (real dataset, rates): "
                 f"{100 * r['paper_accuracy']:.2f} %")
    lines.append(f"run directory: {r['run_dir']}")
    return "\n".join(lines)
