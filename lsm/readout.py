"""Supervised readouts on LSM features: linear probe, one-layer and MLP classifiers.

Validation is carved from the training split (per class; by group, e.g. speaker, when groups are
given); early stopping and every choice look only at it. The test split is scored once, by
:func:`train_and_test`, after the readout is fixed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lsm.metrics import confusion_matrix, group_holdout_mask
from lsm.torch_backend import torch_threads
from lsm.validation import check_int, check_number

__all__ = ["ReadoutConfig", "Readout", "fit_readout", "train_and_test", "split_train_val"]


@dataclass(frozen=True)
class ReadoutConfig:
    """Settings of a supervised readout.

    Parameters
    ----------
    kind : {"linear", "mlp", "probe"}
        One linear layer; Linear-GELU-Linear with ``hidden`` units; or scikit-learn's
        logistic regression (L2 strength chosen on validation).
    hidden : int
    epochs : int
        Upper bound; early stopping on validation accuracy with ``patience`` epochs.
    lr, weight_decay, batch_size : Adam and batching.
    val_fraction : float
        Part of the training split held out for validation.
    """

    kind: str = "linear"
    hidden: int = 128
    epochs: int = 300
    patience: int = 30
    lr: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 128
    val_fraction: float = 0.15

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "mlp", "probe"):
            raise ValueError(f"kind must be 'linear', 'mlp' or 'probe', got {self.kind!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("hidden", "epochs", "patience", "batch_size"):
            check_int("ReadoutConfig", name, getattr(self, name), 1)
        check_number("ReadoutConfig", "lr", self.lr, 0.0, 1e3, low_open=True)
        check_number("ReadoutConfig", "weight_decay", self.weight_decay, 0.0, 1e3)


def _check_features(x: np.ndarray, y: np.ndarray, name: str) -> None:
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"{name}: features must be (n, d) with n labels, got {x.shape}, "
                         f"{y.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{name}: features row {r}, column {c} is {x[r, c]} (NaN or inf)")


def split_train_val(labels: np.ndarray, fraction: float, rng: np.random.Generator,
                    groups: np.ndarray | None = None) -> np.ndarray:
    """Boolean validation mask: per class, about ``fraction`` of the groups (or samples);
    see :func:`lsm.metrics.group_holdout_mask`."""
    return group_holdout_mask(labels, groups, fraction, rng, "training split")


@dataclass
class Readout:
    """A fitted readout; ``predict`` maps features to class labels."""

    cfg: ReadoutConfig
    classes: np.ndarray
    model: object
    mean: np.ndarray
    scale: np.ndarray
    val_accuracy: float
    best_epoch: int
    curves: dict = field(default_factory=dict)

    def _z(self, x):
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.scale).astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = self._z(x)
        if self.cfg.kind == "probe":
            return self.model.predict(z)
        with torch.no_grad():
            return self.classes[self.model(torch.from_numpy(z)).argmax(1).numpy()]


def fit_readout(x: np.ndarray, y: np.ndarray, cfg: ReadoutConfig = ReadoutConfig(),
                seed: int = 0, groups: np.ndarray | None = None) -> Readout:
    """Fit on the training split, with validation carved from it (the test split is not seen).
    Trains with one torch thread (see :func:`lsm.torch_backend.torch_threads`)."""
    with torch_threads(1):
        return _fit_readout(x, y, cfg, seed, groups)


def _fit_readout(x, y, cfg: ReadoutConfig, seed: int, groups) -> Readout:
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    _check_features(x, y, "training")
    rng = np.random.default_rng(seed)
    val = split_train_val(y, cfg.val_fraction, rng, groups)
    mean, scale = x[~val].mean(0), x[~val].std(0) + 1e-6
    zt, zv = (x[~val] - mean) / scale, (x[val] - mean) / scale
    classes = np.unique(y)
    if cfg.kind == "probe":
        from sklearn.linear_model import LogisticRegression

        best = None
        for c in (0.01, 0.1, 1.0, 10.0):
            m = LogisticRegression(C=c, max_iter=3000).fit(zt, y[~val])
            acc = float((m.predict(zv) == y[val]).mean())
            if best is None or acc > best[0]:
                best = (acc, c, m)
        return Readout(cfg, classes, best[2], mean, scale, best[0], 0, {"C": best[1]})
    torch.manual_seed(seed)
    d = x.shape[1]
    net = (nn.Linear(d, len(classes)) if cfg.kind == "linear" else
           nn.Sequential(nn.Linear(d, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, len(classes))))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    index = {c: i for i, c in enumerate(classes)}
    yt = torch.tensor([index[c] for c in y[~val]])
    yv = np.array([index[c] for c in y[val]])
    xt, xv = torch.from_numpy(zt.astype(np.float32)), torch.from_numpy(zv.astype(np.float32))
    best = (-1.0, 0, None)
    curves = {"loss": [], "val": []}
    for epoch in range(cfg.epochs):
        net.train()
        perm = torch.from_numpy(rng.permutation(len(yt)))
        total = 0.0
        for lo in range(0, len(perm), cfg.batch_size):
            b = perm[lo:lo + cfg.batch_size]
            loss = F.cross_entropy(net(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        net.eval()
        with torch.no_grad():
            acc = float((net(xv).argmax(1).numpy() == yv).mean())
        curves["loss"].append(total / len(yt))
        curves["val"].append(acc)
        if acc > best[0]:
            best = (acc, epoch, copy.deepcopy(net.state_dict()))
        elif epoch - best[1] >= cfg.patience:
            break
    net.load_state_dict(best[2])
    net.eval()
    return Readout(cfg, classes, net, mean, scale, best[0], best[1], curves)


def train_and_test(x_train, y_train, x_test, y_test, cfg: ReadoutConfig = ReadoutConfig(),
                   seed: int = 0, groups=None) -> dict:
    """Fit (train/validation only), then score the test split once."""
    _check_features(np.asarray(x_test), np.asarray(y_test), "test")
    r = fit_readout(x_train, y_train, cfg, seed, groups)
    pred = r.predict(x_test)
    y_test = np.asarray(y_test)
    confusion = confusion_matrix(y_test, pred, r.classes)
    return {"test_accuracy": float((pred == y_test).mean()), "val_accuracy": r.val_accuracy,
            "best_epoch": r.best_epoch, "chance": float(np.max(np.bincount(y_test)) / len(y_test)),
            "confusion": confusion.tolist(), "classes": r.classes.tolist(), "readout": r}
