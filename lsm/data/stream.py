"""Streaming a dataset through the reservoir in chunks: bounded memory, resumable.

A split is cut into chunks of ``chunk_size`` samples. Each chunk is read (the fused decoder of
:mod:`lsm.data.fused` when it knows the preprocessing, else tonic and the transforms), encoded and,
when a :class:`ChunkFolder` is given, saved atomically as ``chunk-000017.npz``. The folder's
``manifest.json`` holds the key of the encoding (the feature cache's key: dataset files,
preprocessing, LSM config and weights, feature kind) and the chunk size; a run that finds a folder
with the same key and chunk size continues after its last complete chunk, one with another key
starts over. Nothing but complete chunks is ever kept: a chunk killed halfway leaves a temporary
that the next run removes.

:func:`write_features_npz` assembles the chunks into one ``.npz``, feature rows copied chunk by
chunk into the archive: the working set is one chunk, whatever the dataset's size.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lsm.data.formats import BadSampleError
from lsm.io import atomic_path, atomic_write_text, load_npz

if TYPE_CHECKING:
    from lsm.energy.activity import Activity

__all__ = ["DEFAULT_CHUNK_SIZE", "Chunk", "ChunkFolder", "chunk_ranges", "write_features_npz",
           "first_bad_sample"]

#: Samples per chunk: a few MB of buffers (reused chunk to chunk), a fraction of a second.
DEFAULT_CHUNK_SIZE = 256
_MANIFEST = "manifest.json"
_VERSION = 1


@dataclass
class Chunk:
    """The features of one chunk of a split, and what it left out."""

    index: int
    features: np.ndarray
    labels: np.ndarray
    sample_ids: list
    skipped: list = field(default_factory=list)
    #: True when it was read back from a :class:`ChunkFolder` (a resumed run)
    resumed: bool = False
    #: what its inferences did (:class:`lsm.energy.Activity`), when asked for
    activity: Activity | None = None

    def arrays(self) -> dict:
        return {"features": self.features, "labels": self.labels,
                "sample_ids": np.array(self.sample_ids, dtype=str),
                "skipped": np.array(self.skipped, dtype=str).reshape(-1, 2),
                "index": np.array(self.index)}


def chunk_ranges(n: int, chunk_size: int) -> list[range]:
    """``range(n)`` cut into consecutive ranges of ``chunk_size`` (the last one shorter)."""
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) \
            or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return [range(lo, min(n, lo + chunk_size)) for lo in range(0, n, chunk_size)]


class ChunkFolder:
    """The complete chunks of one encoding, in ``folder``, for resuming.

    The folder is locked (``flock``) while this object lives: a second run writing the same
    chunks is refused rather than allowed to mix two encodings; the lock goes with the process.

    Parameters
    ----------
    folder : path
        Created when absent. A folder of another encoding (its manifest's key or chunk size
        differ) is emptied first; ``discarded`` then says how many chunks were dropped.
    key : str
        What the chunks are (see :func:`lsm.data.cache.cache_key`); each chunk file holds it
        too, and a chunk of another key is redone, never used.
    chunk_size : int
    n_samples : int

    Raises
    ------
    NotADirectoryError
        ``folder`` is a file, or a symbolic link.
    FileExistsError
        Another process holds the folder (the same output being written twice at once).
    """

    def __init__(self, folder: str | os.PathLike, key: str, chunk_size: int,
                 n_samples: int) -> None:
        self.folder = Path(folder)
        if self.folder.is_symlink() or (self.folder.exists() and not self.folder.is_dir()):
            raise NotADirectoryError(f"{self.folder}: exists and is not a folder (the chunks "
                                     "of an interrupted encoding go there); remove it")
        self.key = key
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_folder(self.folder)
        manifest = {"key": key, "chunk_size": int(chunk_size), "n_samples": int(n_samples),
                    "version": _VERSION}
        self.discarded = 0
        if self._read_manifest() != manifest:
            self.discarded = len(self._chunk_files())
            self._empty()
        for tmp in self.folder.glob(".*.tmp"):  # a chunk killed while being written (locked:
            with contextlib.suppress(OSError):  # no other writer can be at work)
                tmp.unlink()
        if self._read_manifest() != manifest:
            atomic_write_text(self.folder / _MANIFEST, json.dumps(manifest, indent=1) + "\n")

    def _read_manifest(self) -> dict | None:
        try:
            return json.loads((self.folder / _MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def _chunk_files(self) -> list[Path]:
        return sorted(self.folder.glob("chunk-*.npz"))

    def path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:06d}.npz"

    def complete(self) -> list[int]:
        """Indices of the chunks on disk."""
        out = []
        for p in self._chunk_files():
            with contextlib.suppress(ValueError):
                out.append(int(p.stem.split("-")[1]))
        return out

    def load(self, index: int) -> Chunk | None:
        """Chunk ``index``, or None when it is absent, cannot be read, or belongs to another
        encoding (it is then redone)."""
        p = self.path(index)
        if not p.is_file():
            return None
        try:
            a = load_npz(p, what="chunk")
            chunk = Chunk(index, a["features"], a["labels"], a["sample_ids"].tolist(),
                          [tuple(s) for s in a["skipped"].tolist()], resumed=True)
            if str(a["key"]) != self.key or int(a["index"]) != index \
                    or len(chunk.labels) != len(chunk.features):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return chunk

    def save(self, chunk: Chunk) -> Path:
        """Write ``chunk`` atomically (uncompressed: written once, read once), with the key."""
        with atomic_path(self.path(chunk.index)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, key=np.array(self.key), **chunk.arrays())
        return self.path(chunk.index)

    def _empty(self) -> None:
        for p in self.folder.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()

    def clear(self) -> None:
        """Remove the folder and everything in it, and let go of it."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.release()

    def release(self) -> None:
        """Let go of the folder's lock (done by :meth:`clear`, and at exit)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    @contextlib.contextmanager
    def kept_for_resume(self):
        """Around the work: on an error, the folder stays only when it holds complete chunks
        that a rerun can use (an interrupt, a full disk); it goes when it is empty, or when a
        broken sample stopped the run (the data must change, and with it the key)."""
        try:
            yield self
        except BaseException as exc:
            if isinstance(exc, BadSampleError) or not self.complete():
                self.clear()
            else:
                self.release()
            raise


def _lock_folder(folder: Path) -> int:
    """An exclusive ``flock`` on ``folder``'s descriptor (released when it is closed, or when
    the process dies); FileExistsError when another process holds it."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FileExistsError(f"{folder}: another run is writing these chunks (the same output "
                              "at once); wait for it to finish, or choose another output") \
            from None
    return fd


def _npy_header(shape: tuple, dtype: np.dtype) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        buf, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": tuple(shape)})
    return buf.getvalue()


def write_features_npz(path: str | os.PathLike, chunks: Iterator, n_rows: int, row_shape: tuple,
                       dtype, small: dict, trailer=None) -> Path:
    """Write an ``.npz`` whose ``features`` array (n_rows, *row_shape) is copied from
    ``chunks`` (an iterator of arrays, in order) into the archive one at a time, then the
    ``small`` arrays, then those ``trailer()`` returns (called after the rest is written, e.g.
    a checksum over it); atomically.

    The file is what :func:`numpy.savez_compressed` writes (deflated members), readable by
    :func:`numpy.load` and :func:`lsm.io.load_npz`.

    Raises
    ------
    ValueError
        The chunks do not add up to ``n_rows`` rows of ``row_shape``.
    """
    dtype = np.dtype(dtype)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED,
                             allowZip64=True) as zf:
            with zf.open("features.npy", "w", force_zip64=True) as fh:
                fh.write(_npy_header((n_rows, *row_shape), dtype))
                rows = 0
                for part in chunks:
                    part = np.ascontiguousarray(part, dtype=dtype)
                    if part.shape[1:] != tuple(row_shape):
                        raise ValueError(f"a chunk of features has rows {part.shape[1:]}, "
                                         f"expected {tuple(row_shape)}")
                    rows += len(part)
                    if rows > n_rows:
                        raise ValueError(f"the chunks hold more than {n_rows} rows")
                    fh.write(part.tobytes())
                if rows != n_rows:
                    raise ValueError(f"the chunks hold {rows} rows, expected {n_rows}")
            for name, arr in small.items():
                _write_member(zf, name, arr)
            for name, arr in (trailer() if trailer is not None else {}).items():
                _write_member(zf, name, arr)
    return Path(path)


def _write_member(zf: zipfile.ZipFile, name: str, arr) -> None:
    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


def first_bad_sample(errors: list, sample_ids: list, on_bad_sample: str) -> list:
    """The (sample id, message) pairs of ``errors`` ((chunk position, message)), or the first
    one raised as :class:`BadSampleError` under ``on_bad_sample="error"``."""
    if errors and on_bad_sample == "error":
        raise BadSampleError(errors[0][1])
    return [(sample_ids[i], msg) for i, msg in errors]
