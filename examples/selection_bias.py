"""What choosing the epoch on the test set does to the unseen-class zero-shot number.

The reference code picked its best epoch (and its hyper-parameters) by looking at the test
set, and reported one seed of a two-class test. This script reproduces that mistake on
purpose, next to the protocol this project uses, in one run and on the same heads: for each
seed (fresh reservoir draw) the heads are trained once on digits 1-7 with validation-based
selection (``lsm.contrastive.fit``), and a spy reads the unseen test digits (8, 9) after every
epoch. It reports, per seed, the honest number (the validation-selected epoch, what
``lsm zeroshot`` prints) and the number the reference code would have reported (the best epoch
on the test set), and plots the test curves.

    python examples/selection_bias.py --n-seeds 5       # offline twins, about 5 minutes

Output: a table on stdout (``--json`` for JSON) and ``<workdir>/runs/selection_bias.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from lsm.contrastive import ZeroShotConfig, evaluate, fit
from lsm.contrastive.metrics import retrieval, retrieval_chance, versus_chance
from lsm.data.demo import ensure_demo_twins
from lsm.data.formats import data_kind
from lsm.experiments.zeroshot import encode_modalities

METRIC = ("unseen", "audio_to_image", "top1")  # the paper's headline zero-shot metric


def seed_curves(nmnist_root, ntidigits_path, seed: int, cfg: ZeroShotConfig, cache=None,
                progress: bool = True) -> dict:
    """One seed: heads fitted with validation selection, plus the unseen test top-1
    (audio -> image) after every epoch."""
    data, _, _ = encode_modalities(nmnist_root, ntidigits_path, seed, cache=cache,
                                   progress=progress)
    (train_v, train_a), (test_v, test_a) = data["train"], data["test"]
    unseen_v, unseen_a = test_v.classes(cfg.unseen), test_a.classes(cfg.unseen)
    fv, fa = torch.from_numpy(unseen_v.features), torch.from_numpy(unseen_a.features)
    curves: dict[int, list[float]] = {}

    def spy(candidate, epoch, vision_head, audio_head):
        # the mistake, on purpose: the test split is read after every epoch
        zv, za = vision_head(fv).numpy(), audio_head(fa).numpy()
        curves.setdefault(candidate, []).append(
            retrieval(za, unseen_a.labels, zv, unseen_v.labels, ks=(1,))["top1"])

    model, _ = fit(train_v, train_a, cfg, seed, on_epoch=spy, progress=True)
    honest = evaluate(model, test_v, test_a, cfg)
    block, direction, metric = METRIC
    all_curves = np.array([curves[k] for k in sorted(curves)])
    return {"seed": seed, "honest": honest[block][direction][metric],
            "honest_epoch": model.best_epoch,
            "test_curve": curves[model.candidate_index],
            "test_selected": float(all_curves.max()),
            "test_selected_epoch": int(np.unravel_index(all_curves.argmax(),
                                                        all_curves.shape)[1]),
            "chance": retrieval_chance(unseen_a.labels, unseen_v.labels, ks=(1,))["top1"]}


def selection_bias(nmnist_root, ntidigits_path, seeds: int = 5,
                   cfg: ZeroShotConfig | None = None, cache=None, progress: bool = True) -> dict:
    """Per-seed honest and test-selected numbers and their summaries (see the module text)."""
    cfg = cfg or ZeroShotConfig()
    per_seed = [seed_curves(nmnist_root, ntidigits_path, s, cfg, cache, progress)
                for s in range(seeds)]
    chance = per_seed[0]["chance"]
    return {"metric": "/".join(METRIC), "seeds": seeds, "chance": chance,
            "validation_selected": versus_chance([p["honest"] for p in per_seed], chance),
            "test_selected": versus_chance([p["test_selected"] for p in per_seed], chance),
            "best_single_seed_test_selected": max(p["test_selected"] for p in per_seed),
            "per_seed": per_seed}


def plot(result: dict, path: Path) -> Path:
    from matplotlib.figure import Figure

    from lsm.plots import save_figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for k, p in enumerate(result["per_seed"]):
        curve = 100 * np.asarray(p["test_curve"])
        ax.plot(curve, color=f"C{k}", lw=1, alpha=0.8, label=f"seed {p['seed']}")
        ax.plot(p["honest_epoch"], 100 * p["honest"], "o", color=f"C{k}")
        ax.plot(p["test_selected_epoch"], 100 * p["test_selected"], "*", color=f"C{k}", ms=10)
    ax.axhline(100 * result["chance"], color="k", ls="--", lw=1, label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("unseen 8-9 audio -> image top-1 (%)")
    ax.set_title("o: epoch chosen on validation (reported)   *: best epoch on test (biased)",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def format_result(r: dict) -> str:
    def row(name, v):
        lo, hi = (100 * x for x in v["ci95"]) if v["ci95"] else (float("nan"),) * 2
        p = v["p_above_chance"]
        return (f"  {name:<38} {100 * v['mean']:5.1f} +- {100 * v['std']:4.1f} %  "
                f"CI {lo:5.1f}..{hi:5.1f}  p(above chance)="
                + ("n/a" if p is None else f"{p:.3f}"))

    data = ", ".join(f"{k}: {v}" for k, v in r.get("data", {}).items())
    lines = [f"{r['metric']} over {r['seeds']} seeds (chance {100 * r['chance']:.1f} %; {data})",
             row("epoch selected on validation (ours)", r["validation_selected"]),
             row("best epoch on the test set (biased)", r["test_selected"]),
             f"  best single seed, best epoch on test: "
             f"{100 * r['best_single_seed_test_selected']:.1f} % (what a one-seed report can show)"]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="lsm-demo",
                   help="demo folder (twins, feature cache, runs)")
    p.add_argument("--nmnist", help="N-MNIST folder (default: the demo twin)")
    p.add_argument("--ntidigits", help="N-TIDIGITS file (default: the demo twin)")
    p.add_argument("--n-seeds", type=int, default=5,
                   help="repetitions, seeds 0 .. N-1, each a fresh reservoir draw")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.n_seeds < 1:
        p.error("--n-seeds must be >= 1")
    base = Path(args.workdir)
    progress = not args.no_progress
    if (args.nmnist is None) != (args.ntidigits is None):
        p.error("give both --nmnist and --ntidigits, or neither (demo twins)")
    nm, td = (args.nmnist, args.ntidigits) if args.nmnist else ensure_demo_twins(base, progress)
    result = selection_bias(nm, td, args.n_seeds, ZeroShotConfig(epochs=args.epochs),
                            base / "features", progress)
    result["data"] = {"nmnist": data_kind(nm), "ntidigits": data_kind(td)}
    result["plot"] = str(plot(result, base / "runs" / "selection_bias.png"))
    print(json.dumps(result) if args.json else format_result(result))
    print(f"plot: {result['plot']}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
