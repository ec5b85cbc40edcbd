"""Searches over reservoir settings (``lsm sweep``), on Optuna with its relational storage.

A sweep tunes some fields of the dataset's :class:`~lsm.config.LSMConfig` (thresholds, weight
scales, decay, size, connectivity) for the validation accuracy of a readout. Every number it
selects on comes from validation carved out of the training split (by speaker for N-TIDIGITS,
as :func:`lsm.readout.fit_readout` does); the test split is never opened by a trial. Only
:func:`evaluate_best` reads it, once, for the chosen trial, and the study records that it did.

Where the state lives
    An Optuna study in a relational database: by default the SQLite file ``study.db`` in the
    sweep's run directory (one machine, several processes); a PostgreSQL URL
    (``postgresql+psycopg://user:password@host/db``) lets workers on many machines share it. The
    resolved :class:`SweepConfig` is stored in the study's user attributes, so a worker joins
    with nothing but the storage URL and the study name (``lsm sweep worker``).

Several workers, and workers that die
    Each worker runs trials until the study holds ``n_trials`` COMPLETE ones. Workers do not
    start a trial while the trials already complete or running would reach ``n_trials``, and a
    trial that finds itself beyond the count (two workers started at the same instant) is
    pruned, marked ``surplus``: the study ends with exactly ``n_trials`` COMPLETE trials. A
    running trial records a heartbeat every ``heartbeat_s`` seconds; one whose worker died
    (killed, machine lost) goes stale after ``grace_s`` seconds, is failed by the next worker
    that looks, and re-queued with the same parameters (at most ``max_retry`` times).

Reproducible by id
    The pipeline (preprocessing, Numba reservoir, readout with a fixed seed) is deterministic:
    :func:`rerun_trial` runs a stored trial's configuration again and checks that it gives the
    stored validation accuracy, bit for bit.

With one worker the search is reproducible from ``seed``; with several, worker ``i`` samples
with ``seed + i`` and which trial lands where depends on timing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import numbers
import os
import socket
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from lsm.config import LSMConfig
from lsm.data.registry import DATASET_NAMES
from lsm.validation import InvalidTypeError, check_choice, check_int

__all__ = ["SweepConfig", "ParamRange", "Sweep", "SweepError", "SEARCHABLE_FIELDS",
           "SWEEP_FEATURES", "SWEEP_READOUTS", "STUDY_DB", "DEFAULT_SPACES", "default_config",
           "storage_url", "display_url", "create_study", "run_sweep", "run_worker",
           "rerun_trial", "evaluate_best", "study_summary", "sweep_plot", "format_sweep",
           "format_worker", "format_rerun", "format_best"]

#: LSMConfig fields a sweep may search (n_inputs and n_bins are the dataset's; seed is the draw)
SEARCHABLE_FIELDS = ("decay", "v_th", "reset", "w_in_const", "w_rec_const", "p_in", "p_rec",
                     "n_neurons")
#: features a trial can give the readout ("windows": spike counts in ``n_windows`` time windows)
SWEEP_FEATURES = ("rates", "counts", "windows")
#: readouts (:class:`lsm.readout.ReadoutConfig` kinds); "probe" is logistic regression
SWEEP_READOUTS = ("probe", "linear", "mlp")
#: the SQLite file of a sweep's run directory
STUDY_DB = "study.db"

#: the search space of :func:`default_config`: ranges around the paper's encoders
#: (N-MNIST: decay 0.9, v_th 5.0, const 0.07; N-TIDIGITS: decay 0.97, v_th 5.3, const 0.08;
#: 200 neurons, fully connected); examples/configs/sweep_<dataset>.toml holds the same
DEFAULT_SPACES = {
    "nmnist": {
        "w_in_const": {"low": 0.02, "high": 0.3, "log": True},
        "w_rec_const": {"low": 0.01, "high": 0.3, "log": True},
        "decay": {"low": 0.7, "high": 0.99},
        "v_th": {"low": 1.0, "high": 15.0, "log": True},
        "n_neurons": {"low": 100, "high": 400, "step": 50},
        "p_rec": {"low": 0.1, "high": 1.0},
    },
    "ntidigits": {
        "w_in_const": {"low": 0.02, "high": 0.3, "log": True},
        "w_rec_const": {"low": 0.01, "high": 0.3, "log": True},
        "decay": {"low": 0.85, "high": 0.995},
        "v_th": {"low": 1.5, "high": 15.0, "log": True},
        "n_neurons": {"low": 100, "high": 400, "step": 50},
        "p_rec": {"low": 0.1, "high": 1.0},
    },
}

# study user attributes
_ATTR_CONFIG = "sweep_config"
_ATTR_DATA = "train_data"
_ATTR_TESTS = "test_evaluations"
_LSM_FIELD_TYPES = {f.name: f.type for f in fields(LSMConfig)}


class SweepError(ValueError):
    """A sweep refused or could not go on, for a reason the user can act on (an unknown study,
    an unreachable database, a second look at the test split, a trial that does not reproduce):
    the command line prints it as one line, exit status 2."""


# ---------------------------------------------------------------------- the search space
@dataclass(frozen=True)
class ParamRange:
    """The range of one searched :class:`~lsm.config.LSMConfig` field.

    Parameters
    ----------
    name : str
        The field (one of :data:`SEARCHABLE_FIELDS`).
    low, high : float or int, optional
        Bounds, both included; integers for an integer field (``n_neurons``).
    log : bool
        Sample on a log scale (``low`` > 0).
    step : float or int, optional
        Grid spacing from ``low``; not with ``log``.
    choices : tuple, optional
        The values to choose among, instead of ``low``/``high``.
    """

    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None

    def suggest(self, trial) -> Any:
        """The value of this field for an Optuna ``trial``."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if _LSM_FIELD_TYPES[self.name] == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1,
                                     log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def to_dict(self) -> dict:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def _param_range(name: Any, spec: Any, dataset: str) -> ParamRange:
    """Validate one entry of a search space (``name -> {low, high, log?, step?}`` or
    ``{choices = [...]}``); errors name ``SweepConfig.space.<name>``."""
    if isinstance(spec, ParamRange):
        if spec.name != name:
            raise ValueError(f"SweepConfig.space: entry {name!r} holds the range of "
                             f"{spec.name!r}")
        spec = spec.to_dict()
    where = f"SweepConfig.space.{name}"
    if name not in SEARCHABLE_FIELDS:
        if name in _LSM_FIELD_TYPES:
            raise ValueError(f"SweepConfig.space: {name!r} is an LSMConfig field a sweep does not "
                             f"search (n_inputs and n_bins are the dataset's, seed is the weight "
                             f"draw); searchable: {', '.join(SEARCHABLE_FIELDS)}")
        raise ValueError(f"SweepConfig.space: unknown LSMConfig field {name!r}; searchable: "
                         f"{', '.join(SEARCHABLE_FIELDS)}")
    if not isinstance(spec, Mapping):
        raise InvalidTypeError(f"{where} must be a table ({{low, high, log, step}} or "
                               f"{{choices}}), got {spec!r}")
    unknown = sorted(set(spec) - {"low", "high", "log", "step", "choices"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: low, high, log, step, "
                         "choices")
    kind = _LSM_FIELD_TYPES[name]
    preset = _preset(dataset)

    def check_value(key: str, value: Any) -> Any:
        """``value`` is a valid setting of the field (checked by LSMConfig itself)."""
        try:
            preset.replace(**{name: value})
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}.{key}: {exc}") from None
        return value

    if "choices" in spec:
        extra = sorted(set(spec) - {"choices"})
        if extra:
            raise ValueError(f"{where}: give either choices or low/high, not both ({extra})")
        choices = spec["choices"]
        if isinstance(choices, (str, bytes)) or not isinstance(choices, (list, tuple)) \
                or not choices:
            raise ValueError(f"{where}.choices must be a non-empty list, got {choices!r}")
        if len(set(choices)) != len(choices):
            raise ValueError(f"{where}.choices lists a value twice: {list(choices)}")
        for v in choices:
            check_value("choices", v)
        return ParamRange(name, choices=tuple(choices))
    if kind == "str":
        raise ValueError(f"{where}: {name} is a string setting; give choices = [...]")
    missing = [k for k in ("low", "high") if k not in spec]
    if missing:
        raise ValueError(f"{where}: missing {' and '.join(missing)} (or give choices = [...])")
    low, high = spec["low"], spec["high"]
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise InvalidTypeError(f"{where}.log must be true or false, got {log!r}")
    for key, value in (("low", low), ("high", high)):
        if kind == "int":
            check_int(where, key, value, -2**62)
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidTypeError(f"{where}.{key} must be a number, got {value!r}")
        check_value(key, value)
    if kind == "float":
        low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"{where}: low must be below high, got low={low}, high={high}")
    if log and low <= 0:
        raise ValueError(f"{where}: a log scale needs low > 0, got {low}")
    if step is not None:
        if log:
            raise ValueError(f"{where}: step and log cannot be combined")
        if kind == "int":
            step = check_int(where, "step", step, 1)
        elif isinstance(step, bool) or not isinstance(step, numbers.Real) \
                or not math.isfinite(step) or step <= 0:
            raise ValueError(f"{where}.step must be a number > 0, got {step!r}")
        else:
            step = float(step)
        if step > high - low:
            raise ValueError(f"{where}.step ({step}) is larger than high - low ({high - low})")
    return ParamRange(name, low, high, log, step)


def _preset(dataset: str) -> LSMConfig:
    from lsm.data.registry import dataset_spec

    return dataset_spec(dataset).lsm_config()


# ---------------------------------------------------------------------- the configuration
_TOML_KEYS = ("dataset", "path", "n_trials", "readout", "features", "n_windows", "seed",
              "lsm_seed", "study", "heartbeat_s", "grace_s", "max_retry", "runs_dir", "workdir")
# what may differ between a run that creates a study and one that continues it
_NOT_COMPARED = ("path", "n_trials", "runs_dir", "workdir")


@dataclass(frozen=True)
class SweepConfig:
    """A search over reservoir settings for the validation accuracy of a readout.

    Parameters
    ----------
    dataset : {"nmnist", "ntidigits"}
        Registry name (:data:`lsm.data.DATASETS`): the paper's preprocessing and encoder, whose
        fields the search changes.
    path : path, optional
        The dataset (N-MNIST folder, N-TIDIGITS ``.hdf5`` file); None: the demo's offline twin
        under ``workdir`` (made on first use).
    n_trials : int
        COMPLETE trials the study is to hold; workers stop there.
    space : dict or tuple of ParamRange
        ``field -> {"low", "high", "log"?, "step"?}`` or ``field -> {"choices": [...]}`` for
        fields of :data:`SEARCHABLE_FIELDS`; stored as a tuple of :class:`ParamRange`.
    readout : {"probe", "linear", "mlp"}
        The readout (:class:`lsm.readout.ReadoutConfig` kind); "probe" is logistic regression.
    features : {"rates", "counts", "windows"}
        What the reservoir gives the readout; "windows" passes ``n_windows`` to
        :meth:`lsm.LSM.encode` (spike counts in that many time windows).
    n_windows : int
        Time windows of ``features="windows"`` (ignored otherwise).
    seed : int
        Seed of the sampler (worker ``i`` of a run that starts the study uses ``seed + i``; a
        worker that joins or resumes it draws a seed of its own, never replaying draws).
    lsm_seed : int
        Seed of every trial's reservoir weight draw and of the readout's validation split.
    study : str, optional
        Study name in the storage; default ``"<dataset>-sweep"``.
    heartbeat_s, grace_s : int
        A running trial records a heartbeat every ``heartbeat_s`` seconds; after ``grace_s``
        seconds without one its worker is taken for dead and the trial failed.
    max_retry : int
        Times a trial failed that way is re-queued with the same parameters.
    runs_dir : path
        Parent of the sweep's run directory.
    workdir : path
        Where the demo's twins are made when ``path`` is None.
    """

    dataset: str
    path: str | os.PathLike | None = None
    n_trials: int = 20
    space: Any = ()
    readout: str = "probe"
    features: str = "windows"
    n_windows: int = 5
    seed: int = 0
    lsm_seed: int = 0
    study: str | None = None
    heartbeat_s: int = 10
    grace_s: int = 60
    max_retry: int = 3
    runs_dir: str | os.PathLike = "runs"
    workdir: str | os.PathLike = "lsm-demo"

    def __post_init__(self) -> None:
        owner = "SweepConfig"
        check_choice("SweepConfig.dataset", self.dataset, DATASET_NAMES)
        check_int(owner, "n_trials", self.n_trials, 1)
        check_choice("SweepConfig.readout", self.readout, SWEEP_READOUTS)
        check_choice("SweepConfig.features", self.features, SWEEP_FEATURES)
        check_int(owner, "n_windows", self.n_windows, 1)
        if self.features == "windows":
            check_int(owner, "n_windows", self.n_windows, 1, _preset(self.dataset).n_bins)
        check_int(owner, "seed", self.seed, 0, 2**32 - 1 - 1024)
        check_int(owner, "lsm_seed", self.lsm_seed, 0, 2**63 - 1)
        check_int(owner, "heartbeat_s", self.heartbeat_s, 1)
        check_int(owner, "grace_s", self.grace_s, 1)
        check_int(owner, "max_retry", self.max_retry, 0)
        if self.grace_s <= self.heartbeat_s:
            raise ValueError(f"SweepConfig.grace_s ({self.grace_s}) must exceed heartbeat_s "
                             f"({self.heartbeat_s}): a live worker would be taken for dead")
        for name in ("path", "runs_dir", "workdir"):
            v = getattr(self, name)
            if v is None and name == "path":
                continue
            if not isinstance(v, (str, os.PathLike)) or not str(v).strip():
                raise InvalidTypeError(f"SweepConfig.{name} must be a path, got {v!r}")
            object.__setattr__(self, name, str(v))
        study = self.study if self.study is not None else f"{self.dataset}-sweep"
        if not isinstance(study, str) or not study.strip() or len(study) > 512:
            raise InvalidTypeError(f"SweepConfig.study must be a non-empty name, got {study!r}")
        object.__setattr__(self, "study", study)
        space = self.space
        if isinstance(space, Mapping):
            items = list(space.items())
        elif isinstance(space, (tuple, list)) and all(isinstance(p, ParamRange) for p in space):
            items = [(p.name, p) for p in space]
        else:
            raise InvalidTypeError("SweepConfig.space must be a table field -> range (or a tuple "
                                   f"of ParamRange), got {type(space).__name__}")
        if not items:
            raise ValueError("SweepConfig.space is empty: name at least one LSMConfig field to "
                             f"search ({', '.join(SEARCHABLE_FIELDS)})")
        names = [n for n, _ in items]
        if len(set(names)) != len(names):
            raise ValueError(f"SweepConfig.space names a field twice: {names}")
        object.__setattr__(self, "space",
                           tuple(_param_range(n, s, self.dataset) for n, s in items))

    # ------------------------------------------------------------------ conversion
    def replace(self, **changes: Any) -> SweepConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain data (TOML- and JSON-ready; ``path`` and ``study`` left out when None)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "space":
                v = {p.name: p.to_dict() for p in v}
            if v is not None:
                out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping, *, source: str = "dict") -> SweepConfig:
        """Build from plain data (``space`` a table); unknown keys and bad values are errors
        naming the key and ``source``."""
        if not isinstance(data, Mapping):
            raise InvalidTypeError(f"{source}: a sweep must be a table of settings, got "
                                   f"{type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown sweep setting(s) {unknown}; known: "
                             f"{sorted(known)}")
        if "dataset" not in data:
            raise ValueError(f"{source}: the sweep names no dataset (dataset = \"nmnist\" or "
                             "\"ntidigits\")")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> SweepConfig:
        """Read a ``[sweep]`` table with a ``[sweep.space]`` sub-table (one entry per searched
        field) from a TOML file. A relative ``path`` in it is relative to the file's folder.

        Raises
        ------
        FileNotFoundError, IsADirectoryError
            No such file, or a folder.
        ValueError
            Not TOML, no ``[sweep]`` table, an unknown key (named with the file), a bad value.
        """
        from lsm.io import read_toml_file

        path = Path(path)
        doc = read_toml_file(path, "sweep config")
        extra = sorted(set(doc) - {"sweep"})
        if extra:
            raise ValueError(f"{path}: unknown table(s) or key(s) {extra}; a sweep config holds "
                             "one [sweep] table and its [sweep.space]")
        table = doc.get("sweep")
        if not isinstance(table, dict):
            raise ValueError(f"{path}: no [sweep] table")
        unknown = sorted(set(table) - set(_TOML_KEYS) - {"space"})
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown} in [sweep]; known: "
                             f"{', '.join(_TOML_KEYS)} and the [sweep.space] table")
        data = dict(table)
        if "space" not in data:
            raise ValueError(f"{path}: no [sweep.space] table (one entry per searched field, "
                             "e.g. v_th = { low = 2.0, high = 10.0 })")
        if isinstance(data.get("path"), str) and data["path"].strip() \
                and not Path(data["path"]).is_absolute():
            data["path"] = str(path.parent / data["path"])
        return cls.from_dict(data, source=str(path))

    def to_toml(self) -> str:
        """The config as a ``[sweep]`` table with its ``[sweep.space]``."""
        import tomli_w

        return tomli_w.dumps({"sweep": self.to_dict()})


def default_config(dataset: str, **overrides: Any) -> SweepConfig:
    """A sweep of ``dataset`` over :data:`DEFAULT_SPACES` (the ranges of the example configs)."""
    from lsm.data.registry import dataset_spec

    dataset_spec(dataset)
    return SweepConfig(dataset=dataset, space=DEFAULT_SPACES[dataset], **overrides)


# ---------------------------------------------------------------------- storage
def storage_url(target: str | os.PathLike) -> str:
    """The SQLAlchemy URL of a study storage given as a URL, a SQLite file, or a sweep's run
    directory (its ``study.db``). ``postgresql://`` and ``postgres://`` become
    ``postgresql+psycopg://`` (the driver installed with this package).

    Raises
    ------
    FileNotFoundError
        A path that holds no study database.
    SweepError
        A URL of another kind of database, or one SQLAlchemy cannot parse.
    """
    text = os.fspath(target)
    if not isinstance(text, str) or not text.strip():
        raise SweepError(f"a study storage must be a URL or a path, got {target!r}")
    if "://" not in text:
        p = Path(text)
        if p.is_dir():
            p = p / STUDY_DB
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such study database (give a sweep's run directory, "
                                    "its study.db, or a postgresql+psycopg:// URL)")
        return f"sqlite:///{p.resolve()}"
    scheme, rest = text.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        text = "postgresql+psycopg://" + rest
    elif not (scheme == "sqlite" or scheme.startswith("postgresql+")):
        raise SweepError(f"study storage {display_url(text)}: expected sqlite:///FILE or a "
                         "PostgreSQL URL (postgresql+psycopg://user:password@host/database)")
    display_url(text)  # parsable
    return text


def display_url(url: str) -> str:
    """``url`` with its password hidden (for messages and run files)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise SweepError(f"not a database URL: {url.split('@')[-1]!r}") from None


@contextlib.contextmanager
def _storage_errors(url: str) -> Iterator[None]:
    """Database failures as :class:`SweepError` naming the storage (password hidden)."""
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    try:
        yield
    except (sqlalchemy.exc.DatabaseError, StorageInternalError) as exc:
        cause = exc.__cause__ if isinstance(exc, StorageInternalError) else exc
        if isinstance(exc, StorageInternalError) and cause is None:
            raise
        reason = str(getattr(cause, "orig", None) or cause).strip().splitlines()[0]
        raise SweepError(f"cannot use the study storage {display_url(url)}: {reason}") from None
    except sqlalchemy.exc.ArgumentError as exc:
        raise SweepError(f"study storage {display_url(url)}: {exc}") from None


def _open_storage(url: str, cfg: SweepConfig | None = None):
    """An Optuna RDBStorage on ``url``; with ``cfg``, heartbeats and stale-trial retries on."""
    import optuna

    kwargs: dict = {}
    if cfg is not None:
        kwargs = dict(heartbeat_interval=cfg.heartbeat_s, grace_period=cfg.grace_s,
                      heartbeat_stale_trial_callback=optuna.storages.
                      RetryHeartbeatStaleTrialCallback(max_retry=cfg.max_retry))
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    if url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder for the study database")
    with _storage_errors(url), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats are "experimental" in Optuna's words
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
        except ImportError as exc:
            raise SweepError(f"study storage {display_url(url)}: no database driver for it "
                             f"({exc})") from None


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _load_study(url: str, name: str | None, worker_index: int | None = None):
    """(study with heartbeats on, its SweepConfig, its RDBStorage). ``name`` None: the
    storage's only study.
    With ``worker_index``, the study samples with a TPE sampler seeded ``seed + worker_index``
    when it is empty, and with a seed of its own otherwise (:func:`_sampler_seed`).
    """
    import optuna

    _quiet_optuna()
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        # SQLite would make an empty database there
        raise FileNotFoundError(f"{url[len('sqlite:///'):]}: no such study database")
    plain = _open_storage(url)
    with _storage_errors(url):
        names = optuna.get_all_study_names(plain)
    if name is None:
        if len(names) != 1:
            raise SweepError(f"{display_url(url)} holds {len(names)} studies"
                             f"{' (' + ', '.join(names) + ')' if names else ''}; name one "
                             "with --study")
        name = names[0]
    if name not in names:
        raise SweepError(f"no study named {name!r} in {display_url(url)}; studies there: "
                         f"{', '.join(names) if names else 'none'}")
    with _storage_errors(url):
        attrs = optuna.load_study(study_name=name, storage=plain).user_attrs
    if _ATTR_CONFIG not in attrs:
        raise SweepError(f"study {name!r} in {display_url(url)} was not made by `lsm sweep` (no "
                         f"{_ATTR_CONFIG} in its user attributes)")
    cfg = SweepConfig.from_dict(attrs[_ATTR_CONFIG], source=f"study {name!r}")
    storage = _open_storage(url, cfg)
    sampler = None
    if worker_index is not None:
        with _storage_errors(url):
            n_before = len(optuna.load_study(study_name=name, storage=plain)
                           .get_trials(deepcopy=False))
        sampler = optuna.samplers.TPESampler(seed=_sampler_seed(cfg.seed, worker_index,
                                                                n_before))
    with _storage_errors(url):
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    return study, cfg, storage


def _sampler_seed(seed: int, worker_index: int, n_before: int) -> int:
    """``seed + worker_index`` for a worker that starts an empty study (one worker from scratch
    is reproducible). A worker that joins or resumes a study gets a seed of its own (process,
    host, time): the same seed would replay the same draws, and the study would try the same
    settings twice."""
    if n_before == 0:
        return seed + worker_index
    text = f"{seed}-{worker_index}-{n_before}-{os.getpid()}-{socket.gethostname()}-" \
           f"{time.time_ns()}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


@dataclass(frozen=True)
class Sweep:
    """A study ready for workers: its resolved config, storage URL, name and run directory."""

    config: SweepConfig
    storage: str
    study: str
    run_dir: Path


def _resolve(cfg: SweepConfig, progress: bool) -> SweepConfig:
    """``cfg`` with an absolute dataset path (the demo twin made when ``path`` is None)."""
    from lsm.data.registry import dataset_spec

    spec = dataset_spec(cfg.dataset)
    if cfg.path is None:
        from lsm.data.demo import ensure_demo_twins

        nm, td = ensure_demo_twins(Path(cfg.workdir), progress, which=(cfg.dataset,))
        path = nm if cfg.dataset == "nmnist" else td
    else:
        path = Path(cfg.path)
        if spec.path_kind == "folder" and not path.is_dir():
            raise FileNotFoundError(f"{path}: no such {spec.title} folder (give --{spec.name} "
                                    "DIR, or leave it out for the demo's offline twin)")
        if spec.path_kind == "file" and not path.is_file():
            raise FileNotFoundError(f"{path}: no such {spec.title} file (give --{spec.name} "
                                    "FILE, or leave it out for the demo's offline twin)")
    return cfg.replace(path=str(Path(path).resolve()))


def create_study(cfg: SweepConfig, storage: str | None = None, *, progress: bool = True
                 ) -> Sweep:
    """Make (or find again) the study of ``cfg`` and the sweep's run directory.

    With ``storage`` None a new run directory ``<runs_dir>/sweep-<dataset>-<time>/`` holds the
    SQLite file ``study.db``; with a URL, the study lives there and the run directory holds the
    summary only. A study of the same name that exists is continued when its stored config
    matches ``cfg`` (its ``n_trials`` is updated), and refused otherwise.
    """
    import optuna

    from lsm.io import check_output_dir
    from lsm.runs import new_run_dir

    _quiet_optuna()
    check_output_dir(cfg.runs_dir, "runs folder")
    url = storage_url(storage) if storage is not None else None
    if url is not None:
        _open_storage(url)  # reachable, before the dataset is made or a folder created
    cfg = _resolve(cfg, progress)
    run = new_run_dir(cfg.runs_dir, f"sweep-{cfg.dataset}")
    try:
        if url is None:
            url = f"sqlite:///{(run / STUDY_DB).resolve()}"
        st = _open_storage(url, cfg)
        with _storage_errors(url), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.create_study(storage=st, study_name=cfg.study, direction="maximize",
                                        load_if_exists=True)
            stored = study.user_attrs.get(_ATTR_CONFIG)
            if stored is None:
                if study.trials:
                    raise SweepError(f"study {cfg.study!r} in {display_url(url)} exists and was "
                                     "not made by `lsm sweep`; choose another --study")
                study.set_user_attr(_ATTR_CONFIG, cfg.to_dict())
                study.set_user_attr("created", time.strftime("%Y-%m-%d %H:%M:%S"))
            else:
                _check_same(cfg, stored, url)
                if stored.get("n_trials") != cfg.n_trials:
                    study.set_user_attr(_ATTR_CONFIG, stored | {"n_trials": cfg.n_trials})
        return Sweep(cfg, url, cfg.study, run)
    except BaseException:
        import shutil

        shutil.rmtree(run, ignore_errors=True)
        raise


def _check_same(cfg: SweepConfig, stored: dict, url: str) -> None:
    """Refuse to continue a study whose stored config searches something else."""
    mine = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_COMPARED}
    theirs = {k: v for k, v in SweepConfig.from_dict(stored).to_dict().items()
              if k not in _NOT_COMPARED}
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        raise SweepError(f"study {cfg.study!r} in {display_url(url)} exists with other settings "
                         f"({', '.join(diff)}); join it with `lsm sweep worker`, or choose "
                         "another --study")


# ---------------------------------------------------------------------- the objective
@dataclass
class _TrainData:
    streams: Any
    fingerprint: str
    chance: float


#: the training split of each (dataset, path, n_bins), read once per process
_TRAIN_CACHE: dict[tuple, _TrainData] = {}


def _fingerprint(streams) -> str:
    """SHA-256 of the preprocessed training streams, labels, ids and groups: the same data on
    every machine gives the same digest (file times and paths do not enter it)."""
    h = hashlib.sha256()
    ev = streams.events
    for a in (ev.offsets, ev.bins, ev.channels, streams.labels):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr((ev.n_bins, ev.n_channels)).encode())
    h.update("\x00".join(map(str, streams.sample_ids)).encode())
    if streams.groups is not None:
        h.update("\x00".join(map(str, streams.groups)).encode())
    return h.hexdigest()


def _train_data(cfg: SweepConfig, progress: bool = False) -> _TrainData:
    """The training split only (the objective never opens the test split), cached."""
    from lsm.data.registry import load_split

    n_bins = _preset(cfg.dataset).n_bins
    key = (cfg.dataset, str(Path(cfg.path).resolve()), n_bins)
    if key not in _TRAIN_CACHE:
        streams = load_split(cfg.dataset, cfg.path, "train", n_bins=n_bins, progress=progress)
        chance = float(np.bincount(streams.labels).max() / len(streams.labels))
        _TRAIN_CACHE[key] = _TrainData(streams, _fingerprint(streams), chance)
    return _TRAIN_CACHE[key]


def _encode(cfg: SweepConfig, lsm_cfg: LSMConfig, events) -> np.ndarray:
    from lsm.reservoir import LSM

    kwargs: dict = {"features": cfg.features, "progress": False}
    if cfg.features == "windows":
        kwargs["n_windows"] = cfg.n_windows
    return LSM(lsm_cfg).encode(events, **kwargs)


def _validation_score(cfg: SweepConfig, lsm_cfg: LSMConfig, data: _TrainData):
    """Encode the training split with ``lsm_cfg``; fit the readout with validation carved from
    it; the fitted readout (its ``val_accuracy`` is the objective)."""
    from lsm.readout import ReadoutConfig, fit_readout

    x = _encode(cfg, lsm_cfg, data.streams.events)
    return fit_readout(x, data.streams.labels, ReadoutConfig(kind=cfg.readout), cfg.lsm_seed,
                       data.streams.groups)


def _trial_lsm_config(cfg: SweepConfig, params: Mapping) -> LSMConfig:
    from lsm.data.registry import dataset_spec

    return dataset_spec(cfg.dataset).lsm_config(seed=cfg.lsm_seed, **params)


class _Objective:
    """Validation accuracy of one trial's reservoir; the trial's user attributes keep the full
    resolved LSMConfig, the features, the time taken and the worker."""

    def __init__(self, cfg: SweepConfig, data: _TrainData) -> None:
        self.cfg, self.data = cfg, data

    def __call__(self, trial) -> float:
        import optuna

        params = {p.name: p.suggest(trial) for p in self.cfg.space}
        trial.set_user_attr("worker_pid", os.getpid())
        trial.set_user_attr("worker_host", socket.gethostname())
        if _is_surplus(trial, self.cfg.n_trials):
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned(f"the study already has {self.cfg.n_trials} trials complete "
                                     "or running")
        t0 = time.perf_counter()
        try:
            lsm_cfg = _trial_lsm_config(self.cfg, params)
            trial.set_user_attr("lsm", lsm_cfg.to_dict())
            trial.set_user_attr("features", self.cfg.features)
            if self.cfg.features == "windows":
                trial.set_user_attr("n_windows", self.cfg.n_windows)
            readout = _validation_score(self.cfg, lsm_cfg, self.data)
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        trial.set_user_attr("elapsed_s", round(time.perf_counter() - t0, 4))
        if readout.curves.get("C") is not None:
            trial.set_user_attr("readout_C", readout.curves["C"])
        return float(readout.val_accuracy)


def _is_surplus(trial, n_trials: int) -> bool:
    """This trial would take the study past ``n_trials`` COMPLETE ones: the complete trials plus
    the running ones numbered before it (which started first) already make the count."""
    from optuna.trial import TrialState

    trials = trial.study.get_trials(deepcopy=False,
                                    states=(TrialState.COMPLETE, TrialState.RUNNING))
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in trials)
    return complete + ahead >= n_trials


def _counts(study) -> dict:
    from optuna.trial import TrialState

    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


class _Gate:
    """Before each trial: stop when the study has ``n_trials`` COMPLETE trials; wait while the
    complete and running ones would reach it, failing (and re-queuing) meanwhile the running
    trials whose worker is gone.

    A trial is taken for orphaned when its heartbeat is older than ``grace_s`` (Optuna's
    :func:`~optuna.storages.fail_stale_trials`), or when it has no heartbeat at all and this
    worker has seen it so for ``grace_s`` seconds (its worker died between creating it and its
    first heartbeat; Optuna leaves such a trial RUNNING for ever). Only this worker's monotonic
    clock measures the latter: clocks of other machines never enter.
    """

    def __init__(self, n_trials: int, storage, grace_s: float, bar=None,
                 poll_s: float = 0.5) -> None:
        self.n_trials, self.storage, self.grace_s = n_trials, storage, grace_s
        self.bar, self.poll_s = bar, poll_s
        self._silent_since: dict[int, float] = {}

    def room(self, study) -> bool:
        import optuna

        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(study)
            self._fail_silent(study)
            c = _counts(study)
            if self.bar is not None:
                self.bar.update(min(c["complete"], self.n_trials) - self.bar.n)
            if c["complete"] >= self.n_trials:
                return False
            if c["complete"] + c["running"] < self.n_trials:
                return True
            time.sleep(self.poll_s)

    def _fail_silent(self, study) -> None:
        """Fail the RUNNING trials that have had no heartbeat for ``grace_s`` of watching."""
        import sqlalchemy
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        running = [t._trial_id for t in study.get_trials(deepcopy=False,
                                                         states=(TrialState.RUNNING,))]
        now = time.monotonic()
        self._silent_since = {k: v for k, v in self._silent_since.items() if k in running}
        if not running:
            return
        query = sqlalchemy.text("SELECT trial_id FROM trial_heartbeats WHERE trial_id IN :ids"
                                ).bindparams(sqlalchemy.bindparam("ids", expanding=True))
        with self.storage.engine.connect() as conn:
            beating = {row[0] for row in conn.execute(query, {"ids": running})}
        callback = self.storage.get_heartbeat_stale_trial_callback()
        for trial_id in running:
            if trial_id in beating:
                self._silent_since.pop(trial_id, None)
                continue
            first = self._silent_since.setdefault(trial_id, now)
            if now - first <= self.grace_s:
                continue
            try:
                failed = self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            except UpdateFinishedTrialError:  # finished, or failed by another worker meanwhile
                failed = False
            self._silent_since.pop(trial_id, None)
            if failed and callback is not None:
                callback(study, self.storage.get_trial(trial_id))

    def __call__(self, study, trial) -> None:
        if not self.room(study):
            study.stop()


def run_worker(storage: str | os.PathLike, study: str | None = None, *,
               path: str | os.PathLike | None = None, progress: bool = True,
               worker_index: int = 0) -> dict:
    """Join a study and run trials until it holds its ``n_trials`` COMPLETE trials.

    Parameters
    ----------
    storage : str or path
        The study's storage: a URL, a SQLite file or a sweep's run directory.
    study : str, optional
        Its name (None: the storage's only study).
    path : path, optional
        Where the dataset is on this machine (default: the path stored with the study). The
        training data must be the same as the study's first worker read (checked by digest).
    progress : bool
        A progress bar of COMPLETE trials (study-wide).
    worker_index : int
        The sampler's seed is the config's ``seed + worker_index``.

    Returns
    -------
    dict
        ``study``, ``ran`` (trials this worker ran to completion), ``complete``, ``n_trials``,
        ``pid``.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from lsm.progress import progress_bar

    url = storage_url(storage)
    st, cfg, rdb = _load_study(url, study, worker_index)
    if path is not None:
        cfg = _resolve(cfg.replace(path=path), progress)
    if not Path(cfg.path).exists():
        raise FileNotFoundError(f"{cfg.path}: the study's dataset is not on this machine; give "
                                f"its location with --{cfg.dataset}")
    data = _train_data(cfg, progress)
    with _storage_errors(url):
        known = st.user_attrs.get(_ATTR_DATA)
        if known is None:
            st.set_user_attr(_ATTR_DATA, {"fingerprint": data.fingerprint,
                                          "n_samples": len(data.streams.labels),
                                          "chance": data.chance})
        elif known["fingerprint"] != data.fingerprint:
            raise SweepError(f"the training data at {cfg.path} differ from those of study "
                             f"{st.study_name!r} ({len(data.streams.labels)} samples here, "
                             f"{known['n_samples']} there; digests differ): a trial on other data "
                             "would not be comparable")
    mine = []

    def record(s, t) -> None:
        if t.state == TrialState.COMPLETE:
            mine.append(t.number)

    with progress_bar(total=cfg.n_trials, desc=f"sweep {st.study_name}", unit="trial",
                      disable=not progress) as bar, _storage_errors(url):
        gate = _Gate(cfg.n_trials, rdb, cfg.grace_s, bar)
        while gate.room(st):
            try:
                st.optimize(_Objective(cfg, data),
                            callbacks=[record, gate, MaxTrialsCallback(
                                cfg.n_trials, states=(TrialState.COMPLETE,))])
            except UpdateFinishedTrialError:
                # this worker's trial went without a heartbeat for grace_s (a stalled machine)
                # and another worker failed it and re-queued its parameters: go on
                continue
            break
        complete = _counts(st)["complete"]
        bar.update(min(complete, cfg.n_trials) - bar.n)
    return {"study": st.study_name, "storage": display_url(url), "ran": len(mine),
            "complete": complete, "n_trials": cfg.n_trials, "pid": os.getpid()}


def _worker_process(url: str, study: str, index: int, queue) -> None:
    """Entry point of a spawned worker: run, then report (pid, error or None) to the parent."""
    warnings.filterwarnings("ignore")
    try:
        r = run_worker(url, study, progress=False, worker_index=index)
        queue.put((index, os.getpid(), None, r["ran"]))
    except BaseException as exc:
        queue.put((index, os.getpid(), f"{type(exc).__name__}: {exc}", 0))
        raise SystemExit(1) from None


def run_sweep(cfg: SweepConfig | None = None, n_workers: int = 1, *,
              storage: str | None = None, resume: str | os.PathLike | None = None,
              n_trials: int | None = None, progress: bool = True) -> dict:
    """Run a sweep with ``n_workers`` processes on one storage until it holds ``n_trials``
    COMPLETE trials; write the run directory's config.toml, metrics.json and sweep.png.

    Parameters
    ----------
    cfg : SweepConfig, optional
        The search (not with ``resume``).
    n_workers : int
        1: trials run in this process; more: that many spawned worker processes (this one
        shows progress).
    storage : str, optional
        A PostgreSQL URL (or another SQLite file) instead of ``study.db`` in the run directory.
    resume : path, optional
        A sweep's run directory whose ``study.db`` to continue.
    n_trials : int, optional
        With ``resume``: a new total of COMPLETE trials.

    Returns
    -------
    dict
        The study's summary (:func:`study_summary`) with ``run_dir`` and ``workers``.

    Raises
    ------
    SweepError
        Every worker stopped before the study was complete (with their errors).
    """
    import optuna

    check_int("run_sweep", "n_workers", n_workers, 1, 1024)
    if (cfg is None) == (resume is None):
        raise ValueError("run_sweep needs a SweepConfig or a run directory to resume, not both")
    if resume is not None:
        run = Path(resume)
        if not (run / STUDY_DB).is_file():
            raise FileNotFoundError(f"{run}: not a sweep's run directory (no {STUDY_DB}; a sweep "
                                    "on PostgreSQL continues with `lsm sweep worker`)")
        url = storage_url(run)
        st, cfg, _ = _load_study(url, None)
        if n_trials is not None and n_trials != cfg.n_trials:
            cfg = cfg.replace(n_trials=n_trials)
            with _storage_errors(url):
                st.set_user_attr(_ATTR_CONFIG, cfg.to_dict())
        sweep = Sweep(cfg, url, st.study_name, run)
    else:
        if n_trials is not None:
            cfg = cfg.replace(n_trials=n_trials)
        sweep = create_study(cfg, storage, progress=progress)
    t0 = time.perf_counter()
    if n_workers == 1:
        r = run_worker(sweep.storage, sweep.study, progress=progress)
        workers = [{"index": 0, "pid": r["pid"], "ran": r["ran"], "error": None}]
    else:
        workers = _run_processes(sweep, n_workers, progress)
    elapsed = time.perf_counter() - t0
    _quiet_optuna()
    with _storage_errors(sweep.storage):
        study = optuna.load_study(study_name=sweep.study, storage=_open_storage(sweep.storage))
        summary = study_summary(study)
    if summary["complete"] < sweep.config.n_trials:
        errors = "; ".join(f"worker {w['index']} (pid {w['pid']}): {w['error']}"
                           for w in workers if w["error"])
        raise SweepError(f"study {sweep.study!r} has {summary['complete']} of "
                         f"{sweep.config.n_trials} trials complete: every worker stopped"
                         f"{' (' + errors + ')' if errors else ''}; continue with `lsm sweep run "
                         f"--resume {sweep.run_dir}` or `lsm sweep worker`")
    result = summary | {"run_dir": str(sweep.run_dir), "workers": workers,
                        "elapsed_s": round(elapsed, 2)}
    _write_sweep_run(sweep, study, result)
    return result


def _run_processes(sweep: Sweep, n_workers: int, progress: bool) -> list[dict]:
    """Spawn the workers; show the study's progress until they have all exited."""
    import multiprocessing

    import optuna

    from lsm.progress import progress_bar

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker_process, args=(sweep.storage, sweep.study, i, queue),
                         name=f"lsm-sweep-worker-{i}", daemon=True) for i in range(n_workers)]
    reports: dict[int, dict] = {}
    with _storage_errors(sweep.storage):
        study = optuna.load_study(study_name=sweep.study, storage=_open_storage(sweep.storage))
    try:
        for p in procs:
            p.start()
        with progress_bar(total=sweep.config.n_trials, desc=f"sweep {sweep.study}",
                          unit="trial", disable=not progress) as bar:
            while True:
                while not queue.empty():
                    i, pid, error, ran = queue.get()
                    reports[i] = {"index": i, "pid": pid, "ran": ran, "error": error}
                alive = [p for p in procs if p.is_alive()]
                with _storage_errors(sweep.storage):
                    complete = _counts(study)["complete"]
                bar.update(min(complete, sweep.config.n_trials) - bar.n)
                if not alive:
                    break
                time.sleep(0.5)
        for p in procs:
            p.join()
        while not queue.empty():
            i, pid, error, ran = queue.get()
            reports[i] = {"index": i, "pid": pid, "ran": ran, "error": error}
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
                if p.is_alive():
                    p.kill()
    return [reports.get(i, {"index": i, "pid": p.pid, "ran": None,
                            "error": f"exited with status {p.exitcode} without a report"})
            for i, p in enumerate(procs)]


# ---------------------------------------------------------------------- results
def study_summary(study) -> dict:
    """Counts by state, the best trial (number, value, params), the chance level and, per
    worker, the trials it completed."""
    from optuna.trial import TrialState

    cfg = SweepConfig.from_dict(study.user_attrs[_ATTR_CONFIG], source=study.study_name)
    counts = _counts(study)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    per_worker: dict[str, int] = {}
    for t in complete:
        key = f"{t.user_attrs.get('worker_host', '?')}:{t.user_attrs.get('worker_pid', '?')}"
        per_worker[key] = per_worker.get(key, 0) + 1
    data = study.user_attrs.get(_ATTR_DATA, {})
    return {"study": study.study_name, "dataset": cfg.dataset, "path": cfg.path,
            "n_trials": cfg.n_trials, **counts,
            "best": None if best is None else {"trial": best.number, "value": best.value,
                                               "params": best.params},
            "chance": data.get("chance"), "trials_per_worker": per_worker,
            "test_evaluations": len(study.user_attrs.get(_ATTR_TESTS, []))}


def sweep_plot(study, path: str | os.PathLike, chance: float | None = None,
               title: str = "") -> Path:
    """One PNG: validation accuracy per COMPLETE trial with the best-so-far line, then one slice
    panel per searched parameter (accuracy against its value; importance in the title when
    Optuna can estimate it)."""
    from matplotlib.figure import Figure
    from optuna.trial import TrialState

    from lsm.plots import save_figure

    trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                    key=lambda t: t.number)
    params = [p.name for p in SweepConfig.from_dict(study.user_attrs[_ATTR_CONFIG]).space]
    importance = {}
    if len(trials) >= 3:
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import optuna

            importance = optuna.importance.get_param_importances(study)
    n = 1 + len(params)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows))
    ax = fig.add_subplot(rows, cols, 1)
    x = [t.number for t in trials]
    y = [t.value for t in trials]
    ax.plot(x, y, "o", ms=4, label="validation accuracy")
    if y:
        ax.step(x, np.maximum.accumulate(y), where="post", color="C1", label="best so far")
    if chance is not None:
        ax.axhline(chance, color="0.5", ls="--", lw=1, label="chance")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or f"{study.study_name}: {len(trials)} trials", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    for k, name in enumerate(params, start=2):
        ax = fig.add_subplot(rows, cols, k)
        pts = [(t.params[name], t.value) for t in trials if name in t.params]
        if pts:
            vals = [p[0] for p in pts]
            if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vals):
                ax.scatter(vals, [p[1] for p in pts], s=12, c=[t.number for t in trials
                                                               if name in t.params],
                           cmap="viridis")
            else:
                labels = sorted(set(map(str, vals)))
                ax.scatter([labels.index(str(v)) for v in vals], [p[1] for p in pts], s=12)
                ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(name)
        label = f"{name}" + (f" (importance {importance[name]:.2f})" if name in importance
                             else "")
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _write_sweep_run(sweep: Sweep, study, result: dict) -> None:
    from lsm.experiments.common import write_run_files

    write_run_files(sweep.run_dir, {"sweep": sweep.config.to_dict(),
                                    "storage": display_url(sweep.storage),
                                    "study": sweep.study}, result)
    sweep_plot(study, sweep.run_dir / "sweep.png", result.get("chance"))


def rerun_trial(storage: str | os.PathLike, study: str | None, trial_number: int, *,
                path: str | os.PathLike | None = None, progress: bool = False) -> dict:
    """Run trial ``trial_number``'s configuration again on validation.

    The reservoir config is the one stored with the trial (user attribute ``lsm``); the result
    must equal the stored value, since the pipeline is deterministic.

    Returns
    -------
    dict
        ``trial``, ``stored``, ``rerun`` (validation accuracies), ``reproduced`` (equal),
        ``params``, ``lsm`` and ``elapsed_s``.
    """
    from optuna.trial import TrialState

    url = storage_url(storage)
    st, cfg, _ = _load_study(url, study)
    if path is not None:
        cfg = _resolve(cfg.replace(path=path), progress)
    check_int("rerun_trial", "trial_number", trial_number, 0)
    with _storage_errors(url):
        trials = {t.number: t for t in st.get_trials(deepcopy=False)}
    if trial_number not in trials:
        raise SweepError(f"study {st.study_name!r} has no trial {trial_number} (trials "
                         f"0..{max(trials) if trials else -1})")
    t = trials[trial_number]
    if t.state != TrialState.COMPLETE:
        raise SweepError(f"trial {trial_number} of study {st.study_name!r} is {t.state.name}, "
                         "not COMPLETE: it has no value to reproduce")
    lsm_cfg = LSMConfig.from_dict(t.user_attrs["lsm"], source=f"trial {trial_number}")
    if lsm_cfg != _trial_lsm_config(cfg, t.params):
        raise SweepError(f"trial {trial_number}'s stored reservoir config differs from the one "
                         f"its parameters give with this version's {cfg.dataset} preset")
    data = _train_data(cfg, progress)
    _check_data(st, data, cfg)
    t0 = time.perf_counter()
    value = float(_validation_score(cfg, lsm_cfg, data).val_accuracy)
    return {"study": st.study_name, "trial": trial_number, "stored": t.value, "rerun": value,
            "reproduced": value == t.value, "params": t.params, "lsm": lsm_cfg.to_dict(),
            "elapsed_s": round(time.perf_counter() - t0, 3)}


def _check_data(study, data: _TrainData, cfg: SweepConfig) -> None:
    known = study.user_attrs.get(_ATTR_DATA)
    if known is not None and known["fingerprint"] != data.fingerprint:
        raise SweepError(f"the training data at {cfg.path} differ from those study "
                         f"{study.study_name!r} was run on (digests differ)")


def evaluate_best(storage: str | os.PathLike, study: str | None = None,
                  runs_dir: str | os.PathLike = "runs", *, path: str | os.PathLike | None = None,
                  force: bool = False, progress: bool = True) -> dict:
    """The selected configuration, scored once on the test split.

    Re-runs the best trial (highest validation accuracy; the earliest on a tie) on validation
    and checks it reproduces; then encodes train and test with its reservoir, fits the readout
    on the training split (validation carved from it, as in the search) and scores the test
    split once (:func:`lsm.readout.train_and_test`). The evaluation is recorded in the study's
    user attributes before the test split is read.

    Writes a run directory ``<runs_dir>/sweep-best-<dataset>-<time>/`` with config.toml,
    metrics.json, sweep.png (history and slices) and the test confusion matrix.

    Raises
    ------
    SweepError
        No COMPLETE trial; the best does not reproduce; or the test split of this study was
        evaluated before and ``force`` is False (every further look at the test split, after
        more search or with another pick, is selection on the test set).
    """
    from lsm.data.registry import load_split
    from lsm.experiments.common import write_run_files
    from lsm.io import check_output_dir
    from lsm.plots import confusion_plot
    from lsm.readout import ReadoutConfig, train_and_test
    from lsm.runs import run_directory

    check_output_dir(runs_dir, "runs folder")
    url = storage_url(storage)
    st, cfg, _ = _load_study(url, study)
    with _storage_errors(url):
        previous = list(st.user_attrs.get(_ATTR_TESTS, []))
        summary = study_summary(st)
    if previous and not force:
        last = previous[-1]
        raise SweepError(
            f"the test split of study {st.study_name!r} was already evaluated "
            f"({len(previous)} time(s); last on {last.get('started')}, trial {last.get('trial')}, "
            f"test accuracy {last.get('test_accuracy')}): another look at the test split after "
            "more search or another pick is selection on the test set. Pass --force-test "
            "(force=True) to evaluate again; it is recorded")
    if summary["best"] is None:
        raise SweepError(f"study {st.study_name!r} has no COMPLETE trial yet")
    best = summary["best"]["trial"]
    check = rerun_trial(url, st.study_name, best, path=path, progress=progress)
    if not check["reproduced"]:
        raise SweepError(f"trial {best} gives validation accuracy {check['rerun']} now, "
                         f"{check['stored']} when it ran: the pipeline did not reproduce; the "
                         "test split was not read")
    if path is not None:
        cfg = _resolve(cfg.replace(path=path), progress)
    lsm_cfg = LSMConfig.from_dict(check["lsm"], source=f"trial {best}")
    data = _train_data(cfg, progress)
    # read before the look is recorded (a missing test split is no look); recorded before the
    # score exists (a crash after scoring still counts as a look)
    test = load_split(cfg.dataset, cfg.path, "test", n_bins=lsm_cfg.n_bins, progress=progress)
    entry = {"trial": best, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
             "host": socket.gethostname(), "complete_trials": summary["complete"],
             "test_accuracy": None, "forced": bool(previous)}
    with _storage_errors(url):
        st.set_user_attr(_ATTR_TESTS, previous + [entry])
    x_train = _encode(cfg, lsm_cfg, data.streams.events)
    x_test = _encode(cfg, lsm_cfg, test.events)
    res = train_and_test(x_train, data.streams.labels, x_test, test.labels,
                         ReadoutConfig(kind=cfg.readout), cfg.lsm_seed, data.streams.groups)
    entry["test_accuracy"] = res["test_accuracy"]
    with _storage_errors(url):
        st.set_user_attr(_ATTR_TESTS, previous + [entry])
    result = {"study": st.study_name, "storage": display_url(url), "dataset": cfg.dataset,
              "path": cfg.path, "trial": best, "params": check["params"], "lsm": check["lsm"],
              "features": cfg.features, "readout": cfg.readout,
              "val_accuracy": check["rerun"], "val_accuracy_stored": check["stored"],
              "val_accuracy_refit": res["val_accuracy"], "test_accuracy": res["test_accuracy"],
              "chance": res["chance"], "n_test": int(len(test.labels)),
              "complete_trials": summary["complete"], "n_trials": cfg.n_trials,
              "test_evaluation": len(previous) + 1, "forced": bool(previous)}
    with run_directory(runs_dir, f"sweep-best-{cfg.dataset}") as run:
        result["run_dir"] = str(run)
        write_run_files(run, {"sweep": cfg.to_dict(), "storage": display_url(url),
                              "study": st.study_name, "trial": best, "lsm": check["lsm"]},
                        result)
        sweep_plot(st, run / "sweep.png", summary["chance"],
                   f"{st.study_name}: best trial {best}, test accuracy "
                   f"{res['test_accuracy']:.3f}")
        confusion_plot(res["confusion"], res["classes"], run / "confusion_matrix.png",
                       f"trial {best}: test accuracy {res['test_accuracy']:.3f}")
    return result


# ---------------------------------------------------------------------- text
def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def format_sweep(r: dict) -> str:
    """A few lines: counts, the best trial and its parameters, the run directory."""
    b = r["best"]
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in (b["params"] if b else {}).items())
    lines = [f"study {r['study']} ({r['dataset']}): {r['complete']}/{r['n_trials']} trials "
             f"complete, {r['fail']} failed, {r['pruned']} pruned; "
             f"{len(r.get('trials_per_worker', {}))} worker process(es)"]
    if b:
        lines.append(f"best: trial {b['trial']}, validation accuracy {_pct(b['value'])} "
                     f"(chance {_pct(r.get('chance'))}); {params}")
    if "run_dir" in r:
        lines.append(f"run directory: {r['run_dir']}")
    lines.append("the test split was not read; `lsm sweep best` scores the chosen trial on it "
                 "once")
    return "\n".join(lines)


def format_worker(r: dict) -> str:
    return (f"worker pid {r['pid']}: ran {r['ran']} trial(s); study {r['study']} has "
            f"{r['complete']}/{r['n_trials']} complete")


def format_rerun(r: dict) -> str:
    verdict = "reproduced" if r["reproduced"] else "NOT reproduced"
    return (f"trial {r['trial']} of {r['study']}: validation accuracy {r['rerun']!r} now, "
            f"{r['stored']!r} stored: {verdict} ({r['elapsed_s']} s)")


def format_best(r: dict) -> str:
    return (f"study {r['study']}: best trial {r['trial']} (validation {_pct(r['val_accuracy'])}, "
            f"reproduced) -> test accuracy {_pct(r['test_accuracy'])} on {r['n_test']} samples "
            f"(chance {_pct(r['chance'])}); test evaluation #{r['test_evaluation']} of this "
            f"study\nrun directory: {r['run_dir']}")
