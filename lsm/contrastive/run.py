"""`lsm zeroshot`: the protocol over several seeds and reservoir draws, with a run directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tomli_w

from lsm.config import LSMConfig
from lsm.contrastive.metrics import versus_chance
from lsm.contrastive.zeroshot import ModalityData, ZeroShotConfig, zeroshot_protocol
from lsm.runs import run_directory, write_json

__all__ = ["encode_modalities", "run_zeroshot", "format_zeroshot"]

#: metric paths reported in the summary: (block, direction, metric)
SUMMARY_METRICS = [(b, d, m) for b in ("unseen", "seen")
                   for d in ("audio_to_image", "image_to_audio")
                   for m in ("top1", "top5", "prototype_accuracy")]
CHANCE = {"top1": "top1_chance", "top5": "top5_chance", "prototype_accuracy": "prototype_chance"}


def encode_modalities(nmnist_root, ntidigits_path, seed: int, weights_factory=None,
                      cache=None, progress: bool = True):
    """Encode the four splits with reservoirs drawn with ``seed`` (the paper's encoders)."""
    from lsm.data import (
        encode_dataset,
        nmnist,
        nmnist_preprocessing,
        ntidigits,
        ntidigits_preprocessing,
    )
    from lsm.reservoir import LSM

    cfg_v, cfg_a = LSMConfig(seed=seed), LSMConfig.ntidigits(seed=seed)
    weights = (lambda: None) if weights_factory is None else weights_factory
    lsm_v, lsm_a = LSM(cfg_v, weights=weights()), LSM(cfg_a, weights=weights())
    out = {}
    for split in ("train", "test"):
        dv = nmnist(nmnist_root, split)
        da = ntidigits(ntidigits_path, split)
        ev = encode_dataset(dv, nmnist_preprocessing(), lsm_v, cache=cache, progress=progress)
        ea = encode_dataset(da, ntidigits_preprocessing(), lsm_a, cache=cache,
                            progress=progress)
        speakers = np.array(da.speakers)[np.isin(da.sample_ids, ea.sample_ids)]
        out[split] = (ModalityData("vision", ev.features, ev.labels),
                      ModalityData("audio", ea.features, ea.labels, speakers))
    return out, (cfg_v, cfg_a), (lsm_v.provenance, lsm_a.provenance)


def run_zeroshot(nmnist_root, ntidigits_path, seeds: int = 3, cfg: ZeroShotConfig | None = None,
                 out_dir="runs", cache=None, progress: bool = True, weights_factory=None,
                 plots: bool = True) -> dict:
    """Repeat encode -> fit (train/validation) -> evaluate (test, once) for ``seeds`` seeds,
    each with a fresh reservoir weight draw; write metrics.json, config.toml and plots."""
    from lsm.data.cache import as_cache
    from lsm.io import check_output_dir
    from lsm.validation import check_int

    check_int("run_zeroshot", "seeds", seeds, 1)
    cfg = cfg or ZeroShotConfig()
    # paths checked before the work; the run directory is made when there is a result to write
    check_output_dir(out_dir, "run folder")
    cache = as_cache(cache)
    per_seed, first = [], None
    for seed in range(seeds):
        data, cfgs, provs = encode_modalities(nmnist_root, ntidigits_path, seed,
                                              weights_factory, cache, progress)
        res = zeroshot_protocol(*data["train"], *data["test"], cfg, seed=seed, progress=progress)
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
    with run_directory(out_dir, "zeroshot") as run:
        result = {"run_dir": str(run), "seeds": seeds, "summary": summary,
                  "per_seed": per_seed, "protocol": dataclasses.asdict(cfg),
                  "data": {"nmnist": str(nmnist_root), "ntidigits": str(ntidigits_path)}}
        write_json(run / "metrics.json", result)
        config = {"zeroshot": {k: list(v) if isinstance(v, tuple) else v
                               for k, v in dataclasses.asdict(cfg).items()},
                  "lsm_vision": cfgs[0].to_dict(), "lsm_audio": cfgs[1].to_dict(),
                  "data": result["data"]}
        (run / "config.toml").write_text(tomli_w.dumps(config))
        if plots:
            _plots(run, *first)
    return result


def _plots(run: Path, res: dict, test) -> None:
    from matplotlib.figure import Figure

    from lsm.contrastive.metrics import similarity
    from lsm.plots import save_figure

    model = res["model"]
    vis, aud = test
    curves = model.curves
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.plot(curves["loss"], label="training loss")
    ax2 = ax.twinx()
    val_label = ("zero-shot retrieval on held-out seen classes (mean over folds)"
                 if model.selection == "held_out_classes" else "validation retrieval (seen)")
    ax2.plot(curves["val"], color="C1", label=val_label)
    ax2.axvline(model.best_epoch, color="C1", ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2.set_ylabel("validation top-1")
    fig.legend(loc="upper right", fontsize=8)
    save_figure(fig, run / "training_curves.png")

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
        ax = fig.add_subplot(1, 2, k + 1)
        ax.imshow(np.array(m["confusion"]), cmap="Blues")
        ax.set_xticks(range(len(m["classes"])), m["classes"])
        ax.set_yticks(range(len(m["classes"])), m["classes"])
        ax.set_xlabel("predicted (nearest image prototype)")
        ax.set_ylabel("spoken digit")
        ax.set_title(f"{block}: accuracy {m['prototype_accuracy']:.2f} "
                     f"(chance {m['prototype_chance']:.2f})", fontsize=9)
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
    lines = [f"zero-shot over {result['seeds']} seed(s), selection on {selection}: "
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
