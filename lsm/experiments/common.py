"""What every job shares: weight sources by name, validation of a job's settings, and the run
directory's files (resolved config, package versions, metrics), all written atomically."""

from __future__ import annotations

import dataclasses
import os
from importlib import metadata
from pathlib import Path

from lsm.io import atomic_write_text
from lsm.runs import write_json
from lsm.validation import check_choice, check_int

__all__ = ["WEIGHT_SOURCES", "make_weights", "check_seeds", "to_toml_dict",
           "package_versions", "write_run_files", "RECORDED_PACKAGES"]

#: weight sources a job can name: "gaussian" (the LSM's default draw) or "crossbar" (a fresh
#: simulated RRAM crossbar per reservoir, :class:`lsm.weights.CrossbarWeights`)
WEIGHT_SOURCES = ("gaussian", "crossbar")

#: packages whose versions a run directory records
RECORDED_PACKAGES = ("rram-lsm", "numpy", "numba", "torch", "snntorch", "tonic", "scipy",
                     "scikit-learn", "h5py")


def make_weights(name: str):
    """A fresh weight source for one reservoir: None for ``"gaussian"`` (the LSM draws its own
    from the config's seed), a :class:`~lsm.weights.CrossbarWeights` for ``"crossbar"``."""
    check_choice("weights", name, WEIGHT_SOURCES)
    if name == "crossbar":
        from lsm.weights import CrossbarWeights

        return CrossbarWeights()
    return None


def check_seeds(owner: str, n_seeds: int) -> None:
    check_int(owner, "n_seeds", n_seeds, 1)


def to_toml_dict(obj) -> dict:
    """A dataclass (or dict) as TOML-ready data: paths as strings, tuples as lists, nested
    dataclasses as tables, None left out (TOML has no null)."""
    if dataclasses.is_dataclass(obj):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    out = {}
    for k, v in obj.items():
        if v is None:
            continue
        if dataclasses.is_dataclass(v) or isinstance(v, dict):
            v = to_toml_dict(v)
        elif isinstance(v, os.PathLike):
            v = str(v)
        elif isinstance(v, (tuple, list)):
            v = [str(x) if isinstance(x, os.PathLike) else x for x in v]
        out[k] = v
    return out


def package_versions() -> dict:
    """Installed versions of the packages a result depends on (absent ones left out)."""
    out = {}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_run_files(run: Path, config: dict, metrics: dict) -> None:
    """``config.toml`` (the resolved settings, seeds and package versions) and
    ``metrics.json`` in a run directory, each written atomically."""
    import tomli_w

    resolved = dict(config)
    resolved["versions"] = package_versions()
    atomic_write_text(run / "config.toml", tomli_w.dumps(to_toml_dict(resolved)))
    write_json(run / "metrics.json", metrics)
