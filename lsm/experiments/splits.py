"""``lsm study splits``: the zero-shot protocol over many class splits instead of one.

One split (unseen 8, 9) says little: which digits are held out changes unseen top-1 far more
than the reservoir does. This study encodes both modalities once per reservoir seed and runs
:func:`lsm.contrastive.zeroshot.zeroshot_protocol` for every split: every combination of
``n_unseen`` held-out digits (``splits="all"``: 36 pairs of 1-9), or ``splits=K`` random ones.
It reports the distribution of unseen top-1 in both directions (mean, spread, the share of
splits above chance, the worst and best splits) with the mean tested against chance over splits,
and plots it, with a digit-by-digit map of unseen top-1 when the splits are pairs.

Splits share classes and reservoirs, so they are not independent replications: the t-test of
the mean over splits is a summary, not a proof (the per-seed test of ``lsm zeroshot`` is).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from lsm.contrastive.zeroshot import ZeroShotConfig
from lsm.experiments.common import WEIGHT_SOURCES, check_seeds
from lsm.experiments.studies import StudyFile, settings_table
from lsm.features import DEFAULT_N_WINDOWS, READOUT_FEATURES
from lsm.validation import check_choice, check_int

__all__ = ["ClassSplitsConfig", "class_splits", "run_class_splits", "format_class_splits",
           "DIRECTIONS"]

#: retrieval directions, as the protocol names them
DIRECTIONS = ("audio_to_image", "image_to_audio")


@dataclass(frozen=True)
class ClassSplitsConfig(StudyFile):
    """Zero-shot over many class splits (``lsm study splits``; a ``[study]`` TOML table with
    ``study = "splits"``, ``protocol`` a ``[study.protocol]`` table of
    :class:`~lsm.contrastive.ZeroShotConfig` fields, read by :meth:`from_toml`).

    Parameters
    ----------
    nmnist, ntidigits : path, optional
        Both datasets, or neither: then the demo twins under ``workdir``.
    workdir : path
        Where the demo twins live (made on first use).
    classes : tuple of int
        The digits that are split into seen and unseen (default 1-9, the protocol's).
    n_unseen : int
        Digits held out per split.
    splits : "all" or int
        Every combination of ``n_unseen`` classes, or this many random ones (drawn with
        ``split_seed``, without repeats).
    split_seed : int
    n_seeds : int
        Reservoir draws (seeds 0 .. n_seeds-1); every split runs on every draw.
    protocol : ZeroShotConfig
        Training and selection settings; its ``seen`` / ``unseen`` are replaced per split.
    weights : {"gaussian", "crossbar", "chip"}
    features : {"windows", "rates", "counts"}
    n_windows : int
    runs_dir : path
        Parent of the run directory (``<runs_dir>/study-splits-<time>/``).
    cache : path, optional
        Feature cache folder.
    """

    nmnist: str | os.PathLike | None = None
    ntidigits: str | os.PathLike | None = None
    workdir: str | os.PathLike = "lsm-demo"
    classes: tuple = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    n_unseen: int = 2
    splits: str | int = 10
    split_seed: int = 0
    n_seeds: int = 1
    protocol: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    weights: str = "gaussian"
    features: str = "windows"
    n_windows: int = DEFAULT_N_WINDOWS
    runs_dir: str | os.PathLike = "runs"
    cache: str | os.PathLike | None = None

    study: ClassVar[str] = "splits"

    def __post_init__(self) -> None:
        owner = "ClassSplitsConfig"
        object.__setattr__(self, "protocol", settings_table(owner, "protocol", ZeroShotConfig,
                                                          self.protocol))
        if isinstance(self.splits, str) and self.splits != "all":
            raise ValueError(f"{owner}.splits must be 'all' or a number of random splits, got "
                             f"{self.splits!r}")
        if (self.nmnist is None) != (self.ntidigits is None):
            raise ValueError(f"{owner}: give both nmnist and ntidigits, or neither (the demo "
                             "twins)")
        if isinstance(self.classes, (str, bytes, Mapping)) or not hasattr(self.classes,
                                                                           "__iter__"):
            raise ValueError(f"{owner}.classes must be a list of digits, got {self.classes!r}")
        classes = tuple(self.classes)
        if len(set(classes)) != len(classes) or not all(
                isinstance(c, (int, np.integer)) and 0 <= c <= 9 for c in classes):
            raise ValueError(f"{owner}.classes must be distinct digits 0-9, got {self.classes}")
        object.__setattr__(self, "classes", tuple(int(c) for c in classes))
        check_int(owner, "n_unseen", self.n_unseen, 1, len(classes) - 4)
        if self.splits != "all":
            check_int(owner, "splits", self.splits, 1, _n_combinations(len(classes),
                                                                          self.n_unseen))
        check_int(owner, "split_seed", self.split_seed, 0)
        check_seeds(owner, self.n_seeds)
        check_choice("weights", self.weights, WEIGHT_SOURCES)
        check_choice("features", self.features, READOUT_FEATURES)
        if not isinstance(self.protocol, ZeroShotConfig):
            raise TypeError(f"{owner}.protocol must be a ZeroShotConfig, got "
                            f"{type(self.protocol).__name__}")
        # every split must make a valid protocol (enough seen classes for the class folds)
        self.protocol_for(classes[:self.n_unseen])

    def protocol_for(self, unseen) -> ZeroShotConfig:
        """The protocol of the split holding out ``unseen``: the other classes are seen."""
        seen = tuple(c for c in self.classes if c not in unseen)
        return dataclasses.replace(self.protocol, seen=seen, unseen=tuple(unseen))


def _n_combinations(n: int, k: int) -> int:
    from math import comb

    return comb(n, k)


def class_splits(cfg: ClassSplitsConfig) -> list[tuple[int, ...]]:
    """The unseen classes of each split, in a stable order."""
    every = list(itertools.combinations(cfg.classes, cfg.n_unseen))
    if cfg.splits == "all":
        return every
    rng = np.random.default_rng(cfg.split_seed)
    pick = np.sort(rng.choice(len(every), size=int(cfg.splits), replace=False))
    return [every[i] for i in pick]


def run_class_splits(cfg: ClassSplitsConfig, progress: bool = True) -> dict:
    """Encode once per seed, run the protocol on every split, summarise and plot; returns the
    summary per direction (unseen and seen top-1 against chance over splits) and per split,
    with ``run_dir``."""
    from lsm.contrastive.metrics import versus_chance
    from lsm.contrastive.zeroshot import zeroshot_protocol
    from lsm.data.cache import as_cache
    from lsm.data.demo import ensure_demo_twins
    from lsm.data.formats import data_kind
    from lsm.experiments.common import make_weights, write_run_files
    from lsm.experiments.zeroshot import encode_modalities
    from lsm.io import check_output_dir
    from lsm.progress import progress_bar
    from lsm.runs import run_directory

    check_output_dir(cfg.runs_dir, "runs folder")
    make_weights(cfg.weights)
    if cfg.nmnist is None:
        nm, td = ensure_demo_twins(check_output_dir(cfg.workdir, "workdir"), progress)
    else:
        nm, td = Path(cfg.nmnist), Path(cfg.ntidigits)
    cache = as_cache(cfg.cache)
    splits = class_splits(cfg)
    rows = []
    with progress_bar(total=len(splits) * cfg.n_seeds, desc="class splits", unit="split",
                      disable=not progress) as bar:
        for seed in range(cfg.n_seeds):
            data, _, _ = encode_modalities(nm, td, seed, cfg.weights, cache, False,
                                           cfg.features, cfg.n_windows)
            for unseen in splits:
                res = zeroshot_protocol(*data["train"], *data["test"],
                                        cfg.protocol_for(unseen), seed=seed, progress=False)
                m = res["metrics"]
                rows.append({"seed": seed, "unseen": list(unseen),
                             **{f"{block}/{d}/{k}": m[block][d][k]
                                for block in ("unseen", "seen") for d in DIRECTIONS
                                for k in ("top1", "top1_chance")}})
                bar.update(1)
    summary = {}
    for block in ("unseen", "seen"):
        for d in DIRECTIONS:
            values = np.array([r[f"{block}/{d}/top1"] for r in rows])
            chance = float(rows[0][f"{block}/{d}/top1_chance"])
            s = versus_chance(values, chance)
            s.update(median=float(np.median(values)), min=float(values.min()),
                     max=float(values.max()),
                     share_above_chance=float(np.mean(values > chance)),
                     worst=rows[int(values.argmin())]["unseen"],
                     best=rows[int(values.argmax())]["unseen"])
            summary[f"{block}/{d}"] = s
    result = {"splits": [list(s) for s in splits], "n_splits": len(splits),
              "n_seeds": cfg.n_seeds, "summary": summary, "per_split": rows,
              "data": {"nmnist": data_kind(nm), "ntidigits": data_kind(td)},
              "weights": cfg.weights, "features": cfg.features}
    with run_directory(cfg.runs_dir, "study-splits") as run:
        result["run_dir"] = str(run)
        result["png"] = str(_plot(run / "class_splits.png", cfg, rows, summary))
        # the resolved config, re-loadable with from_toml (absolute dataset paths)
        resolved = dataclasses.replace(cfg, nmnist=str(Path(nm).resolve()),
                                       ntidigits=str(Path(td).resolve()))
        write_run_files(run, {"study": resolved.to_dict(), "seeds": list(range(cfg.n_seeds))},
                        result)
    if progress:
        print(f"class splits: {len(rows)} protocol runs", file=sys.stderr)
    return result


def _plot(path: Path, cfg: ClassSplitsConfig, rows: list, summary: dict) -> Path:
    from matplotlib.figure import Figure

    from lsm.plots import save_figure

    pairs = cfg.n_unseen == 2
    fig = Figure(figsize=(11 if pairs else 6, 4.2))
    ax = fig.add_subplot(1, 3 if pairs else 1, 1)
    rng = np.random.default_rng(0)
    for k, d in enumerate(DIRECTIONS):
        v = np.array([r[f"unseen/{d}/top1"] for r in rows])
        ax.scatter(k + rng.uniform(-0.15, 0.15, len(v)), v, s=14, alpha=0.7)
        s = summary[f"unseen/{d}"]
        ax.hlines(s["mean"], k - 0.3, k + 0.3, color="k", lw=2)
        ax.hlines(s["chance"], k - 0.4, k + 0.4, color="r", ls="--", lw=1)
    ax.set_xticks([0, 1], ["audio -> image", "image -> audio"])
    ax.set_ylabel("unseen top-1")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{len(rows)} split runs: mean (black), chance (red)", fontsize=9)
    if pairs:
        for k, d in enumerate(DIRECTIONS):
            grid = np.full((10, 10), np.nan)
            sums: dict = {}
            for r in rows:
                a, b = r["unseen"]
                sums.setdefault((a, b), []).append(r[f"unseen/{d}/top1"])
            for (a, b), v in sums.items():
                grid[a, b] = grid[b, a] = float(np.mean(v))
            axk = fig.add_subplot(1, 3, k + 2)
            used = list(cfg.classes)
            im = axk.imshow(grid[np.ix_(used, used)], vmin=0, vmax=1, cmap="RdYlGn")
            axk.set_xticks(range(len(used)), used)
            axk.set_yticks(range(len(used)), used)
            axk.set_title(f"unseen top-1 per held-out pair\n{d.replace('_to_', ' -> ')}",
                          fontsize=9)
            axk.set_xlabel("held-out digit")
        fig.colorbar(im, ax=fig.axes[1:], shrink=0.8)
    return save_figure(fig, path)


def format_class_splits(r: dict) -> str:
    """The distribution of unseen (and seen) top-1 over the splits, against chance."""
    lines = [f"zero-shot over {r['n_splits']} class split(s) x {r['n_seeds']} reservoir "
             f"seed(s), {r['features']} features, {r['weights']} weights "
             f"({r['data']['nmnist']} / {r['data']['ntidigits']})",
             f"  {'top-1':<24}{'mean +- std':<17}{'chance':<9}{'median':<9}{'min..max':<13}"
             f"{'> chance':<10}p(mean > chance)"]
    for key, s in r["summary"].items():
        p = s.get("p_above_chance")
        lines.append(f"  {key.replace('_to_', ' -> '):<24}"
                     f"{100 * s['mean']:5.1f} +- {100 * s['std']:4.1f} %  "
                     f"{100 * s['chance']:5.1f} %  {100 * s['median']:5.1f} %  "
                     f"{100 * s['min']:3.0f}..{100 * s['max']:3.0f} %    "
                     f"{100 * s['share_above_chance']:3.0f} %     "
                     + (f"{p:.3f}" if p is not None else "-"))
    for d in DIRECTIONS:
        s = r["summary"][f"unseen/{d}"]
        lines.append(f"  {d.replace('_to_', ' -> ')}: worst split unseen {s['worst']}, best "
                     f"{s['best']}")
    lines += ["  (splits share classes and reservoirs: the p-value summarises, it does not "
              "replicate)", f"plot: {r['png']}", f"run directory: {r['run_dir']}"]
    return "\n".join(lines)
