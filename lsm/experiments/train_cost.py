"""``lsm bench train-cost`` as a job: the measurement of :mod:`lsm.bench.train_cost` on the demo
twins or given datasets, with a run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass

from lsm.validation import check_int, check_number

__all__ = ["TrainCostConfig", "run_train_cost"]


@dataclass(frozen=True)
class TrainCostConfig:
    """Parameters
    ----------
    nmnist, ntidigits : path, optional
        Both datasets, or neither: then the demo twins under ``workdir``.
    workdir : path
        Where the demo twins live (made on first use).
    max_epochs : int
        Epochs of the spiking RNN at most: the work is bounded by epochs, so the MAC ratio
        does not depend on machine load.
    max_seconds : float, optional
        An extra wall-clock cap on the spiking RNN's training (off by default).
    runs_dir : path
        Parent of the run directory (``<runs_dir>/train-cost-<time>/``).
    """

    nmnist: str | os.PathLike | None = None
    ntidigits: str | os.PathLike | None = None
    workdir: str | os.PathLike = "lsm-demo"
    max_epochs: int = 40
    max_seconds: float | None = None
    runs_dir: str | os.PathLike = "runs"

    def __post_init__(self) -> None:
        if (self.nmnist is None) != (self.ntidigits is None):
            raise ValueError("give both nmnist and ntidigits, or neither (the demo twins)")
        check_int("TrainCostConfig", "max_epochs", self.max_epochs, 1)
        if self.max_seconds is not None:
            check_number("TrainCostConfig", "max_seconds", self.max_seconds, 0.0,
                         low_open=True)


def run_train_cost(cfg: TrainCostConfig, progress: bool = True) -> dict:
    """Train both pipelines on the same data (see :func:`lsm.bench.bench_train_cost`); write
    metrics.json and config.toml into a new run directory; return the costs and ratios."""
    from lsm.bench.train_cost import bench_train_cost
    from lsm.data.demo import ensure_demo_twins
    from lsm.data.formats import data_kind
    from lsm.experiments.common import write_run_files
    from lsm.io import check_output_dir
    from lsm.runs import run_directory

    check_output_dir(cfg.runs_dir, "runs folder")
    if cfg.nmnist is None:
        nm, td = ensure_demo_twins(check_output_dir(cfg.workdir, "workdir"), progress)
    else:
        nm, td = cfg.nmnist, cfg.ntidigits
    r = bench_train_cost(nm, td, max_srnn_epochs=cfg.max_epochs,
                         max_srnn_seconds=cfg.max_seconds, progress=progress)
    r["data"] = {"nmnist": data_kind(nm), "ntidigits": data_kind(td)}
    with run_directory(cfg.runs_dir, "train-cost") as run:
        r["run_dir"] = str(run)
        write_run_files(run, {"run": cfg, "seeds": [0], "data_paths": {"nmnist": str(nm),
                                                                       "ntidigits": str(td)}}, r)
    return r
