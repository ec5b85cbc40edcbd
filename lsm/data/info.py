"""`lsm data info`: what a dataset folder or file holds, and a picture of a few samples."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lsm.data.formats import BadSampleError

__all__ = ["dataset_info", "plot_samples"]


def dataset_info(ds, progress: bool = True) -> dict:
    """Per-class counts, events per sample and durations; unreadable samples are counted."""
    from lsm.progress import progress_bar

    n_events, durations, bad = [], [], list(ds.skipped)
    it = ds.iter_events() if hasattr(ds, "iter_events") else (
        (i, _safe_get(ds, i)) for i in range(len(ds)))
    for i, ev in progress_bar(it, total=len(ds), desc="scan", disable=not progress, leave=False):
        if isinstance(ev, BadSampleError):
            bad.append((ds.sample_ids[i], str(ev)))
            continue
        n_events.append(len(ev))
        durations.append((int(ev["t"][-1]) - int(ev["t"][0])) / 1000.0)
    labels, counts = np.unique(ds.labels, return_counts=True)

    def summary(v):
        return ({"min": float(np.min(v)), "median": float(np.median(v)), "max": float(np.max(v))}
                if len(v) else {})

    return {"dataset": type(ds).__name__, "split": ds.split, "samples": len(ds),
            "per_class": {int(k): int(c) for k, c in zip(labels, counts, strict=True)},
            "events_per_sample": summary(n_events), "duration_ms": summary(durations),
            "bad_samples": len(bad), "bad": [b[1] for b in bad[:20]]}


def _safe_get(ds, i):
    try:
        return ds[i][0]
    except BadSampleError as exc:
        return exc


def plot_samples(ds, path: str | os.PathLike, n: int = 6) -> Path:
    """Event-count frames for N-MNIST, channel rasters for N-TIDIGITS; one sample per class
    first, in class order."""
    from matplotlib.figure import Figure

    from lsm.plots import save_figure

    labels = np.asarray(ds.labels)
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    picks = (firsts + [i for i in range(len(ds)) if i not in firsts])[:n]
    fig = Figure(figsize=(2.2 * len(picks), 2.6))
    for k, i in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), k + 1)
        try:
            ev, label = ds[int(i)]
        except BadSampleError:
            ax.set_title("unreadable")
            ax.axis("off")
            continue
        if "y" in ev.dtype.names:
            frame = np.zeros((34, 34))
            np.add.at(frame, (ev["y"], ev["x"]), 1.0)
            ax.imshow(frame, cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.scatter(ev["t"] / 1000.0, ev["x"], s=0.3, c="k")
            ax.set_ylim(-1, 64)
            ax.set_xlabel("ms")
            if k == 0:
                ax.set_ylabel("channel")
        ax.set_title(f"label {label} ({len(ev)} ev)", fontsize=8)
    fig.suptitle(f"{type(ds).__name__} {ds.split}: {len(ds)} samples", fontsize=9)
    return save_figure(fig, path)
