"""Cross-modal retrieval and zero-shot classification metrics, each with its chance level."""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import comb

from lsm.metrics import confusion_matrix

__all__ = ["retrieval", "retrieval_chance", "retrieval_top1_both_ways",
           "prototype_classification", "similarity", "versus_chance"]


def similarity(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix (queries x gallery)."""
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return qn @ gn.T


def retrieval(q: np.ndarray, q_labels: np.ndarray, g: np.ndarray, g_labels: np.ndarray,
              ks=(1, 5)) -> dict:
    """Top-k class retrieval: a query scores a hit at k when one of its k nearest gallery items
    (cosine) has its digit. Returns ``{"top1": ..., "top5": ...}``."""
    s = similarity(q, g)
    order = np.argsort(-s, axis=1, kind="stable")
    hits = g_labels[order] == q_labels[:, None]
    return {f"top{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


def retrieval_top1_both_ways(z_vision: np.ndarray, labels_vision: np.ndarray,
                             z_audio: np.ndarray, labels_audio: np.ndarray) -> float:
    """Mean of top-1 retrieval audio -> image and image -> audio: the validation score that
    selects heads and epochs."""
    a2i = retrieval(z_audio, labels_audio, z_vision, labels_vision, ks=(1,))["top1"]
    i2a = retrieval(z_vision, labels_vision, z_audio, labels_audio, ks=(1,))["top1"]
    return 0.5 * (a2i + i2a)


def retrieval_chance(q_labels: np.ndarray, g_labels: np.ndarray, ks=(1, 5)) -> dict:
    """Expected top-k hit rate of a random ranking: per query, ``1 - C(N - n_c, k) / C(N, k)``
    with ``n_c`` gallery items of its class among ``N`` (``k`` capped at ``N``)."""
    n = len(g_labels)
    out = {}
    for k in ks:
        kk = min(k, n)  # a gallery smaller than k: all of it is retrieved
        p = []
        for c in q_labels:
            n_c = int((g_labels == c).sum())
            p.append(1.0 - comb(n - n_c, kk, exact=False) / comb(n, kk, exact=False))
        out[f"top{k}"] = float(np.mean(p))
    return out


def prototype_classification(q: np.ndarray, q_labels: np.ndarray, g: np.ndarray,
                             g_labels: np.ndarray) -> dict:
    """Zero-shot classification: each query takes the class whose prototype (the mean gallery
    embedding of that class, from the other modality) is most similar. Chance: 1 / classes."""
    classes = np.unique(g_labels)
    protos = np.stack([g[g_labels == c].mean(0) for c in classes])
    pred = classes[np.argmax(similarity(q, protos), axis=1)]
    confusion = confusion_matrix(q_labels, pred, classes)
    return {"accuracy": float((pred == q_labels).mean()), "chance": 1.0 / len(classes),
            "classes": classes.tolist(), "confusion": confusion.tolist()}


def versus_chance(values, chance: float, alpha: float = 0.05, bounds=(0.0, 1.0)) -> dict:
    """Is a metric measured over independent runs (seeds with fresh reservoir draws) above chance?

    The unit of replication is the run: samples of one test set share one trained model, so a
    binomial test over test samples would overstate the evidence. With ``n`` runs of mean
    ``m`` and sample standard deviation ``s``::

        t = (m - chance) / (s / sqrt(n)),    p = P(T_{n-1} >= t)      (one-sided)
        CI = m +- t_{n-1, 0.975} * s / sqrt(n)                         (two-sided, 95 %)

    clipped to ``bounds`` (a rate cannot leave [0, 1]; pass None for an unbounded metric).

    Parameters
    ----------
    values : array-like of float
        The metric of each run.
    chance : float
        The metric's chance level.
    alpha : float
        Significance level of the verdict.
    bounds : (float, float) or None
        Range of the metric; the interval is clipped to it.

    Returns
    -------
    dict
        ``mean``, ``std`` (ddof 1), ``n``, ``chance``, ``ci95`` ([low, high], or None for one
        run), ``p_above_chance`` (None for one run; 0 or 1 when every run gave the same
        value) and ``above_chance`` (``p_above_chance < alpha``).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0 or not np.isfinite(v).all():
        raise ValueError(f"values must be a non-empty 1-D array of finite numbers, got {values!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n, mean = len(v), float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    out = {"mean": mean, "std": std, "n": n, "chance": float(chance), "ci95": None,
           "p_above_chance": None, "above_chance": False}
    if n < 2:
        return out
    if std == 0.0:
        p = 0.0 if mean > chance else 1.0
        out["ci95"] = [mean, mean]
    else:
        sem = std / np.sqrt(n)
        p = float(stats.t.sf((mean - chance) / sem, df=n - 1))
        half = float(stats.t.ppf(0.975, df=n - 1) * sem)
        lo, hi = mean - half, mean + half
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        out["ci95"] = [lo, hi]
    out["p_above_chance"] = p
    out["above_chance"] = bool(p < alpha)
    return out
