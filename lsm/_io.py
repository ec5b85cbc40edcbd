"""Atomic file output: write to a temporary name in the same folder, then rename.

A crash or Ctrl-C mid-write leaves the previous file (or nothing), never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["atomic_path", "atomic_write_text", "atomic_savez"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path``
    is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _atomic_write(path: str | os.PathLike, mode: str, write: Callable[[IO], None]) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic_write(path, "w", lambda fh: fh.write(text))


def atomic_savez(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """``numpy.savez_compressed`` to ``path`` atomically (the name is kept exactly as given)."""
    return _atomic_write(path, "wb", lambda fh: np.savez_compressed(fh, **arrays))
