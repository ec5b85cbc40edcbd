"""``lsm demo``: the offline twins (made once), the supervised readouts on both datasets and the
zero-shot protocol, with the paper's settings; every result in a run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lsm.experiments.common import check_seeds

__all__ = ["DemoConfig", "run_demo", "format_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings.

    Parameters
    ----------
    workdir : path
        Working folder: ``twins/`` (the offline datasets), ``features/`` (the feature cache)
        and ``runs/`` (one run directory per job) go here.
    n_seeds : int
        Reservoir draws (seeds 0 .. n_seeds-1) of every job.
    """

    workdir: str | os.PathLike = "lsm-demo"
    n_seeds: int = 3

    def __post_init__(self) -> None:
        check_seeds("DemoConfig", self.n_seeds)


def run_demo(cfg: DemoConfig = DemoConfig(), progress: bool = True) -> dict:
    """Twins, then ``lsm train`` on each dataset and ``lsm zeroshot``; returns
    ``{"supervised": {dataset: result}, "zeroshot": result}``."""
    from lsm.data.demo import ensure_demo_twins
    from lsm.experiments.supervised import SupervisedConfig, run_supervised
    from lsm.experiments.zeroshot import ZeroShotRunConfig, run_zeroshot
    from lsm.io import check_output_dir

    base = check_output_dir(cfg.workdir, "workdir")
    nm, td = ensure_demo_twins(base, progress)
    cache, runs = base / "features", base / "runs"
    supervised = {
        name: run_supervised(SupervisedConfig(name, path, n_seeds=cfg.n_seeds, runs_dir=runs,
                                              cache=cache), progress)
        for name, path in (("nmnist", nm), ("ntidigits", td))}
    zeroshot = run_zeroshot(ZeroShotRunConfig(nm, td, n_seeds=cfg.n_seeds, runs_dir=runs,
                                              cache=cache), progress)
    return {"workdir": str(Path(cfg.workdir)), "supervised": supervised, "zeroshot": zeroshot}


def format_demo(result: dict) -> str:
    from lsm.experiments.supervised import format_supervised
    from lsm.experiments.zeroshot import format_zeroshot

    return "\n".join([*(format_supervised(r) for r in result["supervised"].values()),
                      format_zeroshot(result["zeroshot"])])
