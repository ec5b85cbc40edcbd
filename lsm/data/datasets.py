"""N-MNIST and N-TIDIGITS datasets on top of tonic's readers, for any number of files.

``nmnist(root, split)`` reads a folder in the original layout (``Train/<digit>/*.bin``); tonic's
own class insists on the full zip and 10,000 files, this one does not. ``ntidigits(path, split)``
reads the HDF5 file. Nothing is downloaded unless asked (:func:`download_nmnist`,
:func:`download_ntidigits`), and a download is verified against tonic's MD5 checksums.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsm.data.formats import BadSampleError, read_nmnist_bin, read_ntidigits_sample
from lsm.validation import check_choice

__all__ = ["SPLITS", "NMNISTFolder", "NTIDIGITSFile", "nmnist", "ntidigits", "download_nmnist",
           "download_ntidigits", "DownloadError", "TIDIGITS_CLASS_MAP", "ON_BAD_SAMPLE",
           "SPLIT_FOLDERS"]

ON_BAD_SAMPLE = ("error", "skip")
#: the splits every dataset has
SPLITS = ("train", "test")
SPLIT_FOLDERS = {"train": "Train", "test": "Test"}
#: tonic's N-TIDIGITS classes: 'o' (oh) is 0, 'z' (zero) is 10
TIDIGITS_CLASS_MAP = {"o": 0, "1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6, "7": 7, "8": 8,
                      "9": 9, "z": 10}


class DownloadError(RuntimeError):
    """A dataset could not be fetched or failed its checksum."""


def _bad_sample(on_bad_sample: str, skipped: list, item: str, msg: str) -> None:
    """Raise :class:`BadSampleError` with ``msg`` under ``"error"``; under ``"skip"``, list
    ``(item, msg)`` in ``skipped``."""
    if on_bad_sample == "error":
        raise BadSampleError(msg)
    skipped.append((item, msg))


@dataclass
class NMNISTFolder:
    """N-MNIST samples of one split found under ``root``.

    Attributes
    ----------
    paths : list of Path
    labels : ndarray of int64 (digit 0-9)
    skipped : list of (str, str)
        (item, reason) of what was left out under ``on_bad_sample="skip"``.
    """

    root: Path
    split: str
    paths: list
    labels: np.ndarray
    skipped: list = field(default_factory=list)
    sensor_size: tuple = (34, 34, 2)
    #: the sample ids, when known at listing (else made from the paths when first asked)
    _ids: list | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        """(events, label); raises :class:`BadSampleError` for a broken file."""
        return read_nmnist_bin(self.paths[i]), int(self.labels[i])

    @property
    def sample_ids(self) -> list[str]:
        """Each file's path relative to ``root`` (``Train/3/00012.bin``)."""
        if self._ids is None or len(self._ids) != len(self.paths):
            self._ids = [os.path.relpath(p, self.root) for p in self.paths]
        return self._ids

    def identity(self) -> dict:
        """What the feature cache keys on: a SHA-256 over every file's relative path, size and
        modification time (one line each), and their number."""
        h = hashlib.sha256()
        for sid, p in zip(self.sample_ids, self.paths, strict=True):
            st = os.stat(p)
            # surrogateescape: a file name that is not UTF-8 hashes as its own bytes
            h.update(f"{sid}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8",
                                                                        "surrogateescape"))
        return {"dataset": "nmnist", "split": self.split, "n_files": len(self.paths),
                "files_sha256": h.hexdigest(), "skipped": [s[0] for s in self.skipped]}


def nmnist(root: str | os.PathLike, split: str = "train", on_bad_sample: str = "error",
           digits=None) -> NMNISTFolder:
    """Find the N-MNIST files of ``split`` under ``root`` (``Train/<d>/*.bin``, ``Test/...``).

    Parameters
    ----------
    root : path
        Folder holding ``Train`` and/or ``Test`` (the extracted archives, or an offline twin).
    split : {"train", "test"}
    on_bad_sample : {"error", "skip"}
        What to do with a folder whose name is not a digit (an unknown label), or a ``.bin``
        that is not a readable file (a dangling symbolic link): raise
        :class:`BadSampleError`, or leave it out and list it in ``skipped``.
    digits : iterable of int, optional
        Keep only these classes.
    """
    check_choice("split", split, SPLITS)
    check_choice("on_bad_sample", on_bad_sample, ON_BAD_SAMPLE)
    root = Path(root)
    if root.is_file():
        raise NotADirectoryError(f"{root} is a file; N-MNIST is a folder holding Train/ and "
                                 "Test/ (an N-TIDIGITS .hdf5 file goes to --ntidigits)")
    base = root / SPLIT_FOLDERS[split]
    if not base.is_dir():
        raise FileNotFoundError(
            f"{base}: no {SPLIT_FOLDERS[split]} folder; expected the N-MNIST layout "
            f"{root}/{SPLIT_FOLDERS[split]}/<digit>/*.bin (download it with `lsm data download "
            f"--nmnist {root}`, or make an offline twin with `lsm data make-twin --nmnist "
            f"{root}`)"
        )
    paths, ids, labels, skipped = [], [], [], []
    keep = None if digits is None else {int(d) for d in digits}
    for sub in sorted(p for p in base.iterdir() if p.is_dir()):
        if not (sub.name.isdigit() and 0 <= int(sub.name) <= 9):
            msg = f"{sub}: unknown label {sub.name!r} (class folders must be named 0-9)"
            _bad_sample(on_bad_sample, skipped, str(sub), msg)
            continue
        label = int(sub.name)
        if keep is not None and label not in keep:
            continue
        if not os.access(sub, os.R_OK | os.X_OK):  # glob would silently find nothing in it
            _bad_sample(on_bad_sample, skipped, str(sub), f"{sub}: class folder not readable")
            continue
        # scandir: file types come with the listing, no stat per file (glob's "*.bin": no
        # hidden names)
        with os.scandir(sub) as it:
            entries = sorted((e for e in it if e.name.endswith(".bin")
                              and not e.name.startswith(".")), key=lambda e: e.name)
        for e in entries:
            f = sub / e.name
            rel = f"{SPLIT_FOLDERS[split]}/{sub.name}/{e.name}"
            if not e.is_file():  # a dangling symbolic link, a folder named *.bin
                what = "a dangling symbolic link" if f.is_symlink() and not f.exists() \
                    else "not a regular file"
                _bad_sample(on_bad_sample, skipped, rel, f"{f}: {what}")
                continue
            paths.append(f)
            ids.append(rel)
            labels.append(label)
    if not paths:
        raise FileNotFoundError(f"{base}: no .bin files in any <digit> folder")
    return NMNISTFolder(root, split, paths, np.asarray(labels, dtype=np.int64), skipped,
                        _ids=ids)


@dataclass
class NTIDIGITSFile:
    """N-TIDIGITS samples of one split of an HDF5 file.

    Labels: with ``labels="digit"`` (default) the spoken digit 0-9 ('o' and 'z' are both 0, the
    pairing the zero-shot task needs); with ``labels="class"`` tonic's 11 classes ('o' = 0,
    'z' = 10). Multi-digit utterances are kept only with ``single_digits=False`` and then carry
    label -1.
    """

    path: Path
    split: str
    sample_ids: list
    labels: np.ndarray
    speakers: list
    skipped: list = field(default_factory=list)
    sensor_size: tuple = (64, 1, 1)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        import h5py

        with h5py.File(self.path, "r") as f:
            ev = read_ntidigits_sample(f, self.split, self.sample_ids[i], str(self.path))
        return ev, int(self.labels[i])

    def iter_events(self, indices=None):
        """Yield (index, events or BadSampleError) with the file opened once."""
        import h5py

        with h5py.File(self.path, "r") as f:
            for i in range(len(self)) if indices is None else indices:
                try:
                    yield i, read_ntidigits_sample(f, self.split, self.sample_ids[i],
                                                   str(self.path))
                except BadSampleError as exc:
                    yield i, exc

    def identity(self) -> dict:
        st = self.path.stat()
        return {"dataset": "ntidigits", "path": str(self.path.resolve()), "size": st.st_size,
                "mtime_ns": st.st_mtime_ns, "split": self.split, "ids": self.sample_ids}


def ntidigits(path: str | os.PathLike, split: str = "train", single_digits: bool = True,
              labels: str = "digit", on_bad_sample: str = "error") -> NTIDIGITSFile:
    """Open the N-TIDIGITS HDF5 file and list the samples of ``split``.

    Raises
    ------
    FileNotFoundError
        No file.
    IsADirectoryError
        A folder.
    ValueError
        Not HDF5, or the file lacks the ``<split>_labels`` dataset or the ``_addresses`` /
        ``_timestamps`` groups (or holds them in another form).
    BadSampleError
        An unknown label, a sample id that is not UTF-8 or is listed twice (unless
        ``on_bad_sample="skip"``, which leaves it out, counts and names it).
    """
    import h5py

    check_choice("split", split, SPLITS)
    check_choice("labels", labels, ("digit", "class"))
    check_choice("on_bad_sample", on_bad_sample, ON_BAD_SAMPLE)
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; N-TIDIGITS is one .hdf5 file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such N-TIDIGITS file (download it with `lsm data "
                                f"download --ntidigits {path}`, or make an offline "
                                f"twin with `lsm data make-twin --ntidigits {path}`)")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        raw = _ntidigits_ids(f, split, path)
    ids, labs, speakers, skipped = [], [], [], []
    seen = set()
    for sid in raw:
        if isinstance(sid, bytes):  # not UTF-8: say so, with the bytes as stored
            msg = f"{path}: sample id {sid!r} in {split}_labels is not UTF-8 text"
            _bad_sample(on_bad_sample, skipped, repr(sid), msg)
            continue
        if sid in seen:
            msg = (f"{path}: sample {sid!r} is listed twice in {split}_labels (kept the first; "
                   "a sample is encoded once)")
            _bad_sample(on_bad_sample, skipped, sid, msg)
            continue
        seen.add(sid)
        digits = sid.split("-")[-1]
        if single_digits and len(digits) != 1:
            continue
        unknown = [ch for ch in digits if ch not in TIDIGITS_CLASS_MAP]
        if not digits or unknown:
            msg = f"{path}: sample {sid!r}: unknown label {digits!r}"
            _bad_sample(on_bad_sample, skipped, sid, msg)
            continue
        if len(digits) == 1:
            c = TIDIGITS_CLASS_MAP[digits]
            lab = c if labels == "class" else (0 if c == 10 else c)
        else:
            lab = -1
        ids.append(sid)
        labs.append(lab)
        speakers.append(sid.rsplit("-", 2)[0] if sid.count("-") >= 2 else sid.split("-")[0])
    return NTIDIGITSFile(path, split, ids, np.asarray(labs, dtype=np.int64), speakers, skipped)


def _ntidigits_ids(f, split: str, path: Path) -> list:
    """The sample ids of ``split``: str, or the raw bytes of an id that is not UTF-8.

    Raises
    ------
    ValueError
        The file lacks the split's datasets and groups, or holds them in the wrong form
        (labels a group, or not 1-D strings; addresses or timestamps a dataset).
    """
    import h5py

    names = (f"{split}_labels", f"{split}_addresses", f"{split}_timestamps")
    missing = [g for g in names if g not in f]
    if missing:
        raise ValueError(f"{path}: missing {missing}; an N-TIDIGITS file has "
                         f"<split>_labels, <split>_addresses and <split>_timestamps")
    labels = f[names[0]]
    if not isinstance(labels, h5py.Dataset):
        raise ValueError(f"{path}: {names[0]} is a {type(labels).__name__}; it must be a "
                         "dataset of sample ids (strings)")
    if labels.ndim != 1 or labels.dtype.kind not in "SUO":
        raise ValueError(f"{path}: {names[0]} must be a 1-D dataset of sample ids (strings), "
                         f"got shape {labels.shape} dtype {labels.dtype}")
    for g in names[1:]:
        if not isinstance(f[g], h5py.Group):
            raise ValueError(f"{path}: {g} is a {type(f[g]).__name__}; it must be a group with "
                             "one dataset per sample id")
    ids = []
    for x in labels[()]:
        if isinstance(x, bytes):
            try:
                x = x.decode("utf-8")
            except UnicodeDecodeError:
                x = bytes(x)  # kept as bytes: ntidigits() names it as a bad sample
        elif not isinstance(x, str):
            raise ValueError(f"{path}: {names[0]} holds {type(x).__name__} {x!r}, not a "
                             "string sample id")
        ids.append(x)
    return ids


# ---------------------------------------------------------------------- downloads
def _fetch(url: str, dest: Path, md5: str, timeout_s: float = 30.0) -> Path:

    made = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    try:
        return _fetch_into(url, dest, md5, timeout_s, digest)
    except BaseException:
        for folder in made:  # a failed download leaves no empty folders behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _fetch_into(url: str, dest: Path, md5: str, timeout_s: float, digest) -> Path:
    from lsm.io import atomic_path
    from lsm.progress import progress_bar

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, atomic_path(dest) as tmp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as fh, progress_bar(total=total, unit="B", unit_scale=True,
                                              desc=dest.name) as bar:
                while chunk := resp.read(1 << 20):
                    fh.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if digest.hexdigest() != md5:
                raise DownloadError(f"{url}: checksum mismatch (md5 {digest.hexdigest()}, "
                                    f"expected {md5}); the file was not kept")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        if isinstance(exc, DownloadError):
            raise
        raise DownloadError(
            f"cannot download {url} ({exc}). This machine looks offline: fetch the file on a "
            f"connected machine, place it at {dest}, or use an offline twin "
            "(`lsm data make-twin ...`)"
        ) from None
    return dest


def download_nmnist(root: str | os.PathLike, splits=SPLITS) -> Path:
    """Fetch and extract N-MNIST (tonic's URLs and MD5 checksums) into ``root``."""
    from tonic.datasets import NMNIST

    root = Path(root)
    for split in splits:
        url, name, md5 = ((NMNIST.train_url, NMNIST.train_filename, NMNIST.train_md5)
                          if split == "train" else
                          (NMNIST.test_url, NMNIST.test_filename, NMNIST.test_md5))
        archive = _fetch(url, root / name, md5)
        with zipfile.ZipFile(archive) as z:
            z.extractall(root)
    return root


def download_ntidigits(folder: str | os.PathLike) -> Path:
    """Fetch the N-TIDIGITS HDF5 file (tonic's URL and MD5) into ``folder``."""
    from tonic.datasets import NTIDIGITS18

    folder = Path(folder)
    return _fetch(NTIDIGITS18.base_url, folder / NTIDIGITS18.filename, NTIDIGITS18.file_md5)
