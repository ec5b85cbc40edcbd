"""On-disk cache of encoded features.

The key is a SHA-256 over everything that determines the features: the dataset files' identity
(relative path, size and modification time of every file, or of the HDF5 file plus the selected
sample ids), every preprocessing parameter, the LSMConfig, the weight source's provenance and the
weights' own fingerprint, the feature kind and the bad-sample policy. Change any of them and the
key changes (tonic's disk cache cannot see a changed transform; this one does).

An entry is one ``.npz`` written atomically, holding its own key and a SHA-256 of its arrays; an
entry that cannot be read, whose key differs, whose checksum fails or that lacks an array is
treated as a miss, recomputed and overwritten, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from lsm.io import atomic_savez, check_output_dir, load_npz, remove_stale_temporaries

__all__ = ["cache_key", "FeatureCache", "as_cache"]


def _canonical(obj):
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def cache_key(**parts) -> str:
    """SHA-256 (hex) of the canonical JSON of ``parts``."""
    blob = json.dumps(_canonical(parts), sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def _begin_array(h, name: str, dtype, shape: tuple) -> None:
    h.update(name.encode())
    h.update(str(np.dtype(dtype)).encode())
    h.update(repr(tuple(shape)).encode())


def _arrays_digest(arrays: dict) -> str:
    """SHA-256 over the arrays in name order: name, dtype, shape, then the C-order bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        _begin_array(h, name, a.dtype, a.shape)
        h.update(a.tobytes())
    return h.hexdigest()


class FeatureCache:
    """A folder of cached encodings, one ``<key>.npz`` per entry.

    Temporaries that a killed writer left in the folder (``.<key>.npz.<random>.tmp``) are
    removed once they are older than ``stale_tmp_s``, when an entry is written or found corrupt.

    Raises
    ------
    NotADirectoryError, PermissionError
        ``folder`` is a file (or under one), or not writable: found when the cache is opened,
        before any work is done.
    """

    def __init__(self, folder: str | os.PathLike, stale_tmp_s: float = 3600.0) -> None:
        self.folder = check_output_dir(folder, "feature cache folder")
        self.stale_tmp_s = stale_tmp_s

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str, required: tuple = ()) -> dict | None:
        """The entry's arrays, or None on a miss: absent, unreadable, wrong key or checksum, or
        lacking one of the ``required`` arrays (a corrupt entry is recomputed and overwritten).

        Raises
        ------
        IsADirectoryError
            The entry's path is a folder: it could never be written, so this is said before the
            work rather than after it.
        ValueError
            The entry's path is a FIFO, socket or device (reading it could block forever).
        """
        p = self.path(key)
        if p.is_dir():
            raise IsADirectoryError(f"feature cache entry {p} is a directory; remove it")
        if not p.exists():
            return None
        if not stat.S_ISREG(p.stat().st_mode):  # a FIFO would block the read forever
            raise ValueError(f"feature cache entry {p} is not a regular file (a FIFO, socket "
                             "or device); remove it")
        try:
            arrays = load_npz(p, what="feature cache entry")
        except (OSError, ValueError) as exc:  # any unreadable entry is a miss
            return self._corrupt(p, f"unreadable ({exc})")
        stored_key = str(arrays.pop("__key__", ""))
        stored_digest = str(arrays.pop("__sha256__", ""))
        if stored_key != key or stored_digest != _arrays_digest(arrays):
            return self._corrupt(p, "key or checksum mismatch")
        missing = sorted(set(required) - set(arrays))
        if missing:
            return self._corrupt(p, f"no array {missing}")
        return arrays

    def _corrupt(self, p: Path, why: str) -> None:
        warnings.warn(f"feature cache entry {p} is corrupt ({why}); recomputing", stacklevel=3)
        remove_stale_temporaries(self.folder, self.stale_tmp_s)

    def store_parts(self, key: str, features, n_rows: int, row_shape: tuple, dtype,
                    **small: np.ndarray) -> Path:
        """Store an entry whose ``features`` (n_rows, *row_shape) come as an iterator of row
        blocks (chunks read back from disk), never all in memory; the ``small`` arrays sort
        after "features" (labels, sample_ids, skipped). Same file and checksum as
        :meth:`store` of the whole arrays."""
        from lsm.data.stream import write_features_npz

        if sorted(small)[0] <= "features":
            raise ValueError("the small arrays' names must sort after 'features'")
        remove_stale_temporaries(self.folder, self.stale_tmp_s)
        h = hashlib.sha256()
        _begin_array(h, "features", dtype, (n_rows, *row_shape))
        small = {name: np.ascontiguousarray(small[name]) for name in sorted(small)}

        def hashed():
            for part in features:
                part = np.ascontiguousarray(part, dtype=dtype)
                h.update(part.tobytes())
                yield part

        def trailer():
            for name, a in small.items():
                _begin_array(h, name, a.dtype, a.shape)
                h.update(a.tobytes())
            return {"__key__": np.array(key), "__sha256__": np.array(h.hexdigest())}

        return write_features_npz(self.path(key), hashed(), n_rows, row_shape, dtype, small,
                                  trailer=trailer)

    def store(self, key: str, **arrays: np.ndarray) -> Path:
        remove_stale_temporaries(self.folder, self.stale_tmp_s)
        digest = _arrays_digest(arrays)
        return atomic_savez(self.path(key), __key__=np.array(key), __sha256__=np.array(digest),
                            **arrays)


def as_cache(cache: FeatureCache | str | os.PathLike | None) -> FeatureCache | None:
    """A :class:`FeatureCache` from a folder name (checked now, before any work), or as given."""
    if cache is None or isinstance(cache, FeatureCache):
        return cache
    return FeatureCache(cache)
