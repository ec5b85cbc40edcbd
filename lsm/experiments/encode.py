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

__all__ = ["read_event_file", "encode_file", "encode_dataset_file"]


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
                        n_windows: int = DEFAULT_N_WINDOWS) -> dict:
    """Encode a dataset split (:func:`lsm.data.encode_split`) into ``out``: ``features``,
    ``labels``, ``sample_ids``, the config, the weights' provenance and the preprocessing.
    With ``download``, a missing dataset is fetched first (checksummed). ``weights``: a name of
    :data:`lsm.experiments.common.WEIGHT_SOURCES`."""
    from lsm.data.registry import dataset_spec, encode_split
    from lsm.io import atomic_savez, check_output_file
    from lsm.reservoir import LSM

    # every path is checked before the work: a bad out is not found after the encoding
    check_output_file(out, "--out")
    check_features(features, n_windows, cfg.n_bins)
    spec = dataset_spec(dataset)
    from lsm.experiments.common import make_weights

    if download and not _present(spec, Path(path), split):
        path = spec.download(path)
    lsm = LSM(cfg, backend=backend, weights=make_weights(weights))
    enc = encode_split(dataset, path, split, lsm, features=features, n_windows=n_windows,
                       cache=cache, on_bad_sample=on_bad_sample, progress=progress)
    atomic_savez(out, features=enc.features, labels=enc.labels,
                 features_json=np.array(json.dumps(_features_record(features, n_windows))),
                 sample_ids=np.array(enc.sample_ids, dtype=str),
                 config_toml=np.array(cfg.to_toml()),
                 provenance_json=np.array(json.dumps(lsm.provenance)),
                 preprocessing_json=np.array(json.dumps(enc.preprocessing.describe(),
                                                        default=str)))
    return {"out": str(out), "shape": list(enc.features.shape), "samples": len(enc.labels),
            "dataset": dataset, "split": split, "cache_hit": enc.cache_hit,
            "skipped": enc.skipped}


def _present(spec, path: Path, split: str) -> bool:
    from lsm.data.datasets import SPLIT_FOLDERS

    if spec.path_kind == "folder":
        return (path / SPLIT_FOLDERS[split]).is_dir()
    return path.exists()


def _features_record(features: str, n_windows: int) -> dict:
    """What the ``features`` array holds; "windows" rows are window-major (see
    :mod:`lsm.features`)."""
    return {"kind": features, "n_windows": n_windows if features == "windows" else 1}
