"""Run directories: where a training or evaluation run leaves its config, metrics and plots."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from lsm._io import atomic_write_text

__all__ = ["new_run_dir", "write_json", "mean_std"]


def new_run_dir(base: str | os.PathLike, name: str) -> Path:
    """A fresh folder ``base/<name>-<YYYYmmdd-HHMMSS>[-k]``."""
    base = Path(base)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        d = base / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
        try:
            d.mkdir(parents=True)
            return d
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run directory under {base}")


def _default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_default) + "\n")


def mean_std(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "n": int(len(v))}
