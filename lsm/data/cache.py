"""On-disk cache of encoded features.

The key is a SHA-256 over everything that determines the features: the dataset files' identity
(relative path, size and modification time of every file, or of the HDF5 file plus the selected
sample ids), every preprocessing parameter, the LSMConfig, the weight source's provenance and the
weights' own fingerprint, the feature kind and the bad-sample policy. Change any of them and the
key changes (tonic's disk cache cannot see a changed transform; this one does).

An entry is one ``.npz`` written atomically, holding its own key and a SHA-256 of its arrays; an
entry that cannot be read, whose key differs, or whose checksum fails is treated as a miss,
recomputed and overwritten, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from lsm._io import atomic_savez

__all__ = ["cache_key", "FeatureCache"]


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


def _arrays_digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class FeatureCache:
    """A folder of cached encodings, one ``<key>.npz`` per entry."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str) -> dict | None:
        """The entry's arrays, or None on a miss (absent, unreadable, wrong key or checksum)."""
        p = self.path(key)
        if not p.exists():
            return None
        try:
            with np.load(p, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is a miss
            warnings.warn(f"feature cache entry {p} is unreadable ({exc}); recomputing",
                          stacklevel=2)
            return None
        stored_key = str(arrays.pop("__key__", ""))
        stored_digest = str(arrays.pop("__sha256__", ""))
        if stored_key != key or stored_digest != _arrays_digest(arrays):
            warnings.warn(f"feature cache entry {p} is corrupt (key or checksum mismatch); "
                          "recomputing", stacklevel=2)
            return None
        return arrays

    def store(self, key: str, **arrays: np.ndarray) -> Path:
        digest = _arrays_digest(arrays)
        return atomic_savez(self.path(key), __key__=np.array(key), __sha256__=np.array(digest),
                            **arrays)
