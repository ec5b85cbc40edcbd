"""Calibration files: what `lsm calibrate run` measured on one macro, the input of its digital
twin.

The lab writes a calibration (:mod:`calibration`) and the simulator reads it
(:mod:`lsm.crossbar.twin`, :class:`lsm.weights.TwinWeights`), so the format lives here, beside the
map format, and the import rule (calibration -> hw -> lsm) holds.

Layout (HDF5, version :data:`CALIBRATION_FORMAT_VERSION`)::

    /                 attrs: format = "rram-lsm calibration", format_version, created (ISO 8601
                      UTC), region (r0, r1, c0, c1), identity (JSON: instrument, resource,
                      protocol), settings (JSON: limits, pulses and options of the run, versions)
    /maps/g_us        (rows, cols) float64: each cell's mean conductance after forming, uS
    /maps/read_std_us (rows, cols) float64: each cell's read-noise standard deviation, uS
    /maps/stuck       (rows, cols) int8: 0 healthy, 1 stuck low (ignores pulses, near the
                      high-resistance state), 2 stuck high (ignores pulses, near the rail)
    /<procedure>      one group per procedure that ran (:data:`SECTIONS`): its fitted parameters
                      as attributes (numbers and text as themselves, tables and lists as JSON
                      text, named in the attribute ``json_keys``), ``measured_at``, and its raw
                      curves as datasets (drift times and ratios, ADC transfer, ...)

Reading checks everything before a twin can be built from it: a newer format version, a file
that is not HDF5 or is truncated, a map whose shape is not the region's, a NaN or infinite cell
or parameter, a stuck code outside 0-2, a procedure missing one of its required parameters: each
is a ValueError naming the file and the field. Nothing is guessed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsm.io import atomic_path, check_input_file

__all__ = ["Calibration", "write_calibration", "read_calibration", "CALIBRATION_FORMAT_VERSION",
           "CALIBRATION_FORMAT", "SECTIONS", "REQUIRED", "STUCK_OK", "STUCK_LOW", "STUCK_HIGH",
           "file_sha256"]

CALIBRATION_FORMAT = "rram-lsm calibration"
#: Version of the layout written by :func:`write_calibration`; newer files are refused.
CALIBRATION_FORMAT_VERSION = 1

#: Procedures a calibration can hold, in the order `lsm calibrate run` runs them.
SECTIONS = ("forming", "read_noise", "drift", "stuck", "adc", "write_verify")

#: Parameters each procedure's section must hold (numbers unless noted).
REQUIRED = {
    "forming": ("chosen", "families", "mean_us", "std_us", "n_cells", "pulse"),
    "read_noise": ("rel", "rel_se", "clip_sigma", "n_reads", "std_us_median"),
    "drift": ("nu", "nu_se", "nu_std", "t0_s", "n_cells"),
    "stuck": ("rate", "ci_low", "ci_high", "n_cells", "n_low", "n_high"),
    "adc": ("bits", "gain_codes_per_ua", "gain_se", "offset_codes", "saturation_ua", "v_read"),
    "write_verify": ("converged_fraction", "iterations", "tol_us", "n_cells", "mean_pulses"),
}
_TEXT = {("forming", "chosen")}
_TABLES = {("forming", "families"), ("forming", "pulse")}

STUCK_OK, STUCK_LOW, STUCK_HIGH = 0, 1, 2

_MAPS = ("g_us", "read_std_us", "stuck")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Calibration:
    """One macro's calibration: maps, fitted parameters with uncertainties, raw curves.

    Parameters
    ----------
    region : (r0, r1, c0, c1)
        The cells measured (half-open rows and columns of the array).
    g_us : ndarray (rows, cols)
        Each cell's mean conductance after forming, uS.
    identity : dict
        Instrument (``*IDN?`` fields), resource, protocol version.
    settings : dict
        Limits, pulses and options the run used, software versions.
    read_std_us, stuck : ndarray (rows, cols), optional
        Per-cell read-noise std (uS) and stuck code (:data:`STUCK_OK` / ``LOW`` / ``HIGH``).
    sections : dict
        Procedure name (one of :data:`SECTIONS`) -> its fitted parameters.
    curves : dict
        Procedure name -> {curve name -> array}: the measurements behind the fits.
    measured_at : dict
        Procedure name -> ISO 8601 time it ran.
    created : str
        ISO 8601 time the file was written.

    Attributes
    ----------
    path, sha256 : set by :func:`read_calibration` (the file and the hash of its bytes).
    """

    region: tuple
    g_us: np.ndarray
    identity: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    read_std_us: np.ndarray | None = None
    stuck: np.ndarray | None = None
    sections: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    measured_at: dict = field(default_factory=dict)
    created: str = ""
    path: Path | None = field(default=None, compare=False)
    sha256: str | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        r0, r1, c0, c1 = self.region
        return r1 - r0, c1 - c0

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "calibration"

    def section(self, name: str) -> dict:
        """A procedure's parameters; ValueError saying how to measure them when absent."""
        if name not in SECTIONS:
            raise ValueError(f"unknown calibration procedure {name!r}; known: {list(SECTIONS)}")
        if name not in self.sections:
            raise ValueError(f"{self.name}: no {name!r} calibration (measured: "
                             f"{sorted(self.sections) or 'none'}); run `lsm calibrate run "
                             f"--procedures {name.replace('_', '-')} ...`")
        return self.sections[name]

    def has(self, name: str) -> bool:
        return name in self.sections

    def validate(self) -> Calibration:
        """Check shapes, finiteness, codes and required parameters; ValueError naming the
        file and the field."""
        where = self.name
        region = tuple(int(v) for v in np.asarray(self.region).ravel())
        if len(region) != 4 or not (0 <= region[0] < region[1] and 0 <= region[2] < region[3]):
            raise ValueError(f"{where}: region must be r0, r1, c0, c1 with r0 < r1 and c0 < c1, "
                             f"got {self.region!r}")
        self.region = region
        for name in _MAPS:
            a = getattr(self, name)
            if a is None:
                if name == "g_us":
                    raise ValueError(f"{where}: no conductance map (maps/g_us)")
                continue
            a = np.asarray(a)
            if a.shape != self.shape:
                raise ValueError(f"{where}: maps/{name} has shape {a.shape}, the region "
                                 f"{list(region)} has {self.shape}")
            if name == "stuck":
                if a.dtype.kind not in "iu":
                    raise ValueError(f"{where}: maps/stuck must hold integer codes, got "
                                     f"{a.dtype}")
                bad = (a < STUCK_OK) | (a > STUCK_HIGH)
            else:
                if a.dtype.kind not in "iuf":
                    raise ValueError(f"{where}: maps/{name} must hold real numbers, got "
                                     f"{a.dtype}")
                bad = ~np.isfinite(a) | (a < 0)
            if bad.any():
                r, c = np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape)
                raise ValueError(f"{where}: maps/{name} has {int(bad.sum())} invalid cell(s) "
                                 f"(first [{r}, {c}] = {a[r, c]}); a calibration must hold a "
                                 "finite, non-negative value for every cell (stuck: 0, 1 or 2)")
            setattr(self, name, a.astype(np.int8) if name == "stuck" else
                    a.astype(np.float64))
        unknown = sorted(set(self.sections) - set(SECTIONS))
        if unknown:
            raise ValueError(f"{where}: unknown procedure section(s) {unknown}; known: "
                             f"{list(SECTIONS)}")
        for sec, params in self.sections.items():
            if not isinstance(params, dict):
                raise ValueError(f"{where}: section {sec!r} must be a table")
            missing = [k for k in REQUIRED[sec] if k not in params]
            if missing:
                raise ValueError(f"{where}: section {sec!r} lacks {missing}")
            for key in REQUIRED[sec]:
                _check_value(where, sec, key, params[key])
        for sec, curves in self.curves.items():
            for key, a in curves.items():
                a = np.asarray(a)
                if a.dtype.kind not in "biuf" or (a.dtype.kind == "f" and
                                                  not np.isfinite(a).all()):
                    raise ValueError(f"{where}: {sec}/{key} must hold finite numbers")
        return self


def _check_value(where: str, sec: str, key: str, value: Any) -> None:
    if (sec, key) in _TEXT:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: {sec}.{key} must be text, got {value!r}")
        return
    if (sec, key) in _TABLES:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: {sec}.{key} must be a table, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: {sec}.{key} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{where}: {sec}.{key} is {value} (not a finite number); the "
                         "procedure did not measure it, so no twin can use it")


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (for JSON and HDF5 attributes)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_calibration(path: str | os.PathLike, cal: Calibration) -> Path:
    """Write ``cal`` to ``path`` (HDF5) atomically, after :meth:`Calibration.validate`: a crash
    mid-write leaves the previous file (or none)."""
    import h5py

    cal.validate()
    path = Path(path)
    created = cal.created or _now_iso()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = CALIBRATION_FORMAT
            f.attrs["format_version"] = CALIBRATION_FORMAT_VERSION
            f.attrs["created"] = created
            f.attrs["region"] = np.asarray(cal.region, dtype=np.int64)
            f.attrs["identity"] = json.dumps(_plain(cal.identity), default=str)
            f.attrs["settings"] = json.dumps(_plain(cal.settings), default=str)
            maps = f.create_group("maps")
            for name in _MAPS:
                a = getattr(cal, name)
                if a is not None:
                    maps.create_dataset(name, data=a, compression="gzip")
            for sec, params in cal.sections.items():
                g = f.create_group(sec)
                json_keys = []
                for key, value in _plain(params).items():
                    if isinstance(value, (dict, list)) or value is None:
                        g.attrs[key] = json.dumps(value, default=str)
                        json_keys.append(key)
                    else:
                        g.attrs[key] = value
                g.attrs["json_keys"] = json.dumps(json_keys)
                g.attrs["measured_at"] = cal.measured_at.get(sec, created)
                for key, a in cal.curves.get(sec, {}).items():
                    g.create_dataset(key, data=np.asarray(a))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    return path


def read_calibration(path: str | os.PathLike) -> Calibration:
    """Read and check a calibration file (see the module docstring for what is refused).

    Returns
    -------
    Calibration
        With ``path`` and ``sha256`` (of the file's bytes) set.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        No such file, or a folder.
    ValueError
        Naming the file and the field: not a readable HDF5 file (truncated, corrupt), not a
        calibration, a newer format version, inconsistent shapes, non-finite cells or
        parameters, missing parameters.
    """
    import h5py

    p = check_input_file(path, "calibration file")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise ValueError(f"{p}: not a readable calibration file (not HDF5, truncated or "
                         f"corrupt: {exc})") from None
    try:
        with f:
            cal = _read_open(p, f, h5py)
    except (OSError, KeyError, RuntimeError) as exc:  # a corrupt chunk inside a valid header
        raise ValueError(f"{p}: the calibration file is damaged ({exc})") from None
    cal.path = p
    cal.sha256 = file_sha256(p)
    return cal.validate()


def _read_open(p: Path, f, h5py) -> Calibration:
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != CALIBRATION_FORMAT:
        raise ValueError(f"{p}: not an rram-lsm calibration file (format attribute {fmt!r})")
    version = np.asarray(f.attrs.get("format_version"))
    if version.shape != () or version.dtype.kind not in "iu" or int(version) < 1:
        raise ValueError(f"{p}: format_version must be a positive integer, got "
                         f"{_attr(f.attrs.get('format_version'))!r}")
    if int(version) > CALIBRATION_FORMAT_VERSION:
        raise ValueError(f"{p}: calibration format version {int(version)} is newer than this "
                         f"reader's ({CALIBRATION_FORMAT_VERSION}); read it with the version of "
                         "rram-lsm that wrote it, or a later one")
    maps = f.get("maps")
    if not isinstance(maps, h5py.Group) or not isinstance(maps.get("g_us"), h5py.Dataset):
        raise ValueError(f"{p}: no conductance map (maps/g_us)")
    arrays = {name: (np.asarray(maps[name][()]) if name in maps else None) for name in _MAPS}
    sections, curves, measured_at = {}, {}, {}
    for name, g in f.items():
        if name == "maps":
            continue
        if not isinstance(g, h5py.Group):
            raise ValueError(f"{p}: unexpected object {name!r} at the top level")
        json_keys = set(json.loads(_text(g.attrs.get("json_keys", "[]"))))
        params = {}
        for key, value in g.attrs.items():
            if key in ("json_keys", "measured_at"):
                continue
            if key in json_keys:
                try:
                    params[key] = json.loads(_text(value))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{p}: {name}.{key} is not valid JSON ({exc})") from None
            else:
                params[key] = _attr(value)
        sections[name] = params
        measured_at[name] = _text(g.attrs.get("measured_at", ""))
        curves[name] = {k: np.asarray(d[()]) for k, d in g.items()
                        if isinstance(d, h5py.Dataset)}
    try:
        identity = json.loads(_text(f.attrs.get("identity", "{}")))
        settings = json.loads(_text(f.attrs.get("settings", "{}")))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: identity or settings are not valid JSON ({exc})") from None
    return Calibration(region=tuple(np.asarray(f.attrs.get("region", ())).tolist()),
                       g_us=arrays["g_us"], read_std_us=arrays["read_std_us"],
                       stuck=arrays["stuck"], identity=identity, settings=settings,
                       sections=sections, curves=curves, measured_at=measured_at,
                       created=_text(f.attrs.get("created", "")), path=p)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
