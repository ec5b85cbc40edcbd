"""Loader -> preprocessing -> event streams -> LSM features, with bad-sample policy and cache."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lsm.data.cache import FeatureCache, as_cache, cache_key
from lsm.data.datasets import ON_BAD_SAMPLE
from lsm.data.formats import BadSampleError
from lsm.data.transforms import Preprocessing
from lsm.events import EventBatch
from lsm.features import DEFAULT_N_WINDOWS, check_features, event_features
from lsm.progress import progress_bar

__all__ = ["StreamSet", "EncodedSet", "load_streams", "encode_dataset"]


@dataclass
class StreamSet:
    """Preprocessed event streams of a dataset split, ready for the reservoir."""

    events: EventBatch
    labels: np.ndarray
    sample_ids: list
    skipped: list = field(default_factory=list)
    #: one group per sample (speakers), set by :func:`lsm.data.load_split`; None: independent
    groups: np.ndarray | None = None


@dataclass
class EncodedSet:
    """Reservoir features of a dataset split."""

    features: np.ndarray
    labels: np.ndarray
    sample_ids: list
    skipped: list
    cache_hit: bool
    key: str
    #: one group per sample (speakers), set by :func:`lsm.data.encode_split`; None: independent
    groups: np.ndarray | None = None
    #: the preprocessing that made the event streams (set by :func:`lsm.data.encode_split`)
    preprocessing: Preprocessing | None = None


def _iter_raw(dataset):
    if hasattr(dataset, "iter_events"):
        yield from dataset.iter_events()
        return
    for i in range(len(dataset)):
        try:
            yield i, dataset[i][0]
        except BadSampleError as exc:
            yield i, exc


def load_streams(dataset, preprocessing: Preprocessing, on_bad_sample: str = "error",
                 progress: bool = True) -> StreamSet:
    """Read every sample, preprocess it into a ``(bins, channels)`` stream, and batch them.

    With ``on_bad_sample="skip"`` a broken sample is left out, counted and reported in
    ``skipped`` (with the reasons found when the dataset was listed); with ``"error"`` the first
    one raises :class:`BadSampleError` naming the file and field.
    """
    if on_bad_sample not in ON_BAD_SAMPLE:
        raise ValueError(f"on_bad_sample must be one of {ON_BAD_SAMPLE}, got {on_bad_sample!r}")
    streams, labels, ids = [], [], []
    skipped = list(getattr(dataset, "skipped", []))
    all_ids = dataset.sample_ids
    for i, ev in progress_bar(_iter_raw(dataset), total=len(dataset), desc="read + preprocess",
                      unit="sample", disable=not progress, leave=False):
        if not isinstance(ev, BadSampleError):
            try:
                stream = preprocessing(ev)
            except ValueError as exc:  # e.g. a span too long for the bins' integer arithmetic
                ev = BadSampleError(f"sample {all_ids[i]}: preprocessing failed: {exc}")
        if isinstance(ev, BadSampleError):
            if on_bad_sample == "error":
                raise ev
            skipped.append((all_ids[i], str(ev)))
            continue
        streams.append(stream)
        labels.append(int(dataset.labels[i]))
        ids.append(all_ids[i])
    batch = EventBatch.from_streams(streams, preprocessing.n_bins, preprocessing.n_channels)
    return StreamSet(batch, np.asarray(labels, dtype=np.int64), ids, skipped)


def encode_dataset(dataset, preprocessing: Preprocessing, lsm, features: str = "rates",
                   cache: FeatureCache | str | None = None, on_bad_sample: str = "error",
                   progress: bool = True, n_windows: int = DEFAULT_N_WINDOWS) -> EncodedSet:
    """Encode a dataset split with an LSM, through the feature cache when one is given.

    ``lsm=None`` gives the same features of the input events themselves
    (:func:`lsm.features.event_features`): the "no reservoir" baseline.

    The cache key covers the dataset's files, the preprocessing, the LSM config, the weights'
    provenance and fingerprint, the feature kind (with its windows) and ``on_bad_sample``.
    ``features`` and ``n_windows`` are those of :meth:`lsm.LSM.encode`.
    """
    k = check_features(features, n_windows, preprocessing.n_bins)
    if lsm is None:
        parts = {"lsm": None}
    else:
        c = lsm.config
        if (c.n_inputs, c.n_bins) != (preprocessing.n_channels, preprocessing.n_bins):
            raise ValueError(
                f"the preprocessing makes {preprocessing.n_channels} channels x "
                f"{preprocessing.n_bins} bins, the LSM expects n_inputs={c.n_inputs}, "
                f"n_bins={c.n_bins}"
            )
        parts = {"lsm": c.to_dict(), "weights": lsm.provenance,
                 "weights_sha256": lsm.weight_set.fingerprint()}
    key = cache_key(dataset=dataset.identity(), preprocessing=preprocessing.describe(),
                    **parts, features=features, n_windows=k, on_bad_sample=on_bad_sample,
                    version=1)
    cache = as_cache(cache)
    if cache is not None:
        hit = cache.load(key, required=("features", "labels", "sample_ids", "skipped"))
        if hit is not None:
            skipped = [tuple(s) for s in hit["skipped"].tolist()] if hit["skipped"].size else []
            return EncodedSet(hit["features"], hit["labels"], hit["sample_ids"].tolist(),
                              skipped, True, key)
    streams = load_streams(dataset, preprocessing, on_bad_sample, progress)
    if lsm is None:
        feats = event_features(streams.events, features, k)
    else:
        feats = lsm.encode(streams.events, features=features, progress=progress, n_windows=k)
    if cache is not None:
        cache.store(key, features=feats, labels=streams.labels,
                    sample_ids=np.array(streams.sample_ids, dtype=str),
                    skipped=np.array(streams.skipped, dtype=str).reshape(-1, 2))
    return EncodedSet(feats, streams.labels, streams.sample_ids, streams.skipped, False, key)
