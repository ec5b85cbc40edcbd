"""Evaluation helpers shared by the supervised readouts and the zero-shot protocol: the
confusion matrix and the per-class hold-out of sample groups (validation carved from training)."""

from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrix", "group_holdout_mask"]


def confusion_matrix(y_true, y_pred, classes) -> np.ndarray:
    """Counts ``C[i, j]`` of samples of class ``classes[i]`` predicted as ``classes[j]``.

    Samples whose true class is not in ``classes`` are not counted.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
    classes : array-like of int
        Row and column order.

    Returns
    -------
    ndarray of int64, shape (len(classes), len(classes))
    """
    classes = np.asarray(classes)
    index = {c: i for i, c in enumerate(classes.tolist())}
    out = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist(), strict=True):
        if t in index:
            out[index[t], index[p]] += 1
    return out


def group_holdout_mask(labels, groups, fraction: float, rng: np.random.Generator,
                       what: str = "data") -> np.ndarray:
    """Validation mask: per class, ``max(1, round(fraction * g))`` of its ``g`` sample groups
    (speakers; or samples when ``groups`` is None), drawn without replacement with ``rng``,
    classes in ascending order. A group never straddles the two parts.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
    groups : array-like, shape (n,), or None
    fraction : float
        Share of each class's groups held out, in (0, 1).
    rng : numpy.random.Generator
    what : str
        Named in errors.

    Returns
    -------
    ndarray of bool, shape (n,)
        True for the held-out (validation) samples.

    Raises
    ------
    ValueError
        A class with too few groups to keep one on each side.
    """
    labels = np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    val = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        g = np.unique(groups[labels == c])
        n_val = max(1, int(round(fraction * len(g))))
        if n_val >= len(g):
            raise ValueError(f"{what}: class {c} has {len(g)} sample group(s); cannot hold out "
                             "a validation part and keep one for training")
        chosen = rng.choice(g, n_val, replace=False)
        val |= (labels == c) & np.isin(groups, chosen)
    return val
