"""Cross-modal retrieval and zero-shot classification metrics, each with its chance level."""

from __future__ import annotations

import numpy as np
from scipy.special import comb

__all__ = ["retrieval", "retrieval_chance", "prototype_classification", "similarity"]


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


def retrieval_chance(q_labels: np.ndarray, g_labels: np.ndarray, ks=(1, 5)) -> dict:
    """Expected top-k hit rate of a random ranking: per query, ``1 - C(N - n_c, k) / C(N, k)``
    with ``n_c`` gallery items of its class among ``N``."""
    n = len(g_labels)
    out = {}
    for k in ks:
        p = []
        for c in q_labels:
            n_c = int((g_labels == c).sum())
            p.append(1.0 - comb(n - n_c, k, exact=False) / comb(n, k, exact=False))
        out[f"top{k}"] = float(np.mean(p))
    return out


def prototype_classification(q: np.ndarray, q_labels: np.ndarray, g: np.ndarray,
                             g_labels: np.ndarray) -> dict:
    """Zero-shot classification: each query takes the class whose prototype (the mean gallery
    embedding of that class, from the other modality) is most similar. Chance: 1 / classes."""
    classes = np.unique(g_labels)
    protos = np.stack([g[g_labels == c].mean(0) for c in classes])
    pred = classes[np.argmax(similarity(q, protos), axis=1)]
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    index = {c: i for i, c in enumerate(classes)}
    for t, p in zip(q_labels, pred, strict=True):
        if t in index:
            confusion[index[t], index[p]] += 1
    return {"accuracy": float((pred == q_labels).mean()), "chance": 1.0 / len(classes),
            "classes": classes.tolist(), "confusion": confusion.tolist()}
