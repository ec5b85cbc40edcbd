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

__all__ = ["WEIGHT_SOURCES", "WEIGHT_SOURCE_TITLES", "register_weight_source",
           "make_weights", "check_lsm_overrides", "check_seeds", "to_toml_dict",
           "package_versions", "write_run_files", "RECORDED_PACKAGES"]

#: weight sources a job can name: "gaussian" (the LSM's default draw), "crossbar" (a fresh
#: simulated RRAM crossbar per reservoir, :class:`lsm.weights.CrossbarWeights`) and "chip" (the
#: emulated macro: a fresh die per reservoir, formed, read and converted over the lab protocol;
#: provided by the ``hw`` package, which registers it when imported)
WEIGHT_SOURCES = ("gaussian", "crossbar", "chip")

#: plug-in weight sources: name -> (factory taking no argument, what it is); ``lsm`` itself
#: never imports ``hw``, so ``hw.weights`` registers "chip" here
_REGISTERED: dict = {}

#: what each weight source is, for tables
WEIGHT_SOURCE_TITLES = {"gaussian": "Gaussian draw",
                        "crossbar": "simulated RRAM crossbar (a fresh array per reservoir)",
                        "chip": "emulated IMC40 macro (a fresh die per reservoir, measured map)"}

#: packages whose versions a run directory records
RECORDED_PACKAGES = ("rram-lsm", "numpy", "numba", "torch", "snntorch", "tonic", "scipy",
                     "scikit-learn", "h5py", "optuna", "sqlalchemy")


def register_weight_source(name: str, factory, title: str | None = None) -> None:
    """Make ``name`` (one of :data:`WEIGHT_SOURCES`) buildable by :func:`make_weights`:
    ``factory()`` returns a fresh weight source (drawing with the LSM config's seed)."""
    check_choice("weights", name, WEIGHT_SOURCES)
    _REGISTERED[name] = factory
    if title:
        WEIGHT_SOURCE_TITLES[name] = title


def make_weights(name: str):
    """A fresh weight source for one reservoir: None for ``"gaussian"`` (the LSM draws its own
    from the config's seed), a :class:`~lsm.weights.CrossbarWeights` for ``"crossbar"``, the
    registered factory's source for ``"chip"``."""
    check_choice("weights", name, WEIGHT_SOURCES)
    if name == "crossbar":
        from lsm.weights import CrossbarWeights

        return CrossbarWeights()
    if name == "gaussian":
        return None
    if name not in _REGISTERED:
        raise ValueError(f"the {name!r} weight source is provided by the hw package: "
                         "`import hw.weights` first (the lsm command does)")
    return _REGISTERED[name]()


def check_seeds(owner: str, n_seeds: int) -> None:
    check_int(owner, "n_seeds", n_seeds, 1)


def check_lsm_overrides(owner: str, overrides) -> None:
    """Changes to a paper encoder: a table of :class:`~lsm.config.LSMConfig` fields, but not
    its seed (a job's seeds are 0 .. n_seeds-1, one reservoir draw each)."""
    from lsm.config import LSMConfig

    if not isinstance(overrides, dict):
        raise ValueError(f"{owner}.lsm_overrides must be a table of LSMConfig fields, got "
                         f"{type(overrides).__name__}")
    known = {f.name for f in dataclasses.fields(LSMConfig)} - {"seed"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{owner}.lsm_overrides: unknown field(s) {unknown} (the seeds are set "
                         f"by n_seeds); known: {sorted(known)}")


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
