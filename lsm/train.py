"""Supervised classification on LSM features over seeds and reservoir draws (`lsm train`)."""

from __future__ import annotations

import numpy as np

from lsm.config import LSMConfig

__all__ = ["PAPER_SUPERVISED", "weights_factory", "run_train", "format_train"]

PAPER_SUPERVISED = {"nmnist": 89.11, "ntidigits": 70.79}


def weights_factory(name: str):
    """A callable making a fresh weight source per reservoir: "gaussian" (None, the LSM's
    default) or "crossbar" (:class:`~lsm.weights.CrossbarWeights`)."""
    if name == "crossbar":
        from lsm.weights import CrossbarWeights

        return CrossbarWeights
    return lambda: None


def run_train(dataset: str, root, readout: str = "linear", seeds: int = 1, out_dir="runs",
              cache=None, weights: str = "gaussian", progress: bool = True) -> dict:
    """Supervised classification on one dataset, over seeds and reservoir draws."""
    import dataclasses

    import tomli_w

    from lsm.data import (
        encode_dataset,
        nmnist,
        nmnist_preprocessing,
        ntidigits,
        ntidigits_preprocessing,
    )
    from lsm.data.cache import as_cache
    from lsm.data.formats import data_kind
    from lsm.io import check_output_dir
    from lsm.readout import ReadoutConfig, train_and_test
    from lsm.reservoir import LSM
    from lsm.runs import mean_std, run_directory, write_json
    from lsm.validation import check_int

    check_int("run_train", "seeds", seeds, 1)
    cfg = ReadoutConfig(kind=readout)
    # paths checked before the work; the run directory is made when there is a result to write
    check_output_dir(out_dir, "run folder")
    cache = as_cache(cache)
    per_seed, first = [], None
    for seed in range(seeds):
        groups = None
        if dataset == "nmnist":
            lsm_cfg, pre = LSMConfig.nmnist(seed=seed), nmnist_preprocessing()
            tr, te = nmnist(root, "train"), nmnist(root, "test")
        else:
            lsm_cfg, pre = LSMConfig.ntidigits(seed=seed), ntidigits_preprocessing()
            tr, te = ntidigits(root, "train"), ntidigits(root, "test")
        lsm = LSM(lsm_cfg, weights=weights_factory(weights)())
        a = encode_dataset(tr, pre, lsm, cache=cache, progress=progress)
        b = encode_dataset(te, pre, lsm, cache=cache, progress=progress)
        if dataset == "ntidigits":
            groups = np.array(tr.speakers)[np.isin(tr.sample_ids, a.sample_ids)]
        res = train_and_test(a.features, a.labels, b.features, b.labels, cfg, seed, groups)
        per_seed.append({k: v for k, v in res.items() if k != "readout"} | {"seed": seed})
        first = first or res
    acc = mean_std([p["test_accuracy"] for p in per_seed])
    with run_directory(out_dir, f"train-{dataset}") as run:
        result = {"dataset": dataset, "data": data_kind(root), "root": str(root),
                  "readout": dataclasses.asdict(cfg), "weights": weights, "seeds": seeds,
                  "test_accuracy": acc, "chance": per_seed[0]["chance"],
                  "paper_accuracy": PAPER_SUPERVISED[dataset] / 100, "per_seed": per_seed,
                  "run_dir": str(run)}
        write_json(run / "metrics.json", result)
        (run / "config.toml").write_text(tomli_w.dumps(
            {"lsm": lsm_cfg.replace(seed=0).to_dict(), "readout": dataclasses.asdict(cfg),
             "data": {"dataset": dataset, "root": str(root), "weights": weights}}))
        _train_plots(run, first)
    return result


def _train_plots(run, res) -> None:
    from matplotlib.figure import Figure

    from lsm.plots import save_figure

    r = res["readout"]
    if r.curves.get("loss"):
        fig = Figure(figsize=(6, 3.5))
        ax = fig.add_subplot()
        ax.plot(r.curves["loss"], label="training loss")
        ax2 = ax.twinx()
        ax2.plot(r.curves["val"], color="C1", label="validation accuracy")
        ax2.axvline(r.best_epoch, color="C1", ls=":")
        ax.set_xlabel("epoch")
        fig.legend(fontsize=8)
        save_figure(fig, run / "training_curves.png")
    fig = Figure(figsize=(4.5, 4))
    ax = fig.add_subplot()
    ax.imshow(np.array(res["confusion"]), cmap="Blues")
    ax.set_xticks(range(len(res["classes"])), res["classes"])
    ax.set_yticks(range(len(res["classes"])), res["classes"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test accuracy {res['test_accuracy']:.3f}")
    save_figure(fig, run / "confusion_matrix.png")


def format_train(r: dict) -> str:
    a = r["test_accuracy"]
    return (f"{r['dataset']} ({r['data']}), {r['readout']['kind']} readout, {r['weights']} "
            f"weights, {r['seeds']} seed(s): test accuracy {100 * a['mean']:.2f} +- "
            f"{100 * a['std']:.2f} % (chance {100 * r['chance']:.1f} %; paper, real dataset: "
            f"{100 * r['paper_accuracy']:.2f} %)\nrun directory: {r['run_dir']}")
