"""Loader -> preprocessing -> event streams -> LSM features, with bad-sample policy and cache."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from lsm.data.cache import FeatureCache, as_cache, cache_key
from lsm.data.datasets import ON_BAD_SAMPLE, NMNISTFolder, NTIDIGITSFile
from lsm.data.formats import BadSampleError
from lsm.data.fused import (
    DECODERS,
    FusedStreams,
    Workspace,
    fused_plan,
    nmnist_streams,
    ntidigits_streams,
)
from lsm.data.stream import (
    DEFAULT_CHUNK_SIZE,
    Chunk,
    ChunkFolder,
    chunk_ranges,
    first_bad_sample,
)
from lsm.data.transforms import Preprocessing, preprocessing_error
from lsm.events import EventBatch
from lsm.features import DEFAULT_N_WINDOWS, check_features, event_features
from lsm.progress import progress_bar
from lsm.validation import check_choice

__all__ = ["StreamSet", "EncodedSet", "load_streams", "read_streams", "encode_dataset",
           "encode_chunks", "encoding_key", "choose_decoder", "check_not_empty"]


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


def _iter_raw(dataset, indices):
    if hasattr(dataset, "iter_events"):
        yield from dataset.iter_events(indices)
        return
    for i in indices:
        try:
            yield i, dataset[i][0]
        except BadSampleError as exc:
            yield i, exc


def _reference_streams(dataset, preprocessing: Preprocessing, indices) -> FusedStreams:
    """The reference path (tonic reader, transforms) for ``indices``, in the fused decoder's
    output form."""
    all_ids = dataset.sample_ids
    streams, errors = [], []
    for pos, (i, ev) in enumerate(_iter_raw(dataset, indices)):
        if not isinstance(ev, BadSampleError):
            try:
                streams.append(preprocessing(ev))
                continue
            except ValueError as exc:  # e.g. a span too long for the bins' integer arithmetic
                ev = BadSampleError(preprocessing_error(all_ids[i], str(exc)))
        errors.append((pos, str(ev)))
        streams.append((np.zeros(0, np.int32), np.zeros(0, np.int32)))
    counts = np.array([len(b) for b, _ in streams], dtype=np.int64)
    offsets = np.zeros(len(streams) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    def cat(k: int) -> np.ndarray:
        if not streams:
            return np.zeros(0, np.int32)
        return np.concatenate([st[k] for st in streams]).astype(np.int32, copy=False)

    return FusedStreams(offsets, cat(0), cat(1), errors)


def choose_decoder(dataset, preprocessing: Preprocessing, decoder: str = "auto") -> str:
    """"fused" or "reference": what :func:`read_streams` uses for ``dataset`` and
    ``preprocessing``. ``decoder="auto"`` picks the fused decoder when it knows both.

    Raises
    ------
    ValueError
        ``decoder="fused"`` for a preprocessing chain or a dataset it does not know.
    """
    check_choice("decoder", decoder, DECODERS)
    if decoder == "reference":
        return "reference"
    plan = fused_plan(preprocessing)
    ok = plan is not None and ((plan.dataset == "nmnist" and isinstance(dataset, NMNISTFolder))
                               or (plan.dataset == "ntidigits"
                                   and isinstance(dataset, NTIDIGITSFile)))
    if ok:
        return "fused"
    if decoder == "fused":
        raise ValueError(f"the fused decoder does not know this preprocessing for "
                         f"{type(dataset).__name__} ({preprocessing.describe()}); use "
                         "decoder='reference' (or 'auto')")
    return "reference"


def read_streams(dataset, preprocessing: Preprocessing, indices=None,
                 on_bad_sample: str = "error", decoder: str = "auto",
                 workspace: Workspace | None = None) -> StreamSet:
    """Samples ``indices`` (default all) of ``dataset`` as event streams.

    The fused decoder (:mod:`lsm.data.fused`) and the reference path (tonic's reader and the
    transforms) give the same events; ``decoder`` picks one (``"auto"``: fused when it knows
    the preprocessing). A broken sample raises :class:`BadSampleError` naming the file (under
    ``on_bad_sample="error"``) or is left out and listed in ``skipped``. ``workspace``: the
    fused decoder's buffers, reused across the chunks of one run.
    """
    check_choice("on_bad_sample", on_bad_sample, ON_BAD_SAMPLE)
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    how = choose_decoder(dataset, preprocessing, decoder)
    all_ids = dataset.sample_ids  # a property that may build the list: once
    ids = [all_ids[i] for i in indices]
    if how == "fused":
        plan = fused_plan(preprocessing)
        if plan.dataset == "nmnist":
            got = nmnist_streams([dataset.paths[i] for i in indices], plan, dataset.root,
                                 workspace)
        else:
            import h5py

            with h5py.File(dataset.path, "r") as h5:
                got = ntidigits_streams(h5, dataset.split, ids, plan, str(dataset.path))
    else:
        got = _reference_streams(dataset, preprocessing, indices)
    skipped = first_bad_sample(got.errors, ids, on_bad_sample)
    good = np.ones(len(indices), dtype=bool)
    good[[pos for pos, _ in got.errors]] = False
    offsets, bins, channels = got.keep(good)
    batch = EventBatch(offsets, bins, channels, preprocessing.n_bins, preprocessing.n_channels)
    labels = np.asarray(dataset.labels, dtype=np.int64)[indices][good]
    return StreamSet(batch, labels, [s for s, g in zip(ids, good, strict=True) if g], skipped)


def load_streams(dataset, preprocessing: Preprocessing, on_bad_sample: str = "error",
                 progress: bool = True, decoder: str = "auto",
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> StreamSet:
    """Read every sample, preprocess it into a ``(bins, channels)`` stream, and batch them
    (chunk by chunk, with a progress bar; see :func:`read_streams`).

    ``skipped`` lists the samples left out under ``on_bad_sample="skip"``, with the reasons
    found when the dataset was listed.
    """
    check_choice("on_bad_sample", on_bad_sample, ON_BAD_SAMPLE)
    parts, workspace = [], Workspace()
    with progress_bar(total=len(dataset), desc="read + preprocess", unit="sample",
                      disable=not progress, leave=False) as bar:
        for r in chunk_ranges(len(dataset), chunk_size):
            parts.append(read_streams(dataset, preprocessing, r, on_bad_sample, decoder,
                                      workspace))
            bar.update(len(r))
    skipped = list(getattr(dataset, "skipped", []))
    for part in parts:
        skipped.extend(part.skipped)
    events = EventBatch.concatenate([p.events for p in parts], preprocessing.n_bins,
                                    preprocessing.n_channels)
    labels = np.concatenate([p.labels for p in parts]) if parts else np.zeros(0, np.int64)
    return StreamSet(events, labels, [s for p in parts for s in p.sample_ids], skipped)


def check_not_empty(dataset) -> None:
    """ValueError when ``dataset`` lists no sample (e.g. an N-TIDIGITS split of multi-digit
    utterances only): nothing to encode, said before any work."""
    if len(dataset) == 0:
        where = getattr(dataset, "path", None) or getattr(dataset, "root", "the dataset")
        split = getattr(dataset, "split", None)
        what = f"the {split} split" if split else "it"
        raise ValueError(f"{where}: {what} has no samples to encode")


def encoding_key(dataset, preprocessing: Preprocessing, lsm, features: str, n_windows: int,
                 on_bad_sample: str) -> str:
    """The feature cache's key of an encoding: the dataset's files, the preprocessing, the LSM
    config, the weights' provenance and fingerprint, the feature kind (with its windows) and
    ``on_bad_sample``. ``n_windows`` is the checked count (1 unless "windows")."""
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
    return cache_key(dataset=dataset.identity(), preprocessing=preprocessing.describe(),
                     **parts, features=features, n_windows=n_windows,
                     on_bad_sample=on_bad_sample, version=1)


def encode_chunks(dataset, preprocessing: Preprocessing, lsm, features: str = "rates",
                  n_windows: int = DEFAULT_N_WINDOWS, on_bad_sample: str = "error",
                  chunk_size: int = DEFAULT_CHUNK_SIZE, folder: ChunkFolder | None = None,
                  progress: bool = True, decoder: str = "auto", n_samples: int | None = None,
                  activity: bool = False) -> Iterator[Chunk]:
    """Read and encode ``dataset`` (its first ``n_samples``, default all) chunk by chunk,
    yielding each :class:`Chunk` in order.

    The working set is one chunk's events and features. With a :class:`ChunkFolder`, each
    finished chunk is saved there first, and a chunk already there is read back instead of
    encoded (an interrupted run resumes from its last complete chunk). The progress bar counts
    samples, with their rate and the time left. ``lsm=None`` gives the features of the input
    events (:func:`lsm.features.event_features`). ``activity``: each chunk also carries what
    its inferences did (``LSM.encode(..., return_activity=True)``; not with a folder, whose
    chunks keep features only).
    """
    k = check_features(features, n_windows, preprocessing.n_bins)
    if activity and (lsm is None or folder is not None):
        raise ValueError("encode_chunks: activity needs an LSM and no chunk folder")
    n = len(dataset) if n_samples is None else min(int(n_samples), len(dataset))
    ranges = chunk_ranges(n, chunk_size)
    done = set(folder.complete()) if folder is not None else set()
    workspace = Workspace()
    # the bar starts at the samples of the chunks on disk: its rate and time left are this
    # run's own
    already = sum(len(r) for i, r in enumerate(ranges) if i in done)
    with progress_bar(total=n, initial=already, desc="read + encode",
                      unit="sample", disable=not progress, leave=False) as bar:
        for index, r in enumerate(ranges):
            chunk = folder.load(index) if index in done else None
            if chunk is None and index in done:  # damaged or foreign: redone, and counted
                bar.n -= len(r)
            if chunk is None:
                streams = read_streams(dataset, preprocessing, r, on_bad_sample, decoder,
                                       workspace)
                act = None
                if lsm is None:
                    feats = event_features(streams.events, features, k)
                elif activity:
                    feats, act = lsm.encode(streams.events, features=features, progress=False,
                                            n_windows=k, first_sample=r.start,
                                            return_activity=True)
                else:
                    feats = lsm.encode(streams.events, features=features, progress=False,
                                       n_windows=k, first_sample=r.start)
                chunk = Chunk(index, feats, streams.labels, streams.sample_ids,
                              streams.skipped, activity=act)
                if folder is not None:
                    folder.save(chunk)
                bar.update(len(r))
            yield chunk


def encode_dataset(dataset, preprocessing: Preprocessing, lsm, features: str = "rates",
                   cache: FeatureCache | str | None = None, on_bad_sample: str = "error",
                   progress: bool = True, n_windows: int = DEFAULT_N_WINDOWS,
                   decoder: str = "auto", chunk_size: int = DEFAULT_CHUNK_SIZE) -> EncodedSet:
    """Encode a dataset split with an LSM, through the feature cache when one is given.

    ``lsm=None`` gives the same features of the input events themselves
    (:func:`lsm.features.event_features`): the "no reservoir" baseline.

    The split is read and encoded in chunks of ``chunk_size`` samples (:func:`encode_chunks`);
    with a cache, finished chunks wait in ``<cache>/<key>.partial/`` until the entry is
    written, so that an interrupted encoding resumes where it stopped. The cache key
    (:func:`encoding_key`) covers the dataset's files, the preprocessing, the LSM config, the
    weights, the feature kind and ``on_bad_sample``, not the decoder nor the chunk size (they
    do not change the features). ``features`` and ``n_windows`` are those of
    :meth:`lsm.LSM.encode`.
    """
    k = check_features(features, n_windows, preprocessing.n_bins)
    check_choice("on_bad_sample", on_bad_sample, ON_BAD_SAMPLE)
    chunk_ranges(0, chunk_size)  # checks chunk_size
    check_not_empty(dataset)
    key = encoding_key(dataset, preprocessing, lsm, features, k, on_bad_sample)
    cache = as_cache(cache)
    if cache is not None:
        hit = cache.load(key, required=("features", "labels", "sample_ids", "skipped"))
        if hit is not None:
            skipped = [tuple(s) for s in hit["skipped"].tolist()] if hit["skipped"].size else []
            return EncodedSet(hit["features"], hit["labels"], hit["sample_ids"].tolist(),
                              skipped, True, key)
    folder = (ChunkFolder(cache.folder / f"{key}.partial", key, chunk_size, len(dataset))
              if cache is not None else None)
    if folder is None:
        chunks = list(encode_chunks(dataset, preprocessing, lsm, features, k, on_bad_sample,
                                    chunk_size, None, progress, decoder))
    else:
        try:
            with folder.kept_for_resume():
                chunks = list(encode_chunks(dataset, preprocessing, lsm, features, k,
                                            on_bad_sample, chunk_size, folder, progress,
                                            decoder))
        finally:
            folder.release()
    feats = (np.concatenate([c.features for c in chunks]) if chunks else
             np.zeros((0,), np.float32))
    labels = (np.concatenate([c.labels for c in chunks]) if chunks else
              np.zeros(0, np.int64))
    ids = [s for c in chunks for s in c.sample_ids]
    skipped = list(getattr(dataset, "skipped", [])) + [s for c in chunks for s in c.skipped]
    if cache is not None:
        cache.store(key, features=feats, labels=labels, sample_ids=np.array(ids, dtype=str),
                    skipped=np.array(skipped, dtype=str).reshape(-1, 2))
        folder.clear()
    return EncodedSet(feats, labels, ids, skipped, False, key)
