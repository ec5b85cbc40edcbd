"""Studies of what the readout's accuracy depends on (``lsm study features|size|nonideality``).

Three jobs, each a frozen config, a ``run_*`` function that leaves a run directory
(``<runs_dir>/study-<name>-<time>/``: config.toml with the resolved settings, seeds and package
versions; metrics.json; a PNG) and a ``format_*`` that prints a plain (or markdown) table:

- :func:`run_features_study`: each readout feature kind ("rates", "counts", "windows" with K in
  a list) on each dataset, the LSM beside the same readout on the input events ("no
  reservoir");
- :func:`run_size_study`: accuracy against the number of reservoir neurons;
- :func:`run_nonideality_study`: accuracy against each RRAM non-ideality of a simulated crossbar
  (:class:`~lsm.weights.CrossbarWeights`), one swept at a time with the others at their
  defaults, beside the Gaussian-weights and no-reservoir accuracies.

Every number is a mean +- std over ``n_seeds`` reservoir draws (seeds 0 .. n_seeds-1); the
readout is fitted on the training split (validation carved from it, by speaker for N-TIDIGITS)
and scores the test split once, with the reservoir's seed as its own seed. The no-reservoir
features do not depend on the seed; its readout does (validation split, initialisation), so it
too is fitted once per seed, and seed ``s``'s no-reservoir result is the same in every study
and for every seed list.

Each dataset split is read and preprocessed once per study (the slow part) and then encoded by
every reservoir in memory (the kernel is fast); nothing goes through the feature cache. The
readouts are fitted with one torch thread: on these small problems (about 1,000 samples of
1,000 features, 2-core machine) two threads were no faster on an idle machine and 5-10 times
slower while other processes shared the cores.

A config is also read from TOML (:meth:`FeaturesStudyConfig.from_toml` ...): one ``[study]``
table holding the config's fields (``readout`` a kind or a ``[study.readout]`` table of
:class:`~lsm.readout.ReadoutConfig` fields; ``lsm_overrides`` a table of
:class:`~lsm.config.LSMConfig` fields), optionally ``study = "<name>"``. A run directory's
config.toml is such a file (its ``seeds``, ``versions`` and ``lsm`` tables are records, ignored
when it is read back). Without a dataset path, the demo's offline twins under ``workdir`` are
used (made on first use, about 30 s).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lsm.config import LSMConfig
from lsm.data.registry import DATASET_NAMES
from lsm.experiments.common import WEIGHT_SOURCES, check_lsm_overrides, check_seeds
from lsm.features import DEFAULT_N_WINDOWS, READOUT_FEATURES, check_features, describe_features
from lsm.readout import ReadoutConfig
from lsm.torch_backend import torch_threads
from lsm.validation import InvalidTypeError, check_choice, check_int, check_number

__all__ = ["StudyFile", "settings_table", "STUDIES", "NONIDEALITIES", "NONIDEALITY_DEFAULTS",
           "IN_LOOP_DEFAULT", "STUCK_STATES",
           "SIZE_WEIGHTS", "RUN_RECORDS", "FeaturesStudyConfig", "SizeStudyConfig",
           "NonidealityStudyConfig", "STUDY_CONFIGS", "run_features_study", "run_size_study",
           "run_nonideality_study", "format_features_study", "format_size_study",
           "format_nonideality_study", "run_study", "format_study", "nonideality_weights"]

#: the studies, by name (``lsm study <name>``)
STUDIES = ("features", "size", "nonideality")

#: the non-idealities of :func:`run_nonideality_study`: config field -> (title, x-axis label)
NONIDEALITIES = {
    "read_noise_rel": ("read noise", "relative std per cell and read"),
    "adc_bits": ("ADC resolution", "bits"),
    "stuck_rate": ("stuck cells", "fraction of cells stuck"),
    "read_time_s": ("drift", "time from programming to reading (s)"),
    "form_cv": ("conductance spread", "std / mean after forming"),
}

#: each non-ideality's value in the default crossbar (:class:`~lsm.crossbar.DeviceParams`,
#: :class:`~lsm.crossbar.ADC` and :class:`~lsm.weights.CrossbarWeights` defaults; checked
#: against them by the tests)
NONIDEALITY_DEFAULTS = {"read_noise_rel": 0.0015, "adc_bits": 14, "stuck_rate": 0.0,
                        "read_time_s": 1.0, "form_cv": 0.25}

#: the non-idealities simulated in the loop by default. Read noise and the ADC act on every
#: multiply only in the loop: with a static map they act once, on the map read (read noise: a
#: fixed perturbation of a 0.15 % order; the ADC: not at all). Stuck cells, drift and the
#: forming spread change the programmed conductances themselves, which the map read sees
#: exactly. Measured on the N-MNIST twin (1,497 + 300 samples, 200 neurons, 2 cores): building
#: a reservoir and encoding both splits takes about 0.14 s in the loop against 0.12 s from the
#: map (each run prints its own figures), so the loop is not too slow for any of them; the
#: static map, the paper's setting, is kept where the loop would change nothing.
IN_LOOP_DEFAULT = ("read_noise_rel", "adc_bits")

#: where stuck cells are stuck: half at the high-resistance state and half at the
#: low-resistance state, or all at one of them (:class:`~lsm.crossbar.FaultParams`)
STUCK_STATES = ("both", "hrs", "lrs")

#: weight sources of the size study (the crossbar array is made large enough for each size)
SIZE_WEIGHTS = ("gaussian", "crossbar")

#: top-level tables of a run directory's config.toml besides ``[study]``: records of the run,
#: ignored when the file is read back as a config
RUN_RECORDS = ("seeds", "versions", "lsm")

_TITLES = {"nmnist": "N-MNIST", "ntidigits": "N-TIDIGITS"}
_PATH_FIELDS = ("nmnist", "ntidigits", "workdir", "runs_dir")


# ---------------------------------------------------------------------- validation helpers
def _check_path(owner: str, name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
        raise InvalidTypeError(f"{owner}.{name} must be a path (a non-empty string)"
                               + (" or left out" if optional else "") + f", got {value!r}")


def _value_list(owner: str, name: str, value: Any, check_item) -> tuple:
    """``value`` (a list or tuple) as a tuple of checked items: not empty, no duplicates."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise InvalidTypeError(f"{owner}.{name} must be a list of values, got {value!r}")
    if not value:
        raise ValueError(f"{owner}.{name} must list at least one value, got an empty list")
    items = tuple(check_item(f"{name}[{i}]", v) for i, v in enumerate(value))
    seen = set()
    for v in items:
        if v in seen:
            raise ValueError(f"{owner}.{name} lists {v!r} twice")
        seen.add(v)
    return items


def _numbers(owner: str, low: float, high: float, *, low_open: bool = False):
    def check(name: str, v: Any) -> float:
        return check_number(owner, name, v, low, high, low_open=low_open)
    return check


def _ints(owner: str, low: int, high: int | None = None):
    def check(name: str, v: Any) -> int:
        return check_int(owner, name, v, low, high)
    return check


def _choices(owner: str, choices: tuple):
    def check(name: str, v: Any) -> str:
        if not isinstance(v, str) or v not in choices:
            raise ValueError(f"{owner}.{name} must be one of {', '.join(choices)}; got {v!r}")
        return v
    return check


def settings_table(owner: str, name: str, cls: type, value: Any):
    """``value`` as a ``cls`` (a settings dataclass): itself, or a table of its fields (TOML
    lists become tuples); an unknown key or a bad value is an error naming ``owner.name``."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise InvalidTypeError(f"{owner}.{name} must be a table of {cls.__name__} fields, got "
                               f"{value!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"{owner}.{name}: unknown key(s) {unknown}; known: {', '.join(known)}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{owner}.{name}: {exc}") from None


def _as_readout(owner: str, value: Any) -> ReadoutConfig:
    """A ReadoutConfig, a readout kind, or a table of ReadoutConfig fields."""
    if isinstance(value, str):
        return ReadoutConfig(kind=value)
    if not isinstance(value, (ReadoutConfig, Mapping)):
        raise InvalidTypeError(f"{owner}.readout must be a readout kind ('linear', 'mlp', "
                               f"'probe') or a table of ReadoutConfig fields, got {value!r}")
    return settings_table(owner, "readout", ReadoutConfig, value)


# ---------------------------------------------------------------------- configs
class StudyFile:
    """What makes a study config a file: a ``[study]`` TOML table, read and written (a
    frozen dataclass with a ``study`` class attribute naming the study)."""

    study: ClassVar[str] = ""

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        """The config as plain TOML-ready data (``study`` first; paths as strings, lists for
        tuples, ``readout`` a table; unset paths left out)."""
        from lsm.experiments.common import to_toml_dict

        return {"study": self.study, **to_toml_dict(self)}

    def to_toml(self) -> str:
        """The config as a ``[study]`` table (what :meth:`from_toml` reads)."""
        import tomli_w

        return tomli_w.dumps({"study": self.to_dict()})

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>"):
        """Build from plain data (a ``[study]`` table); an unknown key or a bad value is an
        error naming the key and ``source``."""
        if not isinstance(data, Mapping):
            raise InvalidTypeError(f"{source}: a study config must be a table of settings, got "
                                   f"{type(data).__name__}")
        data = dict(data)
        name = data.pop("study", cls.study)
        if name != cls.study:
            raise ValueError(f"{source}: this is a config of the {name!r} study, not of the "
                             f"{cls.study!r} study")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown} in [study] of the {cls.study} "
                             f"study; known: study, {', '.join(known)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike):
        """Read a ``[study]`` table from a TOML file (a run directory's config.toml too).
        Relative dataset paths in it are relative to the file's folder; ``workdir`` and
        ``runs_dir`` to the current folder.

        Raises
        ------
        FileNotFoundError, IsADirectoryError
            No such file, or a folder.
        ValueError
            Not TOML, no ``[study]`` table, an unknown table or key (named with the file), a
            config of another study, a bad value.
        """
        from lsm.io import read_toml_file

        path = Path(path)
        doc = read_toml_file(path, "study config")
        extra = sorted(set(doc) - {"study", *RUN_RECORDS})
        if extra:
            raise ValueError(f"{path}: unknown table(s) or key(s) {extra}; a study config holds "
                             f"one [study] table (and a run directory's records "
                             f"{', '.join(RUN_RECORDS)})")
        table = doc.get("study")
        if not isinstance(table, dict):
            raise ValueError(f"{path}: no [study] table")
        data = dict(table)
        for name in DATASET_NAMES:
            p = data.get(name)
            if isinstance(p, str) and p.strip() and not Path(p).is_absolute():
                data[name] = str(path.parent / p)
        return cls.from_dict(data, source=str(path))


@dataclass(frozen=True, kw_only=True)
class _StudyConfig(StudyFile):
    """Settings every study shares (documented on each study's config)."""

    study: ClassVar[str] = ""

    n_seeds: int = 2
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    nmnist: str | os.PathLike | None = None
    ntidigits: str | os.PathLike | None = None
    workdir: str | os.PathLike = "lsm-demo"
    runs_dir: str | os.PathLike = "runs"
    lsm_overrides: dict = field(default_factory=dict)

    def _check_common(self) -> None:
        owner = type(self).__name__
        check_seeds(owner, self.n_seeds)
        object.__setattr__(self, "readout", _as_readout(owner, self.readout))
        for name in _PATH_FIELDS:
            _check_path(owner, name, getattr(self, name), name in DATASET_NAMES)
        check_lsm_overrides(owner, self.lsm_overrides)
        object.__setattr__(self, "lsm_overrides", dict(self.lsm_overrides))

    def _set_list(self, name: str, check_item) -> tuple:
        values = _value_list(type(self).__name__, name, getattr(self, name), check_item)
        object.__setattr__(self, name, values)
        return values

    def _datasets(self) -> tuple:
        return (self.dataset,)  # overridden by the features study

    def lsm_config(self, dataset: str, seed: int = 0, **changes: Any) -> LSMConfig:
        """The encoder of reservoir ``seed`` on ``dataset``: the paper's, with
        ``lsm_overrides`` and ``changes``."""
        from lsm.data.registry import dataset_spec

        return dataset_spec(dataset).lsm_config(**{**self.lsm_overrides, **changes,
                                                   "seed": seed})

    def _check_encoders(self, **changes: Any) -> None:
        for name in self._datasets():
            try:
                self.lsm_config(name, 0, **changes)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{type(self).__name__}.lsm_overrides on {name}: {exc}") \
                    from None

    def path_of(self, dataset: str) -> str | os.PathLike | None:
        """The configured path of ``dataset`` (None: the demo twin under ``workdir``)."""
        return getattr(self, dataset)


@dataclass(frozen=True, kw_only=True)
class FeaturesStudyConfig(_StudyConfig):
    """The readout feature study: each kind on each dataset, LSM vs no reservoir.

    Parameters
    ----------
    datasets : tuple of {"nmnist", "ntidigits"}
        The datasets (default both).
    kinds : tuple of {"rates", "counts", "windows"}
        Feature kinds (:mod:`lsm.features`), one table row each ("windows" one row per K).
    windows : tuple of int
        The K of "windows" (spike counts in K time windows), each 1 .. the time bins.
    weights : {"gaussian", "crossbar", "chip"}
        Where each reservoir's weights come from (:data:`lsm.experiments.common.WEIGHT_SOURCES`).
    n_seeds : int
        Reservoir draws, seeds 0 .. n_seeds-1 (each also the readout's seed).
    readout : ReadoutConfig
        The readout (a kind, or a table of its fields, in TOML).
    nmnist, ntidigits : path, optional
        The datasets (N-MNIST folder, N-TIDIGITS ``.hdf5`` file); left out: the demo's
        offline twin under ``workdir``.
    workdir : path
        Where the demo twins are (made on first use).
    runs_dir : path
        Parent of the run directory ``study-features-<time>/``.
    lsm_overrides : dict
        Fields of the paper's encoders to change (e.g. ``{"n_neurons": 400}``).
    """

    study: ClassVar[str] = "features"

    datasets: tuple = DATASET_NAMES
    kinds: tuple = ("rates", "counts", "windows")
    windows: tuple = (DEFAULT_N_WINDOWS,)
    weights: str = "gaussian"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        self._check_common()
        self._set_list("datasets", _choices(owner, DATASET_NAMES))
        self._set_list("kinds", _choices(owner, READOUT_FEATURES))
        windows = self._set_list("windows", _ints(owner, 1))
        check_choice(f"{owner}.weights", self.weights, WEIGHT_SOURCES)
        self._check_encoders()
        if "windows" in self.kinds:
            for name in self.datasets:
                n_bins = self.lsm_config(name).n_bins
                for k in windows:
                    try:
                        check_features("windows", k, n_bins, READOUT_FEATURES)
                    except ValueError as exc:
                        raise ValueError(f"{owner}.windows on {name}: {exc}") from None

    def _datasets(self) -> tuple:
        return self.datasets

    def rows(self) -> list[tuple[str, int]]:
        """(kind, K) of each table row, in order (K is 1 except for "windows")."""
        return [(kind, k) for kind in self.kinds
                for k in (self.windows if kind == "windows" else (1,))]


@dataclass(frozen=True, kw_only=True)
class SizeStudyConfig(_StudyConfig):
    """Accuracy against reservoir size.

    Parameters
    ----------
    dataset : {"nmnist", "ntidigits"}
    n_neurons : tuple of int
        Reservoir sizes (default 25, 50, 100, 200, 400).
    features : {"windows", "rates", "counts"}
        What the readout sees; ``n_windows`` the K of "windows".
    n_windows : int
    weights : {"gaussian", "crossbar"}
        A Gaussian draw, or a simulated crossbar (an array large enough for each size).
    n_seeds, readout, nmnist, ntidigits, workdir, runs_dir, lsm_overrides
        As in :class:`FeaturesStudyConfig` (``lsm_overrides`` may not set ``n_neurons``).
    """

    study: ClassVar[str] = "size"

    dataset: str = "nmnist"
    n_neurons: tuple = (25, 50, 100, 200, 400)
    features: str = "windows"
    n_windows: int = DEFAULT_N_WINDOWS
    weights: str = "gaussian"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        self._check_common()
        check_choice(f"{owner}.dataset", self.dataset, DATASET_NAMES)
        sizes = self._set_list("n_neurons", _ints(owner, 1))
        check_choice(f"{owner}.features", self.features, READOUT_FEATURES)
        check_choice(f"{owner}.weights", self.weights, SIZE_WEIGHTS)
        if "n_neurons" in self.lsm_overrides:
            raise ValueError(f"{owner}.lsm_overrides may not set n_neurons: the study sweeps "
                             "it (n_neurons = [...])")
        for n in sizes:
            self._check_encoders(n_neurons=n)
        check_features(self.features, self.n_windows, self.lsm_config(self.dataset).n_bins,
                       READOUT_FEATURES)


@dataclass(frozen=True, kw_only=True)
class NonidealityStudyConfig(_StudyConfig):
    """Accuracy against each RRAM non-ideality of a simulated crossbar, one at a time.

    Each panel sweeps one parameter of :class:`~lsm.weights.CrossbarWeights` with the others at
    their defaults (:data:`NONIDEALITY_DEFAULTS`); a seed's array is drawn the same way at every
    value (the points of a seed are paired). Read noise and ADC resolution act on every
    multiply, so their panels run in the loop (``in_loop``); the others act on the programmed
    conductances and read one static map (see :data:`IN_LOOP_DEFAULT` for the measurement).

    Parameters
    ----------
    dataset : {"nmnist", "ntidigits"}
    panels : tuple of str
        The non-idealities to sweep, keys of :data:`NONIDEALITIES` (default all five).
    read_noise_rel : tuple of float
        Relative read noise per cell and read, each in [0, 1] (``ReadParams.read_noise_rel``).
    adc_bits : tuple of int
        ADC resolutions, 1 .. 24 (``ADC.bits``).
    stuck_rate : tuple of float
        Fractions of stuck cells, each in [0, 1] (``FaultParams``, split by ``stuck_state``).
    read_time_s : tuple of float
        Time from programming to reading, s, >= 0 (drift; ``CrossbarWeights.read_time_s``).
    form_cv : tuple of float
        Conductance spread after forming, std / mean, in [0, 5]
        (``ProgrammingParams.form_cv``); it also sets the weights' scale.
    stuck_state : {"both", "hrs", "lrs"}
        Stuck cells half at HRS and half at LRS, or all at one.
    in_loop : tuple of str
        Panels computed in the loop (every multiply on the array); the others read a static map.
    features, n_windows : readout features, as in :class:`SizeStudyConfig`.
    n_seeds, readout, nmnist, ntidigits, workdir, runs_dir, lsm_overrides
        As in :class:`FeaturesStudyConfig`.
    """

    study: ClassVar[str] = "nonideality"

    dataset: str = "nmnist"
    panels: tuple = tuple(NONIDEALITIES)
    read_noise_rel: tuple = (0.0015, 0.05, 0.2, 0.5)
    adc_bits: tuple = (14, 6, 4, 2)
    stuck_rate: tuple = (0.0, 0.01, 0.1, 0.5)
    read_time_s: tuple = (1.0, 1e4, 1e8)
    form_cv: tuple = (0.1, 0.25, 0.5, 1.0)
    stuck_state: str = "both"
    in_loop: tuple = IN_LOOP_DEFAULT
    features: str = "windows"
    n_windows: int = DEFAULT_N_WINDOWS

    def __post_init__(self) -> None:
        owner = type(self).__name__
        self._check_common()
        check_choice(f"{owner}.dataset", self.dataset, DATASET_NAMES)
        self._set_list("panels", _choices(owner, tuple(NONIDEALITIES)))
        self._set_list("read_noise_rel", _numbers(owner, 0.0, 1.0))
        self._set_list("adc_bits", _ints(owner, 1, 24))
        self._set_list("stuck_rate", _numbers(owner, 0.0, 1.0))
        self._set_list("read_time_s", _numbers(owner, 0.0, 1e15))
        self._set_list("form_cv", _numbers(owner, 0.0, 5.0))
        check_choice(f"{owner}.stuck_state", self.stuck_state, STUCK_STATES)
        if isinstance(self.in_loop, (list, tuple)) and not self.in_loop:
            object.__setattr__(self, "in_loop", ())
        else:
            self._set_list("in_loop", _choices(owner, tuple(NONIDEALITIES)))
        check_choice(f"{owner}.features", self.features, READOUT_FEATURES)
        self._check_encoders()
        check_features(self.features, self.n_windows, self.lsm_config(self.dataset).n_bins,
                       READOUT_FEATURES)

    def mode(self, panel: str) -> str:
        """"in the loop" or "map read": how ``panel`` is simulated."""
        return "in the loop" if panel in self.in_loop else "map read"


#: each study's config class
STUDY_CONFIGS = {"features": FeaturesStudyConfig, "size": SizeStudyConfig,
                 "nonideality": NonidealityStudyConfig}


# ---------------------------------------------------------------------- shared machinery
def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"lsm study: {text}", file=sys.stderr, flush=True)


def _check_inputs(cfg: _StudyConfig) -> None:
    """Before any work: the runs folder is writable and every named dataset path exists."""
    from lsm.data.registry import dataset_spec
    from lsm.io import check_output_dir

    check_output_dir(cfg.runs_dir, "runs folder")
    for name in cfg._datasets():
        p = cfg.path_of(name)
        if p is None:
            check_output_dir(cfg.workdir, "workdir")
            continue
        spec = dataset_spec(name)
        what = "folder" if spec.path_kind == "folder" else "file"
        if not Path(p).exists():
            raise FileNotFoundError(f"{spec.title} {what} not found: {p} (--{name})")


def _dataset_paths(cfg: _StudyConfig, progress: bool) -> dict:
    """Each dataset's path: the configured one, or the demo twin (made when missing)."""
    from lsm.data.demo import ensure_demo_twins

    missing = tuple(n for n in cfg._datasets() if cfg.path_of(n) is None)
    twins = dict(zip(("nmnist", "ntidigits"),
                     ensure_demo_twins(Path(cfg.workdir), progress, which=missing), strict=True)) \
        if missing else {}
    return {n: Path(cfg.path_of(n)) if cfg.path_of(n) is not None else twins[n]
            for n in cfg._datasets()}


def _resolved(cfg: _StudyConfig, paths: dict) -> _StudyConfig:
    """The config as run: dataset paths filled in, every path absolute."""
    changes = {name: str(Path(p).resolve()) for name, p in paths.items()}
    changes.update(workdir=str(Path(cfg.workdir).resolve()),
                   runs_dir=str(Path(cfg.runs_dir).resolve()))
    return dataclasses.replace(cfg, **changes)


def _load(name: str, path: Path, n_bins: int, progress: bool) -> tuple:
    from lsm.data.registry import load_split

    _say(progress, f"reading {_TITLES[name]} ({path}) ...")
    return tuple(load_split(name, path, split, n_bins=n_bins, progress=progress)
                 for split in ("train", "test"))


def _fit(x_train, x_test, data: tuple, readout: ReadoutConfig, seed: int) -> dict:
    from lsm.readout import train_and_test

    train, test = data
    r = train_and_test(x_train, train.labels, x_test, test.labels, readout, seed, train.groups)
    return {"test_accuracy": r["test_accuracy"], "val_accuracy": r["val_accuracy"],
            "chance": r["chance"]}


def _spikes_per_neuron(x: np.ndarray, kind: str, n_bins: int, n_neurons: int) -> float:
    total = x.sum(axis=1, dtype=np.float64)
    if kind == "rates":
        total = total * n_bins
    return float(total.mean() / n_neurons)


def _encode(lsm, data: tuple, kind: str, k: int) -> tuple:
    return tuple(lsm.encode(s.events, features=kind, n_windows=k, progress=False)
                 for s in data)


def _inputs(data: tuple, kind: str, k: int) -> tuple:
    from lsm.features import event_features

    return tuple(event_features(s.events, kind, k) for s in data)


def _crossbar(lsm_cfg: LSMConfig, **kwargs: Any):
    """A CrossbarWeights whose array holds the LSM's block (512 x 512, or larger when needed)."""
    from lsm.weights import CrossbarWeights

    rows = max(512, lsm_cfg.n_inputs + lsm_cfg.n_neurons)
    cols = max(512, 2 * lsm_cfg.n_neurons)
    return CrossbarWeights(array_rows=rows, array_cols=cols, **kwargs)


def _weight_source(name: str, lsm_cfg: LSMConfig):
    from lsm.experiments.common import make_weights

    return _crossbar(lsm_cfg) if name == "crossbar" else make_weights(name)


def _summary(per_seed: list, key: str = "test_accuracy") -> dict:
    from lsm.runs import mean_std

    return mean_std([p[key] for p in per_seed])


def _write_run(cfg: _StudyConfig, lsm: dict, result: dict, plot) -> dict:
    from lsm.experiments.common import write_run_files
    from lsm.runs import run_directory

    with run_directory(cfg.runs_dir, f"study-{cfg.study}") as run:
        result["run_dir"] = str(run)
        result["plot"] = str(plot(run, result))
        write_run_files(run, {"study": cfg.to_dict(), "seeds": list(range(cfg.n_seeds)),
                              "lsm": lsm}, result)
    return result


def _common_result(cfg: _StudyConfig, paths: dict) -> dict:
    from lsm.data.formats import data_kind

    return {"study": cfg.study, "data": {n: data_kind(p) for n, p in paths.items()},
            "paths": {n: str(p) for n, p in paths.items()}, "seeds": cfg.n_seeds,
            "readout": dataclasses.asdict(cfg.readout)}


# ---------------------------------------------------------------------- features
def run_features_study(cfg: FeaturesStudyConfig, progress: bool = True) -> dict:
    """Each feature kind on each dataset: the readout's test accuracy on the LSM's features and
    on the input events' own features ("no reservoir"), over ``n_seeds`` reservoir draws.

    Returns
    -------
    dict
        ``results[dataset][row]`` with ``lsm`` and ``no_reservoir`` (mean, std, n) and
        ``per_seed``; ``rows`` (row names in order), ``chance`` per dataset, ``run_dir`` and
        ``plot``. The run directory holds config.toml, metrics.json and features.png.
    """
    from lsm.experiments.common import make_weights
    from lsm.reservoir import LSM

    _check_inputs(cfg)
    make_weights(cfg.weights)  # a source that cannot be built is reported before any work
    paths = _dataset_paths(cfg, progress)
    cfg = _resolved(cfg, paths)
    rows = cfg.rows()
    names = [describe_features(kind, k) for kind, k in rows]
    results, chance, lsm_dicts = {}, {}, {}
    total, done = len(cfg.datasets) * cfg.n_seeds * len(rows), 0
    with torch_threads(1):
        for name in cfg.datasets:
            base = cfg.lsm_config(name)
            lsm_dicts[name] = base.to_dict()
            data = _load(name, paths[name], base.n_bins, progress)
            inputs = {row: _inputs(data, *row) for row in rows}
            per = {n: [] for n in names}
            for seed in range(cfg.n_seeds):
                lsm_cfg = cfg.lsm_config(name, seed)
                lsm = LSM(lsm_cfg, weights=_weight_source(cfg.weights, lsm_cfg))
                for row, row_name in zip(rows, names, strict=True):
                    x = _encode(lsm, data, *row)
                    res = _fit(*x, data, cfg.readout, seed)
                    base_res = _fit(*inputs[row], data, cfg.readout, seed)
                    chance[name] = res["chance"]
                    per[row_name].append({
                        "seed": seed, "lsm": res["test_accuracy"],
                        "no_reservoir": base_res["test_accuracy"],
                        "lsm_val": res["val_accuracy"], "no_reservoir_val":
                            base_res["val_accuracy"],
                        "spikes_per_neuron": _spikes_per_neuron(x[0], row[0], lsm_cfg.n_bins,
                                                                lsm_cfg.n_neurons)})
                    done += 1
                    _say(progress, f"features {_TITLES[name]} {row_name} seed {seed}: LSM "
                                   f"{res['test_accuracy']:.3f}, no reservoir "
                                   f"{base_res['test_accuracy']:.3f} [{done}/{total}]")
            results[name] = {n: {"lsm": _summary(p, "lsm"),
                                 "no_reservoir": _summary(p, "no_reservoir"),
                                 "per_seed": p} for n, p in per.items()}
            del data, inputs
    result = {**_common_result(cfg, paths), "datasets": list(cfg.datasets),
              "weights": cfg.weights, "rows": names, "results": results, "chance": chance}
    return _write_run(cfg, lsm_dicts, result, _features_plot)


def _features_plot(run: Path, r: dict) -> Path:
    from matplotlib.figure import Figure

    from lsm.plots import save_figure

    names = r["datasets"]
    fig = Figure(figsize=(1.0 + 1.3 * len(r["rows"]) * len(names), 3.8))
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    x = np.arange(len(r["rows"]))
    for ax, name in zip(axes, names, strict=True):
        res = r["results"][name]
        for i, (key, label) in enumerate((("lsm", "LSM"), ("no_reservoir", "no reservoir"))):
            mean = [res[row][key]["mean"] for row in r["rows"]]
            std = [res[row][key]["std"] for row in r["rows"]]
            ax.bar(x + (i - 0.5) * 0.38, mean, 0.38, yerr=std, capsize=3, label=label,
                   color=f"C{i}")
        ax.axhline(r["chance"][name], color="0.5", ls=":", lw=1, label="chance")
        ax.set_xticks(x, r["rows"])
        ax.set_ylim(0, 1)
        ax.set_title(f"{_TITLES[name]} ({r['data'][name]})", fontsize=10)
        ax.set_xlabel("readout features")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{r['readout']['kind']} readout, {r['weights']} weights, mean +- std over "
                 f"{r['seeds']} reservoir seed(s)", fontsize=10)
    return save_figure(fig, run / "features.png")


# ---------------------------------------------------------------------- size
def run_size_study(cfg: SizeStudyConfig, progress: bool = True) -> dict:
    """The readout's test accuracy for each reservoir size, over ``n_seeds`` draws, with the
    same readout on the input events ("no reservoir") as a reference.

    Returns
    -------
    dict
        ``points`` (one per size: ``n_neurons``, ``test_accuracy`` mean/std/n, mean
        ``spikes_per_neuron``, ``per_seed``), ``no_reservoir``, ``chance``, ``run_dir``, ``plot``
        (size.png in the run directory, beside config.toml and metrics.json).
    """
    from lsm.reservoir import LSM

    _check_inputs(cfg)
    paths = _dataset_paths(cfg, progress)
    cfg = _resolved(cfg, paths)
    base = cfg.lsm_config(cfg.dataset)
    data = _load(cfg.dataset, paths[cfg.dataset], base.n_bins, progress)
    total, done = len(cfg.n_neurons) * cfg.n_seeds, 0
    with torch_threads(1):
        inputs = _inputs(data, cfg.features, cfg.n_windows)
        baseline = [{"seed": s, **_fit(*inputs, data, cfg.readout, s)}
                    for s in range(cfg.n_seeds)]
        _say(progress, f"size: no reservoir {_summary(baseline)['mean']:.3f}")
        points = []
        for n in cfg.n_neurons:
            per_seed = []
            for seed in range(cfg.n_seeds):
                lsm_cfg = cfg.lsm_config(cfg.dataset, seed, n_neurons=n)
                lsm = LSM(lsm_cfg, weights=_weight_source(cfg.weights, lsm_cfg))
                x = _encode(lsm, data, cfg.features, cfg.n_windows)
                res = _fit(*x, data, cfg.readout, seed)
                per_seed.append({"seed": seed, **res, "spikes_per_neuron": _spikes_per_neuron(
                    x[0], cfg.features, lsm_cfg.n_bins, n)})
                done += 1
                _say(progress, f"size {n} neurons seed {seed}: {res['test_accuracy']:.3f} "
                               f"[{done}/{total}]")
            points.append({"n_neurons": n, "test_accuracy": _summary(per_seed),
                           "spikes_per_neuron": float(np.mean([p["spikes_per_neuron"]
                                                               for p in per_seed])),
                           "per_seed": per_seed})
    result = {**_common_result(cfg, paths), "dataset": cfg.dataset,
              "features": describe_features(cfg.features, cfg.n_windows),
              "weights": cfg.weights, "points": points,
              "no_reservoir": {"test_accuracy": _summary(baseline), "per_seed": baseline},
              "chance": baseline[0]["chance"]}
    return _write_run(cfg, {cfg.dataset: base.to_dict()}, result, _size_plot)


def _reference_lines(ax, r: dict, gaussian: bool = False) -> None:
    """Horizontal lines with their +- std bands: no reservoir, (Gaussian weights), chance."""
    refs = [("no_reservoir", "no reservoir", "C3", "--")]
    if gaussian:
        refs.insert(0, ("gaussian", "Gaussian weights", "C2", "-"))
    for key, label, color, ls in refs:
        v = r[key]["test_accuracy"]
        ax.axhline(v["mean"], color=color, ls=ls, lw=1.2, label=f"{label} {v['mean']:.3f}")
        if v["std"] > 0:
            ax.axhspan(v["mean"] - v["std"], v["mean"] + v["std"], color=color, alpha=0.12,
                       lw=0)
    ax.axhline(r["chance"], color="0.5", ls=":", lw=1, label="chance")


def _size_plot(run: Path, r: dict) -> Path:
    from matplotlib.figure import Figure

    from lsm.plots import save_figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    n = [p["n_neurons"] for p in r["points"]]
    ax.errorbar(n, [p["test_accuracy"]["mean"] for p in r["points"]],
                [p["test_accuracy"]["std"] for p in r["points"]], marker="o", capsize=3,
                color="C0", label=f"LSM ({r['weights']} weights)")
    _reference_lines(ax, r)
    ax.set_xscale("log", base=2)
    ax.set_xticks(n, [str(v) for v in n])
    ax.set_xlabel("reservoir neurons")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{_TITLES[r['dataset']]} ({r['data'][r['dataset']]}), {r['readout']['kind']} "
                 f"readout on {r['features']}, {r['seeds']} seed(s)", fontsize=9)
    return save_figure(fig, run / "size.png")


# ---------------------------------------------------------------------- non-idealities
def nonideality_weights(lsm_cfg: LSMConfig, panel: str, value: Any, in_loop: bool,
                        stuck_state: str = "both"):
    """The :class:`~lsm.weights.CrossbarWeights` of one point of the non-ideality study:
    the default crossbar (array large enough for ``lsm_cfg``) with ``panel`` set to ``value``.
    """
    from lsm.crossbar import ADC, DeviceParams

    check_choice("panel", panel, tuple(NONIDEALITIES))
    check_choice("stuck_state", stuck_state, STUCK_STATES)
    device = DeviceParams()
    kwargs: dict = {"in_loop": in_loop}
    if panel == "read_noise_rel":
        device = dataclasses.replace(device, read=dataclasses.replace(
            device.read, read_noise_rel=float(value)))
    elif panel == "adc_bits":
        kwargs["adc"] = ADC(bits=int(value))
    elif panel == "stuck_rate":
        p = float(value)
        hrs, lrs = {"both": (p / 2, p / 2), "hrs": (p, 0.0), "lrs": (0.0, p)}[stuck_state]
        device = dataclasses.replace(device, faults=dataclasses.replace(
            device.faults, p_stuck_hrs=hrs, p_stuck_lrs=lrs))
    elif panel == "read_time_s":
        kwargs["read_time_s"] = float(value)
    else:  # form_cv
        device = dataclasses.replace(device, programming=dataclasses.replace(
            device.programming, form_cv=float(value)))
    return _crossbar(lsm_cfg, device=device, **kwargs)


def run_nonideality_study(cfg: NonidealityStudyConfig, progress: bool = True) -> dict:
    """The readout's test accuracy on crossbar reservoirs with one non-ideality swept at a
    time, beside Gaussian-weight reservoirs and the input events ("no reservoir").

    Returns
    -------
    dict
        ``panels[name]`` (``title``, ``axis``, ``mode`` "in the loop" or "map read",
        ``default`` value, ``points``: ``value``, ``test_accuracy`` mean/std/n,
        ``spikes_per_neuron``, ``per_seed``); ``gaussian`` and ``no_reservoir``
        (``test_accuracy``, ``per_seed``); ``chance``; ``encode_s`` (mean seconds to build and
        encode both splits, per mode, as measured in this run); ``run_dir``, ``plot``
        (nonideality.png).
    """
    from lsm.reservoir import LSM

    _check_inputs(cfg)
    paths = _dataset_paths(cfg, progress)
    cfg = _resolved(cfg, paths)
    base = cfg.lsm_config(cfg.dataset)
    data = _load(cfg.dataset, paths[cfg.dataset], base.n_bins, progress)
    kind = (cfg.features, cfg.n_windows)
    total = cfg.n_seeds * sum(len(getattr(cfg, p)) for p in cfg.panels)
    done = 0
    timing = {"in the loop": [], "map read": []}
    with torch_threads(1):
        inputs = _inputs(data, *kind)
        baseline = [{"seed": s, **_fit(*inputs, data, cfg.readout, s)}
                    for s in range(cfg.n_seeds)]
        gaussian = []
        for seed in range(cfg.n_seeds):
            lsm = LSM(cfg.lsm_config(cfg.dataset, seed))
            gaussian.append({"seed": seed, **_fit(*_encode(lsm, data, *kind), data, cfg.readout,
                                                  seed)})
        _say(progress, f"nonideality: Gaussian weights {_summary(gaussian)['mean']:.3f}, no "
                       f"reservoir {_summary(baseline)['mean']:.3f}")
        panels = {}
        for panel in cfg.panels:
            mode = cfg.mode(panel)
            points = []
            for value in getattr(cfg, panel):
                per_seed = []
                for seed in range(cfg.n_seeds):
                    lsm_cfg = cfg.lsm_config(cfg.dataset, seed)
                    t0 = time.perf_counter()
                    lsm = LSM(lsm_cfg, weights=nonideality_weights(
                        lsm_cfg, panel, value, panel in cfg.in_loop, cfg.stuck_state))
                    x = _encode(lsm, data, *kind)
                    timing[mode].append(time.perf_counter() - t0)
                    res = _fit(*x, data, cfg.readout, seed)
                    per_seed.append({"seed": seed, **res, "spikes_per_neuron":
                                     _spikes_per_neuron(x[0], cfg.features, lsm_cfg.n_bins,
                                                        lsm_cfg.n_neurons)})
                    done += 1
                    _say(progress, f"nonideality {panel}={value:g} ({mode}) seed {seed}: "
                                   f"{res['test_accuracy']:.3f} [{done}/{total}]")
                points.append({"value": value, "test_accuracy": _summary(per_seed),
                               "spikes_per_neuron": float(np.mean(
                                   [p["spikes_per_neuron"] for p in per_seed])),
                               "per_seed": per_seed})
            title, axis = NONIDEALITIES[panel]
            panels[panel] = {"title": title, "axis": axis, "mode": mode,
                             "default": NONIDEALITY_DEFAULTS[panel], "points": points}
    result = {**_common_result(cfg, paths), "dataset": cfg.dataset,
              "features": describe_features(*kind), "stuck_state": cfg.stuck_state,
              "panels": panels,
              "gaussian": {"test_accuracy": _summary(gaussian), "per_seed": gaussian},
              "no_reservoir": {"test_accuracy": _summary(baseline), "per_seed": baseline},
              "chance": baseline[0]["chance"],
              "encode_s": {m: float(np.mean(t)) for m, t in timing.items() if t}}
    return _write_run(cfg, {cfg.dataset: base.to_dict()}, result, _nonideality_plot)


def _value_label(v: Any) -> str:
    if isinstance(v, numbers.Integral):
        return str(v)
    v = float(v)
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        exp = int(math.floor(math.log10(abs(v))))
        mant = v / 10 ** exp
        return f"1e{exp}" if mant == 1 else f"{mant:g}e{exp}"
    return f"{v:g}"


def _nonideality_plot(run: Path, r: dict) -> Path:
    from matplotlib.figure import Figure

    from lsm.plots import save_figure

    panels = list(r["panels"].items())
    fig = Figure(figsize=(0.6 + 3.1 * len(panels), 3.9))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for i, (ax, (_, p)) in enumerate(zip(axes, panels, strict=True)):
        x = np.arange(len(p["points"]))
        ax.errorbar(x, [q["test_accuracy"]["mean"] for q in p["points"]],
                    [q["test_accuracy"]["std"] for q in p["points"]], marker="o", capsize=3,
                    color="C0", label="RRAM crossbar")
        _reference_lines(ax, r, gaussian=True)
        ax.set_xticks(x, [_value_label(q["value"]) + ("*" if q["value"] == p["default"] else "")
                          for q in p["points"]])
        ax.set_xlim(-0.5, len(x) - 0.5)
        ax.set_xlabel(p["axis"], fontsize=8)
        ax.set_title(f"{p['title']} ({p['mode']})", fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.set_ylabel("test accuracy")
            ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{_TITLES[r['dataset']]} ({r['data'][r['dataset']]}): one non-ideality at a "
                 f"time, others at defaults (* the default); {r['readout']['kind']} readout on "
                 f"{r['features']}, mean +- std over {r['seeds']} seed(s)", fontsize=9)
    return save_figure(fig, run / "nonideality.png")


# ---------------------------------------------------------------------- tables
def _seeds(r: dict) -> str:
    return f"{r['seeds']} reservoir seed" + ("s" if r["seeds"] > 1 else "")


def _pm(v: dict) -> str:
    return f"{100 * v['mean']:.1f} +- {100 * v['std']:.1f}"


def _table(header: list, rows: list, markdown: bool, align: str = "") -> list[str]:
    """Lines of a table: markdown (``| a | b |``) or plain aligned columns under a dashed
    rule. ``align`` holds one letter per column, "l" or "r" (default: the first column left,
    the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    if markdown:
        out = ["| " + " | ".join(header) + " |",
               "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
        return out + ["| " + " | ".join(r) + " |" for r in rows]
    width = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w)
                         for c, w, a in zip(r, width, align, strict=True)).rstrip()
    return [line(header), "  ".join("-" * w for w in width), *map(line, rows)]


def _data_line(r: dict) -> str:
    return ", ".join(f"{_TITLES[n]} {k}" for n, k in r["data"].items())


def format_features_study(r: dict, markdown: bool = False) -> str:
    """The features table: rows the feature kinds, per dataset an LSM and a no-reservoir
    column, test accuracy in % (mean +- std over seeds); ``markdown`` for a README."""
    header = ["features"]
    for n in r["datasets"]:
        header += [f"{_TITLES[n]} LSM", f"{_TITLES[n]} no reservoir"]
    rows = [[row] + [c for n in r["datasets"]
                     for c in (_pm(r["results"][n][row]["lsm"]),
                               _pm(r["results"][n][row]["no_reservoir"]))]
            for row in r["rows"]]
    chance = ", ".join(f"{_TITLES[n]} {100 * r['chance'][n]:.1f} %" for n in r["datasets"])
    lines = [f"Test accuracy (%, mean +- std over {_seeds(r)}) of a "
             f"{r['readout']['kind']} readout; {r['weights']} weights; data: {_data_line(r)}. "
             "No reservoir: the same readout on the input events' own features.", "",
             *_table(header, rows, markdown), ""]
    if {"rates", "counts"} <= set(r["rows"]):
        lines.append("rates are counts / time bins: a readout that standardises its inputs "
                     "(these do) scores them alike.")
    lines += [f"chance: {chance}", f"plot: {r['plot']}", f"run directory: {r['run_dir']}"]
    return "\n".join(lines)


def format_size_study(r: dict, markdown: bool = False) -> str:
    """Accuracy per reservoir size, with the no-reservoir accuracy and chance below."""
    rows = [[str(p["n_neurons"]), _pm(p["test_accuracy"]), f"{p['spikes_per_neuron']:.1f}"]
            for p in r["points"]]
    rows.append(["no reservoir", _pm(r["no_reservoir"]["test_accuracy"]), "-"])
    lines = [f"{_TITLES[r['dataset']]} ({r['data'][r['dataset']]}): test accuracy (%, mean +- "
             f"std over {_seeds(r)}) of a {r['readout']['kind']} readout on "
             f"{r['features']}, {r['weights']} weights.", "",
             *_table(["neurons", "test accuracy %", "spikes / neuron / sample"], rows,
                     markdown), "",
             f"chance: {100 * r['chance']:.1f} %", f"plot: {r['plot']}",
             f"run directory: {r['run_dir']}"]
    return "\n".join(lines)


def format_nonideality_study(r: dict, markdown: bool = False) -> str:
    """One row per (non-ideality, value), the default marked with *, then the Gaussian-weights
    and no-reservoir references; how each panel was simulated and what it cost."""
    rows = []
    for p in r["panels"].values():
        for q in p["points"]:
            mark = " *" if q["value"] == p["default"] else ""
            rows.append([p["title"], _value_label(q["value"]) + mark, p["mode"],
                         _pm(q["test_accuracy"]), f"{q['spikes_per_neuron']:.1f}"])
    rows.append(["Gaussian weights", "-", "-", _pm(r["gaussian"]["test_accuracy"]), "-"])
    rows.append(["no reservoir", "-", "-", _pm(r["no_reservoir"]["test_accuracy"]), "-"])
    timing = "; ".join(f"{m}: {s:.2f} s" for m, s in r["encode_s"].items())
    lines = [f"{_TITLES[r['dataset']]} ({r['data'][r['dataset']]}): test accuracy (%, mean +- "
             f"std over {_seeds(r)}) of a {r['readout']['kind']} readout on "
             f"{r['features']}, RRAM crossbar weights with one non-ideality swept, the others at "
             "their defaults (* the default value).", "",
             *_table(["non-ideality", "value", "simulated", "test accuracy %",
                      "spikes / neuron / sample"], rows, markdown, "lrlrr"), "",
             "simulated: 'in the loop' computes every multiply on the array (fresh read noise, "
             "ADC quantisation of every column); 'map read' reads the programmed array once "
             "into static weights.",
             f"build + encode time per reservoir (both splits): {timing}",
             f"stuck cells: {r['stuck_state']}; chance: {100 * r['chance']:.1f} %",
             f"plot: {r['plot']}", f"run directory: {r['run_dir']}"]
    return "\n".join(lines)


_RUN = {"features": run_features_study, "size": run_size_study,
        "nonideality": run_nonideality_study}
_FORMAT = {"features": format_features_study, "size": format_size_study,
           "nonideality": format_nonideality_study}


def run_study(cfg: _StudyConfig, progress: bool = True) -> dict:
    """Run the study that ``cfg`` configures (any of :data:`STUDY_CONFIGS`)."""
    if not isinstance(cfg, tuple(STUDY_CONFIGS.values())):
        known = ", ".join(c.__name__ for c in STUDY_CONFIGS.values())
        raise TypeError(f"cfg must be one of {known}, got {type(cfg).__name__}")
    return _RUN[cfg.study](cfg, progress)


def format_study(r: dict, markdown: bool = False) -> str:
    """The table of a study's result (any study)."""
    return _FORMAT[r["study"]](r, markdown)
