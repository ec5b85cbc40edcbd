"""PNG figures of results people look at (matplotlib's object API, no display needed).

Every figure is written atomically: a temporary file beside the target, then a rename.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from lsm.io import atomic_path

__all__ = ["save_figure", "conductance_histogram", "vmm_error_plot"]


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
