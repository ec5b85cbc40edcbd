"""``lsm encode``: events (an ``.npz`` of a raster or event arrays, or a dataset split) ->
reservoir features in an ``.npz``, written atomically with the config and the weights'
provenance."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lsm.config import LSMConfig
from lsm.features import DEFAULT_N_WINDOWS, check_features

__all__ = ["read_event_file", "encode_file", "encode_dataset_file", "stream_to_file"]


def read_event_file(path: str | os.PathLike, cfg: LSMConfig):
    """Events or a raster from an ``.npz``: ``raster`` (n_samples, n_bins, n_inputs) or
    ``offsets``/``bins``/``channels``, and optional ``labels`` (one per sample). Every member's
    declared shape and dtype is checked before it is read (:func:`lsm.io.load_npz`).

    Returns
    -------
    events : EventBatch
    labels : ndarray of int64 or None

    Raises
    ------
    ValueError
        Naming the file; when the inputs fit the other preset's encoder, saying so.
    """
    from lsm.events import EventBatch
    from lsm.io import load_npz
    from lsm.validation import check_labels

    path = Path(path)
    data = load_npz(path, what="input file")
    keys = set(data)
    try:
        if "raster" in keys:
            raster = data["raster"]
            if raster.ndim != 3 or raster.shape[1:] != (cfg.n_bins, cfg.n_inputs):
                raise ValueError(
                    f"raster has shape {raster.shape}, the config expects (n_samples, "
                    f"n_bins={cfg.n_bins}, n_inputs={cfg.n_inputs})"
                )
            events = EventBatch.from_raster(raster)
        elif {"offsets", "bins", "channels"} <= keys:
            events = EventBatch(data["offsets"], data["bins"], data["channels"], cfg.n_bins,
                                cfg.n_inputs)
        else:
            raise ValueError(
                f"expected an array 'raster' (n_samples, n_bins, n_inputs) or the arrays "
                f"'offsets', 'bins', 'channels'; found {sorted(keys)}"
            )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}{_preset_hint(data, cfg)}") from None
    labels = check_labels(data["labels"], len(events), str(path)) if "labels" in keys else None
    return events, labels


def _preset_hint(data: dict, cfg: LSMConfig) -> str:
    """When the inputs do not fit the config but fit another preset's shape, say which."""
    from lsm.data.registry import DATASETS

    exact = "raster" in data
    if exact and data["raster"].ndim == 3:
        n_bins, n_inputs = data["raster"].shape[1:]
    elif not exact and "bins" in data and "channels" in data and data["bins"].size and \
            data["bins"].dtype.kind in "iu" and data["channels"].dtype.kind in "iu":
        n_bins, n_inputs = int(data["bins"].max()) + 1, int(data["channels"].max()) + 1
    else:
        return ""
    for name, spec in DATASETS.items():
        preset = spec.lsm_config()
        fits = ((n_bins, n_inputs) == (preset.n_bins, preset.n_inputs) if exact else
                n_bins <= preset.n_bins and n_inputs <= preset.n_inputs)
        if fits and (preset.n_bins, preset.n_inputs) != (cfg.n_bins, cfg.n_inputs):
            return (f" (these inputs fit the {name} encoder, {preset.n_bins} bins x "
                    f"{preset.n_inputs} channels: try --preset {name})")
    return ""


def encode_file(input_path, out, cfg: LSMConfig, features: str = "rates",
                backend: str = "numba", progress: bool = True, weights: str = "gaussian",
                n_windows: int = DEFAULT_N_WINDOWS) -> dict:
    """Encode the events of an ``.npz`` (:func:`read_event_file`) into ``out``: ``features``,
    ``config_toml``, ``provenance_json`` and, when the input had them, ``labels``."""
    from lsm.experiments.common import make_weights
    from lsm.io import atomic_savez, check_output_file
    from lsm.reservoir import LSM

    check_output_file(out, "--out")
    check_features(features, n_windows, cfg.n_bins)
    if Path(out).resolve() == Path(input_path).resolve():
        raise ValueError(f"--out {out} is the input file: choose another name")
    events, labels = read_event_file(input_path, cfg)
    lsm = LSM(cfg, backend=backend, weights=make_weights(weights))
    feats = lsm.encode(events, features=features, progress=progress, n_windows=n_windows)
    arrays = {"features": feats, "config_toml": np.array(cfg.to_toml()),
              "features_json": np.array(json.dumps(_features_record(features, n_windows))),
              "provenance_json": np.array(json.dumps(lsm.provenance))}
    if labels is not None:
        arrays["labels"] = labels
    atomic_savez(out, **arrays)
    return {"out": str(out), "shape": list(feats.shape), "dtype": str(feats.dtype),
            "samples": len(events), "events": int(events.n_events),
            "weights": lsm.provenance["source"]}


def encode_dataset_file(dataset: str, path, split: str, out, cfg: LSMConfig,
                        features: str = "rates", backend: str = "numba", cache=None,
                        on_bad_sample: str = "error", download: bool = False,
                        progress: bool = True, weights: str = "gaussian",
                        n_windows: int = DEFAULT_N_WINDOWS, chunk_size: int | None = None,
                        decoder: str = "auto") -> dict:
    """Encode a dataset split into ``out``, streaming: ``features``, ``labels``,
    ``sample_ids``, the config, the weights' provenance and the preprocessing.

    The split is read and encoded ``chunk_size`` samples at a time
    (:func:`lsm.data.pipeline.encode_chunks`); each finished chunk is saved in
    ``<out>.partial/``, and ``out`` is assembled from them at the end, one chunk in memory at a
    time: the working set does not grow with the dataset. An interrupted run leaves its complete
    chunks there; the same command resumes after the last one (another config or dataset
    starts over). With a feature ``cache``, a hit is copied out and a miss stored there too.
    With ``download``, a missing dataset is fetched first (checksummed). ``weights``: a name of
    :data:`lsm.experiments.common.WEIGHT_SOURCES`.

    Returns
    -------
    dict
        ``out``, ``shape``, ``samples``, ``dataset``, ``split``, ``cache_hit``, ``skipped``,
        ``chunks``, ``resumed_chunks`` (read back from an interrupted run) and
        ``samples_per_s`` (of this run's own reading and encoding).
    """
    from lsm.data.cache import as_cache
    from lsm.data.pipeline import encoding_key
    from lsm.data.registry import dataset_spec
    from lsm.data.stream import DEFAULT_CHUNK_SIZE, chunk_ranges
    from lsm.experiments.common import make_weights
    from lsm.io import atomic_savez, check_output_file
    from lsm.reservoir import LSM

    # every path is checked before the work: a bad out is not found after the encoding
    check_output_file(out, "--out")
    k = check_features(features, n_windows, cfg.n_bins)
    chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    chunk_ranges(0, chunk_size)
    spec = dataset_spec(dataset)

    if download and not _present(spec, Path(path), split):
        path = spec.download(path)
    if Path(out).resolve() == Path(path).resolve():
        raise ValueError(f"--out {out} is the dataset itself: choose another name")
    cache = as_cache(cache)
    lsm = LSM(cfg, backend=backend, weights=make_weights(weights))
    ds = spec.open(path, split, on_bad_sample=on_bad_sample)
    pre = spec.preprocessing(n_bins=cfg.n_bins)
    key = encoding_key(ds, pre, lsm, features, k, on_bad_sample)
    meta = {"features_json": np.array(json.dumps(_features_record(features, n_windows))),
            "config_toml": np.array(cfg.to_toml()),
            "provenance_json": np.array(json.dumps(lsm.provenance)),
            "preprocessing_json": np.array(json.dumps(pre.describe(), default=str))}
    result = {"out": str(out), "dataset": dataset, "split": split, "cache_hit": False}
    hit = cache.load(key, required=("features", "labels", "sample_ids", "skipped")) \
        if cache is not None else None
    if hit is not None:
        atomic_savez(out, features=hit["features"], labels=hit["labels"],
                     sample_ids=hit["sample_ids"], **meta)
        skipped = [tuple(s) for s in hit["skipped"].tolist()]
        return {**result, "shape": list(hit["features"].shape), "samples": len(hit["labels"]),
                "cache_hit": True, "skipped": skipped, "chunks": 0, "resumed_chunks": 0,
                "samples_per_s": None}
    got = stream_to_file(ds, pre, lsm, out, features, k, on_bad_sample, chunk_size, meta,
                         cache, key, progress, decoder)
    return {**result, **got}


def stream_to_file(ds, pre, lsm, out, features: str, n_windows: int, on_bad_sample: str,
                   chunk_size: int, meta: dict, cache=None, key: str | None = None,
                   progress: bool = True, decoder: str = "auto") -> dict:
    """The streaming half of :func:`encode_dataset_file`, for an opened dataset split ``ds``:
    chunks in ``<out>.partial/``, then ``out`` with ``features``, ``labels``, ``sample_ids``
    and the ``meta`` arrays; the same entry in ``cache`` under ``key`` when given.

    What a user needs to know goes to stderr: chunks resumed or discarded at the start, and on
    an interrupt how many complete chunks were kept for the next run.
    """
    import contextlib
    import sys
    import time

    from lsm.data.pipeline import check_not_empty, encode_chunks, encoding_key
    from lsm.data.stream import ChunkFolder, write_features_npz

    check_not_empty(ds)
    if key is None:
        key = encoding_key(ds, pre, lsm, features, n_windows, on_bad_sample)
    folder = ChunkFolder(f"{out}.partial", key, chunk_size, len(ds))
    try:
        out = Path(out)
        for tmp in out.parent.glob(f".{out.name}.*.tmp"):  # an assembly killed earlier (the
            with contextlib.suppress(OSError):              # lock says no one else is at it)
                tmp.unlink()
        if folder.discarded:
            print(f"{folder.folder}: discarded {folder.discarded} chunks of another encoding "
                  "(another config, chunk size or data)", file=sys.stderr)
        on_disk = len(folder.complete())
        if on_disk:
            print(f"{folder.folder}: resuming after {on_disk} complete chunks", file=sys.stderr)
        labels, ids, skipped = [], [], list(ds.skipped)
        shape, dtype, n_chunks, resumed, done_here = None, None, 0, 0, 0
        t0 = time.perf_counter()
        try:
            with folder.kept_for_resume():
                for chunk in encode_chunks(ds, pre, lsm, features, n_windows, on_bad_sample,
                                           chunk_size, folder, progress, decoder):
                    labels.append(chunk.labels)
                    ids.extend(chunk.sample_ids)
                    skipped.extend(chunk.skipped)
                    shape, dtype = chunk.features.shape[1:], chunk.features.dtype
                    n_chunks += 1
                    resumed += chunk.resumed
                    done_here += 0 if chunk.resumed else len(chunk.labels)
        except KeyboardInterrupt:
            kept = len(folder.complete()) if folder.folder.is_dir() else 0
            if kept:
                print(f"{folder.folder}: kept {kept} complete chunks; run the same command "
                      "again to resume", file=sys.stderr)
            raise
        elapsed = time.perf_counter() - t0
        labels = np.concatenate(labels)
        sample_ids = np.array(ids, dtype=str)

        def parts():
            for index in range(n_chunks):
                chunk = folder.load(index)
                if chunk is None:  # damaged under our feet: say so, never write a short file
                    raise ValueError(f"{folder.path(index)}: chunk unreadable while assembling "
                                     f"{out}; run the same command again to redo it")
                yield chunk.features

        write_features_npz(out, parts(), len(labels), shape, dtype,
                           {"labels": labels, "sample_ids": sample_ids, **meta})
        if cache is not None:
            cache.store_parts(key, parts(), len(labels), shape, dtype, labels=labels,
                              sample_ids=sample_ids,
                              skipped=np.array(skipped, dtype=str).reshape(-1, 2))
        folder.clear()
    finally:
        folder.release()
    return {"shape": [len(labels), *shape], "samples": len(labels), "skipped": skipped,
            "chunks": n_chunks, "resumed_chunks": resumed,
            "samples_per_s": done_here / elapsed if elapsed > 0 and done_here else None}


def _present(spec, path: Path, split: str) -> bool:
    from lsm.data.datasets import SPLIT_FOLDERS

    if spec.path_kind == "folder":
        return (path / SPLIT_FOLDERS[split]).is_dir()
    return path.exists()


def _features_record(features: str, n_windows: int) -> dict:
    """What the ``features`` array holds; "windows" rows are window-major (see
    :mod:`lsm.features`)."""
    return {"kind": features, "n_windows": n_windows if features == "windows" else 1}
