"""PNG figures of results people look at (matplotlib's object API, no display needed).

Every figure is written atomically: a temporary file beside the target, then a rename.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from lsm.io import atomic_path

__all__ = ["save_figure", "conductance_histogram", "conductance_map", "vmm_error_plot",
           "training_curves", "confusion_axes", "confusion_plot"]


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return Path(path)


def conductance_histogram(g_us: np.ndarray, path: str | os.PathLike, title: str = "",
                          stats: dict | None = None) -> Path:
    """Histogram of conductances (uS) with the mean and std in the legend."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    g = np.asarray(g_us).ravel()
    ax.hist(g, bins=120, color="#3a6ea5", alpha=0.85)
    label = f"mean {g.mean():.2f} uS, std {g.std():.2f} uS"
    ax.axvline(g.mean(), color="k", lw=1, label=label)
    ax.set_xlabel("conductance (uS)")
    ax.set_ylabel("cells")
    ax.set_title(title or "programmed conductance")
    if stats and stats.get("fraction_stuck"):
        ax.text(0.98, 0.95, f"stuck: {100 * stats['fraction_stuck']:.2f} %",
                transform=ax.transAxes, ha="right", va="top")
    ax.legend(loc="best")
    return save_figure(fig, path)


def vmm_error_plot(result: dict, path: str | os.PathLike) -> Path:
    """Relative RMS error of the crossbar multiply against read noise, one line per ADC
    resolution."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    noise = np.array(result["read_noise_rel"]) * 100
    for bits, errs in zip(result["adc_bits"], result["relative_rms_error"], strict=True):
        ax.plot(noise, np.array(errs) * 100, marker="o", label=f"{bits}-bit ADC")
    ax.set_yscale("log")
    ax.set_xlabel("read noise (% of G, per cell, per read)")
    ax.set_ylabel("relative RMS error of x @ (G+ - G-) (%)")
    ax.set_title(f"crossbar multiply vs ideal matmul ({result['rows']} rows x "
                 f"{result['cols']} pairs, {100 * result['activity']:.0f} % active)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def conductance_map(g_us: np.ndarray, path: str | os.PathLike, title: str = "") -> Path:
    """The conductances of a region as an image (rows down, columns across), uS."""
    fig = Figure(figsize=(5, 4.2))
    ax = fig.add_subplot()
    im = ax.imshow(g_us, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, label="conductance (uS)")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    return save_figure(fig, path)


def training_curves(curves: dict, best_epoch: int, path: str | os.PathLike,
                    val_label: str = "validation accuracy",
                    val_axis: str | None = None) -> Path:
    """Training loss per epoch (left axis) and the validation score that selects the epoch
    (right axis), with the selected epoch marked."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.plot(curves["loss"], label="training loss")
    ax2 = ax.twinx()
    ax2.plot(curves["val"], color="C1", label=val_label)
    ax2.axvline(best_epoch, color="C1", ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if val_axis:
        ax2.set_ylabel(val_axis)
    fig.legend(loc="upper right", fontsize=8)
    return save_figure(fig, path)


def confusion_axes(ax, confusion, classes, title: str = "", xlabel: str = "predicted",
                   ylabel: str = "true") -> None:
    """Draw a confusion matrix (counts, rows: true class) on ``ax``."""
    ax.imshow(np.asarray(confusion), cmap="Blues")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)


def confusion_plot(confusion, classes, path: str | os.PathLike, title: str = "") -> Path:
    """One confusion matrix as a PNG (see :func:`confusion_axes`)."""
    fig = Figure(figsize=(4.5, 4))
    confusion_axes(fig.add_subplot(), confusion, classes, title)
    return save_figure(fig, path)
