"""Atomic file output: write to a temporary name in the same folder, then rename.

A crash or Ctrl-C mid-write leaves the previous file (or nothing), never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["atomic_path", "atomic_write_text", "atomic_savez", "read_toml_file",
           "MAX_ARRAY_BYTES", "load_npz", "check_input_file", "read_text_file", "check_output_file",
           "check_output_dir", "remove_stale_temporaries"]


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
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


#: Default memory budget for one array read from a user's file, bytes.
MAX_ARRAY_BYTES = 2 << 30


def _check_npy_header(fh, what: str, max_bytes: int) -> tuple[tuple, np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                       np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(fh)
    except (ValueError, EOFError, SyntaxError) as exc:
        raise ValueError(f"{what}: not a valid .npy array ({exc})") from None
    if dtype.hasobject:
        raise ValueError(f"{what}: object arrays are not accepted (dtype {dtype})")
    n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if n_bytes > max_bytes:
        raise ValueError(f"{what}: declares shape {shape} {dtype} = {n_bytes / 2**30:.1f} GiB, "
                         f"over the {max_bytes / 2**30:.1f} GiB budget")
    return shape, dtype


# ---------------------------------------------------------------------- checked paths
def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` if it is an existing file, else FileNotFoundError / IsADirectoryError naming it
    (and saying when it is a dangling symbolic link)."""
    path = Path(path)
    if not path.exists():
        dangling = " (a dangling symbolic link)" if path.is_symlink() else ""
        raise FileNotFoundError(f"{what} not found: {path}{dangling}")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a directory, not a file")
    return path


def read_text_file(path: str | os.PathLike, what: str = "file") -> str:
    """The UTF-8 text of a file; ValueError naming it when it is not UTF-8."""
    path = check_input_file(path, what)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start})") from None


def read_toml_file(path: str | os.PathLike, what: str = "TOML file") -> dict:
    """The TOML document of a file, as a dict; ValueError naming it when it is not UTF-8 or not
    TOML (FileNotFoundError / IsADirectoryError when it is missing or a folder)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib

    text = read_text_file(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None


def _check_creatable(path: Path, what: str) -> None:
    """The first existing ancestor of ``path`` must be a writable folder (the rest is made)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():
            raise NotADirectoryError(f"{what} {path}: {parent} is a dangling symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: folder {parent} is not writable")


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Check, before any work, that ``path`` can be written as a file.

    Missing parent folders are fine (the atomic writers make them); nothing is created here.

    Raises
    ------
    IsADirectoryError
        ``path`` is a folder.
    NotADirectoryError
        A parent is a file (or a dangling link).
    PermissionError
        The folder that would hold it is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{what} {path} is not writable")
    _check_creatable(path, what)
    return path


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Check, before any work, that ``path`` is (or can be made as) a writable folder.

    Raises
    ------
    NotADirectoryError
        ``path`` or a parent is a file.
    PermissionError
        Not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{what} {path} is not writable")
        return path
    _check_creatable(path, what)
    return path


def remove_stale_temporaries(folder: str | os.PathLike, max_age_s: float = 3600.0) -> list[Path]:
    """Delete the temporaries of :func:`atomic_path` (``.<name>.<random>.tmp``) in ``folder``
    older than ``max_age_s``: what a killed writer left. Younger ones may belong to a writer
    still at work and are kept. Returns the paths removed."""
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    for p in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime > max_age_s:
                p.unlink()
                removed.append(p)
    return removed


# ---------------------------------------------------------------------- checked .npz
def load_npz(path: str | os.PathLike, max_bytes: int = MAX_ARRAY_BYTES,
             what: str = ".npz file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, each member's header checked before its data is read.

    Declared shapes and dtypes are read from the members' ``.npy`` headers first: object
    arrays (pickles), a member that is not an ``.npy`` array, and declared sizes over
    ``max_bytes`` (one array, or all together: a 1 MB compressed file can declare gigabytes)
    are refused without allocating anything.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        No such file, or a folder.
    ValueError
        Not an .npz (a bare .npy, not a zip), a foreign or damaged member, an object dtype, or
        over the budget; the message names the file and the member.
    """
    import zipfile
    import zlib

    path = check_input_file(path, what)
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise ValueError(f"{path}: a single .npy array, not an .npz archive of named arrays "
                         "(save with numpy.savez)")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz file (not a zip archive)")
    out, total = {}, 0
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            for m in members:
                if not m.filename.endswith(".npy") or m.is_dir():
                    raise ValueError(f"{path}: member {m.filename!r} is not a .npy array; an "
                                     ".npz holds only arrays saved by numpy.savez")
            for m in members:
                key = m.filename[:-4]
                with zf.open(m) as fh:
                    shape, dtype = _check_npy_header(fh, f"{path}: array {key!r}", max_bytes)
                total += int(np.prod(shape, dtype=object)) * dtype.itemsize
                if total > max_bytes:
                    raise ValueError(f"{path}: its arrays declare {total / 2**30:.1f} GiB "
                                     f"together, over the {max_bytes / 2**30:.1f} GiB budget")
            for m in members:
                key = m.filename[:-4]
                try:
                    with zf.open(m) as fh:
                        out[key] = np.lib.format.read_array(fh, allow_pickle=False)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
                    raise ValueError(f"{path}: array {key!r} is damaged ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ValueError(f"{path}: damaged .npz file ({exc})") from None
    return out
