"""One registry of datasets: what each one needs to become reservoir features.

A :class:`DatasetSpec` holds, for one dataset, its loader, the paper's preprocessing, the paper's
encoder (:class:`~lsm.config.LSMConfig` preset), its download function and the attribute that
groups its samples (speakers for N-TIDIGITS: a speaker never straddles train and validation).
:func:`encode_split` and :func:`load_split` turn (dataset name, path, split, LSM, cache) into
features or event streams, labels and groups; every job (``lsm train``, ``lsm zeroshot``,
``lsm encode``, ``lsm bench train-cost``, the demo) goes through them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsm.config import LSMConfig
from lsm.data.datasets import download_nmnist, download_ntidigits, nmnist, ntidigits
from lsm.data.pipeline import EncodedSet, StreamSet, encode_dataset, load_streams
from lsm.data.transforms import Preprocessing, nmnist_preprocessing, ntidigits_preprocessing
from lsm.features import DEFAULT_N_WINDOWS

__all__ = ["DatasetSpec", "DATASETS", "DATASET_NAMES", "dataset_spec", "open_split",
           "encode_split", "load_split", "sample_groups"]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything a job needs to know about one dataset.

    Attributes
    ----------
    name : str
        Registry key and command-line option (``--nmnist``, ``--ntidigits``).
    title : str
        Printed name.
    modality : {"vision", "audio"}
        Its side of the zero-shot protocol.
    path_kind : {"folder", "file"}
        What a path to it names: the N-MNIST folder (``Train/``, ``Test/``) or the N-TIDIGITS
        ``.hdf5`` file.
    open : callable
        ``open(path, split, on_bad_sample=...)``: the dataset split (tonic-readable samples).
    preprocessing : callable
        ``preprocessing(n_bins=...)``: the paper's :class:`~lsm.data.Preprocessing`.
    lsm_config : callable
        ``lsm_config(**overrides)``: the paper's encoder for it.
    download : callable
        ``download(path)``: fetch the real dataset (checksummed) and return its path.
    group_attribute : str or None
        Attribute of the opened split holding one group per sample (``"speakers"``), or None
        when every sample is its own group.
    """

    name: str
    title: str
    modality: str
    path_kind: str
    open: Callable
    preprocessing: Callable[..., Preprocessing]
    lsm_config: Callable[..., LSMConfig]
    download: Callable
    group_attribute: str | None = None

    def path_help(self) -> str:
        return ("N-MNIST folder (Train/, Test/)" if self.path_kind == "folder"
                else f"{self.title} .hdf5 file")


def _download_ntidigits(path: str | os.PathLike) -> Path:
    """Download into the folder of ``path`` (a file path) or into ``path`` (a folder); a file
    path names the result: the downloaded file is renamed to it."""
    p = Path(path)
    got = download_ntidigits(p.parent if p.suffix else p)
    if p.suffix and got != p:
        got.replace(p)
        return p
    return got


DATASETS: dict[str, DatasetSpec] = {
    "nmnist": DatasetSpec("nmnist", "N-MNIST", "vision", "folder", nmnist, nmnist_preprocessing,
                          LSMConfig.nmnist, download_nmnist),
    "ntidigits": DatasetSpec("ntidigits", "N-TIDIGITS", "audio", "file", ntidigits,
                             ntidigits_preprocessing, LSMConfig.ntidigits, _download_ntidigits,
                             group_attribute="speakers"),
}

#: the registered dataset names, in a stable order
DATASET_NAMES = tuple(DATASETS)


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name``.

    Raises
    ------
    ValueError
        An unknown name, listing the known ones.
    """
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}") \
            from None


def open_split(name: str, path: str | os.PathLike, split: str = "train",
               on_bad_sample: str = "error"):
    """Open one split of a registered dataset (see :attr:`DatasetSpec.open`)."""
    return dataset_spec(name).open(path, split, on_bad_sample=on_bad_sample)


def sample_groups(name: str, dataset, sample_ids) -> np.ndarray | None:
    """The group of each of ``sample_ids`` (speakers for N-TIDIGITS), looked up by sample id in
    the opened ``dataset``; None for a dataset whose samples are independent."""
    attribute = dataset_spec(name).group_attribute
    if attribute is None:
        return None
    group_of = dict(zip(dataset.sample_ids, getattr(dataset, attribute), strict=True))
    return np.array([group_of[s] for s in sample_ids])


def encode_split(name: str, path: str | os.PathLike, split: str, lsm, *, features: str = "rates",
                 cache=None, on_bad_sample: str = "error", progress: bool = True,
                 n_windows: int = DEFAULT_N_WINDOWS, n_bins: int | None = None) -> EncodedSet:
    """Dataset split -> the paper's preprocessing (with the LSM's number of bins) -> LSM
    features, through the feature cache when one is given.

    ``lsm=None``: the same features of the preprocessed input events, no reservoir (the
    baseline; ``n_bins`` then sets the preprocessing's bins, default the paper's encoder's).

    Returns
    -------
    EncodedSet
        ``features``, ``labels``, ``sample_ids``, ``groups`` (None unless the dataset groups
        its samples), ``skipped`` samples, ``cache_hit`` and the cache ``key``.
    """
    spec = dataset_spec(name)
    ds = spec.open(path, split, on_bad_sample=on_bad_sample)
    if lsm is not None:
        n_bins = lsm.config.n_bins
    pre = spec.preprocessing() if n_bins is None else spec.preprocessing(n_bins=n_bins)
    enc = encode_dataset(ds, pre, lsm, features=features, cache=cache,
                         on_bad_sample=on_bad_sample, progress=progress, n_windows=n_windows)
    enc.groups = sample_groups(name, ds, enc.sample_ids)
    enc.preprocessing = pre
    return enc


def load_split(name: str, path: str | os.PathLike, split: str = "train", *,
               n_bins: int | None = None, on_bad_sample: str = "error",
               progress: bool = True) -> StreamSet:
    """Dataset split -> the paper's preprocessing -> event streams (no reservoir), with
    ``groups`` as in :func:`encode_split`."""
    spec = dataset_spec(name)
    ds = spec.open(path, split, on_bad_sample=on_bad_sample)
    pre = spec.preprocessing() if n_bins is None else spec.preprocessing(n_bins=n_bins)
    streams = load_streams(ds, pre, on_bad_sample, progress)
    streams.groups = sample_groups(name, ds, streams.sample_ids)
    return streams
