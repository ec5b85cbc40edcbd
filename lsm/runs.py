"""Run directories: where a training or evaluation run leaves its config, metrics and plots."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lsm.io import atomic_write_text, check_output_dir

__all__ = ["new_run_dir", "run_directory", "write_json", "mean_std"]


def new_run_dir(base: str | os.PathLike, name: str) -> Path:
    """A fresh folder ``base/<name>-<YYYYmmdd-HHMMSS>[-k]``.

    Raises
    ------
    NotADirectoryError, PermissionError
        ``base`` is a file (or under one), or not writable.
    """
    base = check_output_dir(base, "run folder")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        d = base / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
        try:
            d.mkdir(parents=True)
            return d
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run directory under {base}")


@contextlib.contextmanager
def run_directory(base: str | os.PathLike, name: str) -> Iterator[Path]:
    """:func:`new_run_dir`, removed again with what was written into it if the block fails:
    a failed or interrupted run leaves no half-written run directory."""
    run = new_run_dir(base, name)
    try:
        yield run
    except BaseException:
        shutil.rmtree(run, ignore_errors=True)
        raise


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
