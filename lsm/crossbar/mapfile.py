"""Conductance-map files: the one format the lab writes and the simulator reads.

A map is a 2-D array of conductances in uS (``g_us``: the rows x columns read on an array, a
chip's or the emulator's) and the settings of the run that measured it (a JSON object:
instrument, region, repeats, read voltage...). Two containers, chosen by the suffix:

- ``.h5`` / ``.hdf5`` (any case): HDF5 with a dataset ``g_us`` (float32) and the attributes
  ``settings`` (JSON text) and ``format_version`` (integer);
- any other suffix: ``.npz`` with the arrays ``g_us`` (float32), ``settings`` (0-d string, JSON)
  and ``format_version`` (0-d integer).

``lsm hw read-map`` writes one (:func:`write_map`, also ``hw.export_map``);
:class:`lsm.weights.MeasuredWeights` reads one (:func:`read_map`). Files written before the
format had a version carry none and are read as version 1; a newer version than
:data:`MAP_FORMAT_VERSION` is refused, since its layout may mean something this reader does not
know.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lsm.io import MAX_ARRAY_BYTES, atomic_path, atomic_savez, check_input_file, load_npz
from lsm.validation import check_memory

__all__ = ["MAP_FORMAT_VERSION", "HDF5_SUFFIXES", "write_map", "read_map", "is_hdf5_path"]

#: Version of the layout written by :func:`write_map`; :func:`read_map` reads up to this one.
MAP_FORMAT_VERSION = 1

#: Suffixes (compared in lower case) that select the HDF5 container; any other is ``.npz``.
HDF5_SUFFIXES = (".h5", ".hdf5")


def is_hdf5_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an HDF5 map (by its suffix, in any case)."""
    return Path(path).suffix.lower() in HDF5_SUFFIXES


def write_map(path: str | os.PathLike, g_us: Any, settings: Mapping) -> Path:
    """Write a conductance map and the settings of its run, atomically.

    A crash mid-write leaves the previous file (or none), never a half-written one. Cells that
    could not be measured may be written as NaN (the measurement is kept), but
    :func:`read_map` refuses such a map.

    Parameters
    ----------
    path : str or Path
        ``.h5`` / ``.hdf5`` for HDF5, anything else for ``.npz`` (the name is kept as given).
    g_us : array_like of real numbers, 2-D
        Conductances, uS; stored as float32 (the instrument's resolution).
    settings : mapping
        The run's settings; stored as JSON (values JSON cannot hold are written as their
        ``str``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TypeError
        ``settings`` is not a mapping.
    ValueError
        ``g_us`` is not a 2-D array of real numbers.
    """
    g = np.asarray(g_us)
    if g.ndim != 2:
        raise ValueError(f"{path}: g_us must be 2-D (rows x columns), got shape {g.shape}")
    _check_dtype(path, g.dtype)
    if not isinstance(settings, Mapping):
        raise TypeError(f"{path}: settings must be a mapping, got {type(settings).__name__}")
    g32 = np.asarray(g, dtype=np.float32)
    text = json.dumps(dict(settings), default=str)
    path = Path(path)
    if is_hdf5_path(path):
        import h5py

        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("g_us", data=g32)
                f.attrs["settings"] = text
                f.attrs["format_version"] = MAP_FORMAT_VERSION
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        return path
    return atomic_savez(path, g_us=g32, settings=np.array(text),
                        format_version=np.array(MAP_FORMAT_VERSION))


def read_map(path: str | os.PathLike, what: str = "conductance map",
             max_bytes: int = MAX_ARRAY_BYTES) -> tuple[np.ndarray, dict]:
    """Read a conductance map written by :func:`write_map` (or by hand in the same layout).

    The declared size and dtype of ``g_us`` are checked before its data is read.

    Parameters
    ----------
    path : str or Path
        ``.h5`` / ``.hdf5`` for HDF5, anything else is read as ``.npz``.
    what : str
        What the file is, for the messages ("measured map", ...).
    max_bytes : int
        Memory budget of the map as float64, bytes.

    Returns
    -------
    g_us : ndarray of float64, 2-D
        Conductances, uS, every cell finite.
    settings : dict
        The run's settings (empty when the file has none).

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        No such file, or a folder.
    ValueError
        Naming the file: not an HDF5 / ``.npz`` file, a ``format_version`` newer than
        :data:`MAP_FORMAT_VERSION` (or not a positive integer), no ``g_us`` array, ``g_us`` not
        2-D or not real numbers, over the memory budget, a cell that is NaN or infinite, or
        ``settings`` that are not a JSON object.
    """
    p = check_input_file(path, what)
    if is_hdf5_path(p):
        import h5py

        try:
            f = h5py.File(p, "r")
        except OSError as exc:
            raise ValueError(f"{p}: not a readable HDF5 file ({exc})") from None
        with f:
            _check_version(p, f.attrs.get("format_version"))
            g = f.get("g_us")
            if not isinstance(g, h5py.Dataset):
                raise ValueError(f"{p}: no 'g_us' dataset")
            _check_layout(p, g.shape, g.dtype, max_bytes)
            data = np.asarray(g[()], dtype=np.float64)
            raw_settings = f.attrs.get("settings")
    else:
        arrays = load_npz(p, max_bytes=max_bytes, what=what)
        _check_version(p, arrays.get("format_version"))
        if "g_us" not in arrays:
            raise ValueError(f"{p}: no 'g_us' array (found {sorted(arrays)})")
        _check_layout(p, arrays["g_us"].shape, arrays["g_us"].dtype, max_bytes)
        data = np.asarray(arrays["g_us"], dtype=np.float64)
        raw_settings = arrays.get("settings")
    bad = ~np.isfinite(data)
    if bad.any():
        r, c = np.unravel_index(int(np.flatnonzero(bad)[0]), data.shape)
        raise ValueError(f"{p}: g_us has {int(bad.sum())} cell(s) that are not finite (first "
                         f"[{r}, {c}] = {data[r, c]}); a map must hold a conductance for "
                         "every cell")
    return data, _parse_settings(p, raw_settings)


def _check_dtype(path: Any, dtype: np.dtype) -> None:
    if dtype.kind not in "iuf":
        raise ValueError(f"{path}: g_us must hold real numbers (uS), got dtype {dtype}")


def _check_layout(path: Path, shape: tuple, dtype: np.dtype, max_bytes: int) -> None:
    _check_dtype(path, dtype)
    if len(shape) != 2:
        raise ValueError(f"{path}: g_us must be 2-D (rows x columns), got shape {shape}")
    check_memory(f"{path}: g_us of shape {shape}", int(np.prod(shape, dtype=object)) * 8,
                 max_bytes)


def _check_version(path: Path, value: Any) -> int:
    """The file's format version (1 when it has none); refuse a newer or a malformed one."""
    if value is None:
        return 1
    v = np.asarray(value)
    if v.shape != () or v.dtype.kind not in "iu" or int(v) < 1:
        raise ValueError(f"{path}: format_version must be a positive integer, got {value!r}")
    if int(v) > MAP_FORMAT_VERSION:
        raise ValueError(f"{path}: map format version {int(v)} is newer than this reader's "
                         f"({MAP_FORMAT_VERSION}); read it with the version of rram-lsm that "
                         "wrote it, or a later one")
    return int(v)


def _parse_settings(path: Path, raw: Any) -> dict:
    if raw is None:
        return {}
    raw = np.asarray(raw)
    text = raw.item() if raw.shape == () else None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise ValueError(f"{path}: settings must be JSON text, got {raw.dtype} {raw.shape}")
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: settings are not valid JSON ({exc})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: settings must be a JSON object, got "
                         f"{type(settings).__name__}")
    return settings
