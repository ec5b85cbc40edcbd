"""The zero-shot experiment (``lsm zeroshot``): the protocol of :mod:`lsm.contrastive.zeroshot`
repeated over seeds, each with fresh reservoir draws, with a run directory."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsm.contrastive.metrics import versus_chance
from lsm.contrastive.zeroshot import ModalityData, ZeroShotConfig, zeroshot_protocol
from lsm.data.datasets import SPLITS
from lsm.experiments.common import WEIGHT_SOURCES, check_seeds
from lsm.features import DEFAULT_N_WINDOWS, READOUT_FEATURES, check_features, describe_features
from lsm.validation import check_choice

__all__ = ["ZeroShotRunConfig", "encode_modalities", "run_zeroshot", "format_zeroshot",
           "SUMMARY_METRICS", "CHANCE"]

#: metric paths reported in the summary: (block, direction, metric)
SUMMARY_METRICS = [(b, d, m) for b in ("unseen", "seen")
                   for d in ("audio_to_image", "image_to_audio")
                   for m in ("top1", "top5", "prototype_accuracy")]
CHANCE = {"top1": "top1_chance", "top5": "top5_chance", "prototype_accuracy": "prototype_chance"}


@dataclass(frozen=True)
class ZeroShotRunConfig:
    """A zero-shot run: both datasets, the protocol's settings, ``n_seeds`` reservoir draws.

    Parameters
    ----------
    nmnist : path
        N-MNIST folder (vision).
    ntidigits : path
        N-TIDIGITS ``.hdf5`` file (audio).
    protocol : ZeroShotConfig
        Classes, loss, candidates, selection (:class:`lsm.contrastive.ZeroShotConfig`).
    n_seeds : int
        Repetitions with seeds 0 .. n_seeds-1, each with fresh reservoir draws.
    weights : {"gaussian", "crossbar"}
    runs_dir : path
        Parent of the run directory (``<runs_dir>/zeroshot-<time>/``).
    cache : path, optional
        Feature cache folder.
    plots : bool
        Write the PNGs (training curves, similarity, confusion, embedding).
    features : {"windows", "rates", "counts"}
        What the heads see of each reservoir (:mod:`lsm.features`).
    n_windows : int
        Time windows of ``"windows"`` (at most the bins of either encoder).
    """

    nmnist: str | os.PathLike
    ntidigits: str | os.PathLike
    protocol: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    n_seeds: int = 3
    weights: str = "gaussian"
    runs_dir: str | os.PathLike = "runs"
    cache: str | os.PathLike | None = None
    plots: bool = True
    features: str = "windows"
    n_windows: int = DEFAULT_N_WINDOWS

    def __post_init__(self) -> None:
        from lsm.data.registry import dataset_spec

        check_choice("weights", self.weights, WEIGHT_SOURCES)
        check_seeds("ZeroShotRunConfig", self.n_seeds)
        check_choice("features", self.features, READOUT_FEATURES)
        for name in ("nmnist", "ntidigits"):
            check_features(self.features, self.n_windows, dataset_spec(name).lsm_config().n_bins,
                           READOUT_FEATURES)
        if not isinstance(self.protocol, ZeroShotConfig):
            raise TypeError(f"protocol must be a ZeroShotConfig, got "
                            f"{type(self.protocol).__name__}")


def encode_modalities(nmnist_root, ntidigits_path, seed: int, weights: str = "gaussian",
                      cache=None, progress: bool = True, features: str = "rates",
                      n_windows: int = DEFAULT_N_WINDOWS):
    """Encode the four splits with reservoirs drawn with ``seed`` (the paper's encoders);
    ``features`` and ``n_windows`` as in :meth:`lsm.LSM.encode`.

    Returns
    -------
    data : dict
        ``{"train": (vision, audio), "test": (vision, audio)}`` as :class:`ModalityData`
        (audio grouped by speaker).
    configs : (LSMConfig, LSMConfig)
    provenances : (dict, dict)
    """
    from lsm.data.registry import dataset_spec, encode_split
    from lsm.experiments.common import make_weights
    from lsm.reservoir import LSM

    names = ("nmnist", "ntidigits")
    paths = {"nmnist": nmnist_root, "ntidigits": ntidigits_path}
    lsms = {n: LSM(dataset_spec(n).lsm_config(seed=seed), weights=make_weights(weights))
            for n in names}
    out = {}
    for split in SPLITS:
        out[split] = tuple(
            ModalityData(dataset_spec(n).modality, e.features, e.labels, e.groups)
            for n in names
            for e in [encode_split(n, paths[n], split, lsms[n], cache=cache,
                                   progress=progress, features=features,
                                   n_windows=n_windows)])
    return (out, tuple(lsms[n].config for n in names),
            tuple(lsms[n].provenance for n in names))


def run_zeroshot(cfg: ZeroShotRunConfig, progress: bool = True) -> dict:
    """Repeat encode -> fit (train/validation) -> evaluate (test, once) for ``cfg.n_seeds``
    seeds, each with a fresh reservoir weight draw; write metrics.json, config.toml and plots
    into a new run directory. Returns the summary (mean +- std over seeds against chance, with
    the t-test of :func:`~lsm.contrastive.metrics.versus_chance`) and per-seed metrics."""
    from lsm.data.cache import as_cache
    from lsm.experiments.common import write_run_files
    from lsm.io import check_output_dir
    from lsm.runs import run_directory

    # paths checked before the work; the run directory is made when there is a result to write
    check_output_dir(cfg.runs_dir, "runs folder")
    cache = as_cache(cfg.cache)
    per_seed, first = [], None
    for seed in range(cfg.n_seeds):
        data, cfgs, provs = encode_modalities(cfg.nmnist, cfg.ntidigits, seed, cfg.weights,
                                              cache, progress, cfg.features, cfg.n_windows)
        res = zeroshot_protocol(*data["train"], *data["test"], cfg.protocol, seed=seed,
                                progress=progress)
        per_seed.append({"seed": seed, "metrics": res["metrics"], "selected": res["selected"],
                         "sizes": res["sizes"], "candidates": res["model"].candidates,
                         "weights": [provs[0].get("source"), provs[1].get("source")]})
        if first is None:
            first = (res, data["test"])
    summary = {}
    for block, direction, metric in SUMMARY_METRICS:
        vals = [p["metrics"][block][direction][metric] for p in per_seed
                if block in p["metrics"]]
        if not vals:
            continue
        chance = per_seed[0]["metrics"][block][direction][CHANCE[metric]]
        summary[f"{block}/{direction}/{metric}"] = versus_chance(vals, chance)
    result = {"seeds": cfg.n_seeds, "summary": summary, "per_seed": per_seed,
              "features": describe_features(cfg.features, cfg.n_windows),
              "weights": cfg.weights,
              "protocol": dataclasses.asdict(cfg.protocol),
              "data": {"nmnist": str(cfg.nmnist), "ntidigits": str(cfg.ntidigits)}}
    with run_directory(cfg.runs_dir, "zeroshot") as run:
        result["run_dir"] = str(run)
        write_run_files(run, {"run": cfg, "seeds": list(range(cfg.n_seeds)),
                              "lsm_vision": cfgs[0].replace(seed=0).to_dict(),
                              "lsm_audio": cfgs[1].replace(seed=0).to_dict()}, result)
        if cfg.plots:
            _plots(run, *first)
    return result


def _plots(run: Path, res: dict, test) -> None:
    from matplotlib.figure import Figure

    from lsm.contrastive.metrics import similarity
    from lsm.plots import confusion_axes, save_figure, training_curves

    model = res["model"]
    vis, aud = test
    val_label = ("zero-shot retrieval on held-out seen classes (mean over folds)"
                 if model.selection == "held_out_classes" else "validation retrieval (seen)")
    training_curves(model.curves, model.best_epoch, run / "training_curves.png", val_label,
                    "validation top-1")

    zv, za = model.embed(vis), model.embed(aud)
    classes = np.intersect1d(np.unique(vis.labels), np.unique(aud.labels))
    pv = np.stack([zv[vis.labels == c].mean(0) for c in classes])
    pa = np.stack([za[aud.labels == c].mean(0) for c in classes])
    fig = Figure(figsize=(4.5, 4))
    ax = fig.add_subplot()
    im = ax.imshow(similarity(pa, pv), cmap="viridis")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("image class prototype")
    ax.set_ylabel("audio class prototype")
    ax.set_title("cross-modal similarity (test)")
    fig.colorbar(im)
    save_figure(fig, run / "similarity_matrix.png")

    fig = Figure(figsize=(8, 3.6))
    for k, block in enumerate(("seen", "unseen")):
        if block not in res["metrics"]:
            continue
        m = res["metrics"][block]["audio_to_image"]
        confusion_axes(fig.add_subplot(1, 2, k + 1), m["confusion"], m["classes"],
                       f"{block}: accuracy {m['prototype_accuracy']:.2f} "
                       f"(chance {m['prototype_chance']:.2f})",
                       "predicted (nearest image prototype)", "spoken digit")
    save_figure(fig, run / "confusion_matrix.png")

    z = np.concatenate([zv, za])
    z = z - z.mean(0)
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    xy = z @ vt[:2].T
    labels = np.concatenate([vis.labels, aud.labels])
    is_audio = np.r_[np.zeros(len(zv), bool), np.ones(len(za), bool)]
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    for marker, mask, name in (("o", ~is_audio, "image"), ("^", is_audio, "audio")):
        sc = ax.scatter(xy[mask, 0], xy[mask, 1], c=labels[mask], cmap="tab10", vmin=0,
                        vmax=9, marker=marker, s=10, alpha=0.7, label=name)
    fig.colorbar(sc, label="digit")
    ax.legend(fontsize=8)
    ax.set_title("test embeddings (PCA)")
    save_figure(fig, run / "embedding_pca.png")


def format_zeroshot(result: dict) -> str:
    """The summary as a table: mean +- std over seeds, chance, 95 % interval of the mean and
    the one-sided p-value of "above chance" (t-test over seeds, see :func:`versus_chance`)."""
    selection = result.get("protocol", {}).get("selection", "")
    lines = [f"zero-shot over {result['seeds']} seed(s), {result.get('features', 'rates')} "
             f"features, selection on {selection}: "
             "mean +- std over seeds [chance], 95 % CI of the mean, p(above chance)"]
    for key, v in result["summary"].items():
        line = (f"  {key:<42} {100 * v['mean']:6.1f} +- {100 * v['std']:4.1f} %"
                f"  [{100 * v['chance']:5.1f} %]")
        if v.get("ci95") is not None:
            lo, hi = v["ci95"]
            verdict = "above chance" if v["above_chance"] else "not shown above chance"
            line += (f"  CI {100 * lo:5.1f}..{100 * hi:5.1f}  p={v['p_above_chance']:.3f}"
                     f"  {verdict}")
        lines.append(line)
    lines.append(f"run directory: {result['run_dir']}")
    return "\n".join(lines)
