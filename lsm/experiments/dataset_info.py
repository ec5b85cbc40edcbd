"""``lsm data info``: what a dataset split holds (per-class counts, events per sample,
durations, unreadable samples) and a picture of a few samples, in a run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass

from lsm.data.datasets import SPLITS
from lsm.data.registry import DATASET_NAMES
from lsm.validation import check_choice

__all__ = ["DatasetInfoConfig", "run_dataset_info"]


@dataclass(frozen=True)
class DatasetInfoConfig:
    """Parameters
    ----------
    dataset : {"nmnist", "ntidigits"}
    path : path
        N-MNIST folder or N-TIDIGITS ``.hdf5`` file.
    split : {"train", "test"}
    runs_dir : path
        Parent of the run directory (``<runs_dir>/info-<dataset>-<split>-<time>/``: summary.json
        and samples.png).
    """

    dataset: str
    path: str | os.PathLike
    split: str = "train"
    runs_dir: str | os.PathLike = "runs"

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASET_NAMES)
        check_choice("split", self.split, SPLITS)


def run_dataset_info(cfg: DatasetInfoConfig, progress: bool = True) -> dict:
    """Scan the split (unreadable samples are counted, not fatal), plot one sample per class;
    returns the summary with ``run_dir`` and ``png``."""
    from lsm.data.info import dataset_info, plot_samples
    from lsm.data.registry import open_split
    from lsm.experiments.common import write_run_files
    from lsm.io import check_output_dir
    from lsm.runs import run_directory

    check_output_dir(cfg.runs_dir, "runs folder")
    ds = open_split(cfg.dataset, cfg.path, cfg.split, on_bad_sample="skip")
    info = dataset_info(ds, progress=progress)
    with run_directory(cfg.runs_dir, f"info-{cfg.dataset}-{cfg.split}") as run:
        info["png"] = str(plot_samples(ds, run / "samples.png"))
        info["run_dir"] = str(run)
        write_run_files(run, {"run": cfg}, info)
    return info
