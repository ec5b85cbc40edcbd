"""The two datasets' on-disk formats: reading (through tonic) with validation, and writing.

N-MNIST: one ``.bin`` file per sample in ``Train/<digit>/`` and ``Test/<digit>/``; each event is
40 bits, big-endian fields: x (8 bits), y (8 bits), polarity (1 bit), timestamp in us (23 bits).
tonic's :func:`tonic.io.read_mnist_file` decodes it (a record with y = 240 marks a timestamp
overflow of 2**13 us; our writer never needs one below 2**23 us).

N-TIDIGITS: one HDF5 file with, per split ``{train,test}``, a dataset ``<split>_labels`` of sample
ids (``"<speaker>-<take>-<digits>"``, bytes) and the groups ``<split>_addresses`` (cochlea channel
per event) and ``<split>_timestamps`` (seconds, float) with one dataset per sample id, as read by
:class:`tonic.datasets.NTIDIGITS18`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["BadSampleError", "NMNIST_SENSOR", "NMNIST_DTYPE", "NTIDIGITS_DTYPE", "read_nmnist_bin",
           "write_nmnist_bin", "read_ntidigits_sample", "write_ntidigits_hdf5",
           "NTIDIGITS_CHANNELS", "data_kind", "NTIDIGITS_MAX_TIME_S", "nmnist_error"]

NMNIST_SENSOR = (34, 34, 2)
NTIDIGITS_CHANNELS = 64
#: tonic's own N-MNIST event dtype
NMNIST_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
#: tonic's own N-TIDIGITS event dtype (t in us, x = cochlea channel)
NTIDIGITS_DTYPE = np.dtype([("t", int), ("x", int), ("p", int)])


class BadSampleError(ValueError):
    """A sample that cannot be used; the message names the file, the sample and the field."""


def nmnist_error(path, kind: str, *, size: int = 0, event: int = 0, value: int = 0,
                 previous: int = 0) -> str:
    """The message for an N-MNIST file refused for ``kind`` ("empty", "truncated",
    "no_events", "x", "y", "backwards"): one wording for the reference reader and the fused
    decoder (:mod:`lsm.data.fused`)."""
    w, h, _ = NMNIST_SENSOR
    if kind == "empty":
        return f"{path}: empty file (no events)"
    if kind == "truncated":
        return (f"{path}: truncated: {size} bytes is not a multiple of the 5-byte (40-bit) "
                "event")
    if kind == "no_events":
        return f"{path}: no events (only overflow markers)"
    if kind in ("x", "y"):
        return f"{path}: event {event}: {kind} = {value} is outside the {w} x {h} sensor"
    if kind == "backwards":
        return (f"{path}: event {event}: timestamp {value} us goes backwards (previous "
                f"{previous} us)")
    raise ValueError(f"unknown N-MNIST error kind {kind!r}")


def read_nmnist_bin(path: str | os.PathLike) -> np.ndarray:
    """Read one N-MNIST ``.bin`` file into a structured array (x, y, t, p).

    Raises
    ------
    BadSampleError
        Missing or unreadable (a dangling symbolic link, a folder), empty or truncated file
        (length not a multiple of 5 bytes), coordinates outside the 34 x 34 sensor, or
        timestamps that go backwards.
    """
    from tonic.io import read_mnist_file

    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise BadSampleError(f"{path}: not a regular file")
    except OSError as exc:  # a dangling symbolic link, a file removed or unreadable
        raise BadSampleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise BadSampleError(nmnist_error(path, "empty"))
    if size % 5:
        raise BadSampleError(nmnist_error(path, "truncated", size=size))
    try:
        ev = read_mnist_file(str(path), dtype=NMNIST_DTYPE)
    except OSError as exc:
        raise BadSampleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(ev) == 0:
        raise BadSampleError(nmnist_error(path, "no_events"))
    w, h, _ = NMNIST_SENSOR
    for field, n in (("x", w), ("y", h)):
        bad = (ev[field] < 0) | (ev[field] >= n)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise BadSampleError(nmnist_error(path, field, event=j, value=int(ev[field][j])))
    back = np.diff(ev["t"]) < 0
    if back.any():
        j = int(np.flatnonzero(back)[0]) + 1
        raise BadSampleError(nmnist_error(path, "backwards", event=j, value=int(ev["t"][j]),
                                          previous=int(ev["t"][j - 1])))
    return ev


def write_nmnist_bin(path: str | os.PathLike, events: np.ndarray) -> None:
    """Write events (fields x, y, t in us, p) as an N-MNIST ``.bin`` file, atomically."""
    from lsm.io import atomic_path

    x = np.asarray(events["x"], dtype=np.int64)
    y = np.asarray(events["y"], dtype=np.int64)
    t = np.asarray(events["t"], dtype=np.int64)
    p = np.asarray(events["p"], dtype=np.int64)
    if len(x) and (x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 255
                   or (y == 240).any()):
        raise ValueError("x and y must be in [0, 255] and y != 240 (the overflow marker)")
    if len(t) and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("timestamps must be in [0, 2**23) us")
    raw = np.empty((len(x), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = ((p & 1) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    with atomic_path(path) as tmp:
        raw.tofile(tmp)


#: Largest |timestamp| of an N-TIDIGITS event, s: microseconds below 2**53 are exact in float64
#: and far inside int64 (a timestamp of 1e16 s would overflow it and collapse the sample).
NTIDIGITS_MAX_TIME_S = 2.0**53 / 1e6


def _sample_dataset(h5, group: str, sample_id: str, what: str, where: str) -> np.ndarray:
    """The 1-D numeric array ``h5[group][sample_id]``, or BadSampleError naming ``where``."""
    import h5py

    try:
        node = h5[group][sample_id]
    except KeyError:
        raise BadSampleError(f"{where}: no {what} dataset {group}/{sample_id}") from None
    if not isinstance(node, h5py.Dataset):
        raise BadSampleError(f"{where}: {group}/{sample_id} is a {type(node).__name__}, not a "
                             f"dataset of {what}")
    if node.dtype.kind not in "biuf":
        raise BadSampleError(f"{where}: {what} must be real numbers, got dtype {node.dtype}")
    try:
        return np.asarray(node[()])
    except (OSError, ValueError, TypeError) as exc:  # a damaged chunk, a filter missing
        raise BadSampleError(f"{where}: {what} unreadable ({exc})") from None


def read_ntidigits_sample(h5, split: str, sample_id: str, source: str) -> np.ndarray:
    """Events (t in us, x = channel, p = 1) of one sample of an open N-TIDIGITS file.

    Addresses must be whole numbers in [0, 64) (integers, or floats holding whole numbers),
    timestamps real seconds within +-:data:`NTIDIGITS_MAX_TIME_S`, non-decreasing.

    Raises
    ------
    BadSampleError
        Naming ``source`` and the sample: missing datasets (or groups in their place),
        strings, complex numbers, mismatched lengths, NaN or fractional addresses, channels
        outside [0, 64), non-finite, overflowing or backward timestamps, or no events.
    """
    where = f"{source}: sample {sample_id!r}"
    x = _sample_dataset(h5, f"{split}_addresses", sample_id, "addresses", where)
    t = _sample_dataset(h5, f"{split}_timestamps", sample_id, "timestamps", where)
    if x.shape != t.shape or x.ndim != 1:
        raise BadSampleError(f"{where}: addresses {x.shape} and timestamps {t.shape} differ "
                             "(both must be 1-D, one entry per event)")
    if len(x) == 0:
        raise BadSampleError(f"{where}: no events")
    if x.dtype.kind == "b":
        raise BadSampleError(f"{where}: addresses must be integers, got dtype bool")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x) | (x != np.round(x))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise BadSampleError(f"{where}: event {j}: address {x[j].item()!r} is not an "
                                 "integer channel")
    bad = (x < 0) | (x >= NTIDIGITS_CHANNELS)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise BadSampleError(f"{where}: event {j}: channel {x[j].item()} is outside "
                             f"[0, {NTIDIGITS_CHANNELS})")
    t = t.astype(np.float64)
    bad = ~np.isfinite(t) | (np.abs(t) > NTIDIGITS_MAX_TIME_S)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise BadSampleError(f"{where}: event {j}: timestamp {t[j].item():g} s is not finite "
                             f"or beyond +-{NTIDIGITS_MAX_TIME_S:.3g} s")
    back = np.diff(t) < 0
    if back.any():
        j = int(np.flatnonzero(back)[0]) + 1
        raise BadSampleError(f"{where}: event {j}: timestamp {float(t[j]):.6f} s goes "
                             "backwards")
    ev = np.empty(len(x), dtype=NTIDIGITS_DTYPE)
    ev["t"] = np.round(t * 1e6).astype(np.int64)
    ev["x"] = x
    ev["p"] = 1
    return ev


def write_ntidigits_hdf5(path: str | os.PathLike, splits: dict, attrs: dict | None = None) -> None:
    """Write an N-TIDIGITS-layout HDF5 file atomically.

    ``splits`` maps "train"/"test" to a list of ``(sample_id, channels, timestamps_s)``.
    """
    import h5py

    from lsm.io import atomic_path

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            for split, samples in splits.items():
                ids = [s[0] for s in samples]
                if len(set(ids)) != len(ids):
                    raise ValueError(f"duplicate sample ids in split {split!r}")
                f.create_dataset(f"{split}_labels", data=np.array([i.encode() for i in ids]))
                ga = f.create_group(f"{split}_addresses")
                gt = f.create_group(f"{split}_timestamps")
                for sid, ch, ts in samples:
                    ga.create_dataset(sid, data=np.asarray(ch, dtype=np.int64))
                    gt.create_dataset(sid, data=np.asarray(ts, dtype=np.float64))


def data_kind(path: str | os.PathLike) -> str:
    """"offline twin" when ``path`` was written by this project's twin generators, else
    "real dataset" (what reports print beside their numbers)."""
    path = Path(path)
    if path.is_dir():
        return "offline twin" if (path / "lsm_twin.json").exists() else "real dataset"
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "offline twin" if "lsm_twin" in f.attrs else "real dataset"
    except OSError:
        return "unknown"
