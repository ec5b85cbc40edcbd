"""Zero-shot multimodal protocol: contrastive heads on LSM features of vision and audio digits.

Honest evaluation, unlike the reference code:

* heads train on seen classes (1-7 by default) of the *training* splits only, with pairs of
  same-digit samples re-drawn every epoch (never file order);
* a validation split is carved from the training split, and everything that is chosen (epoch,
  temperature, embedding size) is chosen on it. By default the split is *by class*
  (``selection="held_out_classes"``, the protocol zero-shot learning asks for, Xian et al.,
  TPAMI 2019): the seen classes are cut into folds, heads trained on the other seen classes are
  scored by zero-shot retrieval on each fold, and the settings and epoch with the best mean
  score are then trained on all seen classes. ``selection="seen_samples"`` holds out samples of
  every seen class instead (by speaker for audio) and selects for seen-class retrieval, which
  favours late epochs that fit the seen classes;
* the test splits are read once, after the model is fixed (:func:`evaluate`); unseen classes
  (8, 9 by default) never appear before that;
* every metric is reported beside its chance level, and :func:`run_zeroshot` repeats the whole
  thing over several seeds and fresh reservoir weight draws.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from lsm.contrastive.heads import ProjectionHead
from lsm.contrastive.losses import LOSSES, Temperature, check_temperature
from lsm.contrastive.metrics import (
    prototype_classification,
    retrieval,
    retrieval_chance,
    retrieval_top1_both_ways,
)
from lsm.metrics import group_holdout_mask
from lsm.progress import progress_bar
from lsm.torch_backend import torch_threads

__all__ = ["ModalityData", "ZeroShotConfig", "ZeroShotModel", "SELECTIONS", "validate_inputs",
           "epoch_pairs", "train_heads", "class_folds", "split_validation", "validation_mask",
           "fit", "evaluate", "zeroshot_protocol"]

#: how the validation part of the seen classes is carved (see the module text)
SELECTIONS = ("held_out_classes", "seen_samples")


@dataclass
class ModalityData:
    """Features of one modality: ``features`` (n, d) float32, ``labels`` (n,) digits, and
    ``groups`` (n,) that must not straddle train and validation (speakers for audio)."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.features.ndim != 2 or len(self.features) != len(self.labels):
            raise ValueError(f"{self.name}: features must be (n, d) with n labels, got "
                             f"{self.features.shape} and {self.labels.shape}")
        if self.groups is None:
            self.groups = np.arange(len(self.labels))
        self.groups = np.asarray(self.groups)

    def subset(self, mask: np.ndarray) -> ModalityData:
        return ModalityData(self.name, self.features[mask], self.labels[mask], self.groups[mask])

    def classes(self, keep) -> ModalityData:
        return self.subset(np.isin(self.labels, list(keep)))


@dataclass(frozen=True)
class ZeroShotConfig:
    """Settings of the contrastive training and the protocol (paper defaults).

    ``embed_dims`` and ``temperatures`` are candidate lists: each combination is trained and the
    one with the best validation retrieval is kept (with its best epoch). ``selection`` is one
    of :data:`SELECTIONS`; ``n_class_folds`` is the number of class folds of
    ``"held_out_classes"`` (each fold needs two classes at least), ``val_fraction`` the share
    of samples (speakers) held out per class by ``"seen_samples"``.
    """

    seen: tuple = (1, 2, 3, 4, 5, 6, 7)
    unseen: tuple = (8, 9)
    val_fraction: float = 0.2
    loss: str = "clip"
    embed_dims: tuple = (64,)
    temperatures: tuple = (1.0,)
    learnable_temperature: bool = False
    n_layers: int = 1
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 64
    selection: str = "held_out_classes"
    n_class_folds: int = 3

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        overlap = set(self.seen) & set(self.unseen)
        if overlap:
            raise ValueError(f"unseen classes {sorted(overlap)} also appear in training "
                             f"(seen = {list(self.seen)})")
        if not self.seen or not self.unseen:
            raise ValueError("seen and unseen classes must both be non-empty")
        for t in self.temperatures:
            check_temperature(t)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 2 or not self.lr > 0:
            raise ValueError("epochs >= 1, batch_size >= 2 and lr > 0 are required")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.selection == "held_out_classes" and not \
                2 <= self.n_class_folds <= len(self.seen) // 2:
            raise ValueError(f"n_class_folds must be in [2, {len(self.seen) // 2}] for "
                             f"{len(self.seen)} seen classes (two classes per fold at least), "
                             f"got {self.n_class_folds}")


@dataclass
class ZeroShotModel:
    vision: ProjectionHead
    audio: ProjectionHead
    temperature: float
    embed_dim: int
    best_epoch: int
    val_score: float
    curves: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    selection: str = "seen_samples"
    candidate_index: int = 0  # which entry of ``candidates`` was selected

    @torch.no_grad()
    def embed(self, data: ModalityData) -> np.ndarray:
        head = self.vision if data.name == "vision" else self.audio
        head.eval()
        return head(torch.from_numpy(data.features)).numpy()


def validate_inputs(vision: ModalityData, audio: ModalityData, classes) -> None:
    """Clear errors before training: non-finite features, a class missing in a modality, no
    overlap between the modalities' classes."""
    for d in (vision, audio):
        bad = ~np.isfinite(d.features)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"{d.name} features: row {r}, column {c} is {d.features[r, c]} "
                             "(NaN or inf)")
    common = set(vision.labels.tolist()) & set(audio.labels.tolist())
    if not common:
        raise ValueError(f"the modalities share no class (vision {sorted(set(vision.labels))}, "
                         f"audio {sorted(set(audio.labels))})")
    for d in (vision, audio):
        missing = sorted(set(classes) - set(d.labels.tolist()))
        if missing:
            raise ValueError(f"{d.name}: no samples of class(es) {missing}")


def validation_mask(d: ModalityData, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Per class, about ``fraction`` of the groups (samples, or speakers for audio), as a mask
    (:func:`lsm.metrics.group_holdout_mask`)."""
    return group_holdout_mask(d.labels, d.groups, fraction, rng, d.name)


def split_validation(d: ModalityData, fraction: float, rng: np.random.Generator
                     ) -> tuple[ModalityData, ModalityData]:
    """(train, validation) parts of ``d`` (see :func:`validation_mask`)."""
    val = validation_mask(d, fraction, rng)
    return d.subset(~val), d.subset(val)


def class_folds(classes, n_folds: int, rng: np.random.Generator) -> list[tuple]:
    """The classes shuffled and cut into ``n_folds`` folds of (nearly) equal size."""
    order = rng.permutation(np.asarray(classes))
    return [tuple(int(c) for c in f) for f in np.array_split(order, n_folds)]


def epoch_pairs(v_labels, a_labels, rng):
    """Same-digit (vision, audio) index pairs, re-drawn: per class as many pairs as the larger
    modality has samples, the smaller one sampled with replacement."""
    vi, ai = [], []
    for c in np.intersect1d(np.unique(v_labels), np.unique(a_labels)):
        v = np.flatnonzero(v_labels == c)
        a = np.flatnonzero(a_labels == c)
        m = max(len(v), len(a))
        vi.append(rng.permutation(np.resize(rng.permutation(v), m)))
        ai.append(rng.permutation(np.resize(rng.permutation(a), m)))
    vi, ai = np.concatenate(vi), np.concatenate(ai)
    order = rng.permutation(len(vi))
    return vi[order], ai[order]


def _val_score(vision, audio, val_v: ModalityData, val_a: ModalityData) -> float:
    with torch.no_grad():
        zv = vision(torch.from_numpy(val_v.features)).numpy()
        za = audio(torch.from_numpy(val_a.features)).numpy()
    return retrieval_top1_both_ways(zv, val_v.labels, za, val_a.labels)


def train_heads(train_v, train_a, val_v, val_a, cfg: ZeroShotConfig, embed_dim: int,
                temperature: float, seed: int, on_epoch=None,
                keep_epoch: int | None = None, bar=None) -> ZeroShotModel:
    """Train one pair of heads (one embedding size, one temperature) for ``cfg.epochs``; keep
    the epoch with the best validation retrieval, or epoch ``keep_epoch`` when given (then
    ``val_v`` and ``val_a`` may be None). Reads only the training and validation parts.

    ``on_epoch(epoch, vision_head, audio_head)``, when given, is called after every epoch with
    the heads in eval mode; it observes and must not train. The protocol never passes one
    (``examples/selection_bias.py`` uses it to measure what selecting on the test set does).
    ``bar``, when given, is a progress bar advanced by one per epoch.
    """
    if keep_epoch is None and (val_v is None or val_a is None):
        raise ValueError("train_heads needs validation data (val_v, val_a) or a keep_epoch")
    if keep_epoch is not None and not 0 <= keep_epoch < cfg.epochs:
        raise ValueError(f"keep_epoch must be in [0, {cfg.epochs}), got {keep_epoch}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    vision = ProjectionHead(train_v.features.shape[1], embed_dim, cfg.n_layers)
    audio = ProjectionHead(train_a.features.shape[1], embed_dim, cfg.n_layers)
    temp = Temperature(temperature, learnable=cfg.learnable_temperature)
    params = list(vision.parameters()) + list(audio.parameters()) + list(temp.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    loss_fn = LOSSES[cfg.loss]
    fv, fa = torch.from_numpy(train_v.features), torch.from_numpy(train_a.features)
    lab = torch.from_numpy(train_v.labels)
    curves = {"loss": [], "val": []}
    best = (-1.0, 0, None)
    for epoch in range(cfg.epochs):
        vision.train()
        audio.train()
        vi, ai = epoch_pairs(train_v.labels, train_a.labels, rng)
        total, n = 0.0, 0
        for lo in range(0, len(vi), cfg.batch_size):
            bv, ba = vi[lo:lo + cfg.batch_size], ai[lo:lo + cfg.batch_size]
            if len(bv) < 2:
                continue
            zv, za = vision(fv[bv]), audio(fa[ba])
            t = temp()
            loss = loss_fn(za, zv, lab[bv], t) if cfg.loss == "supcon" else loss_fn(za, zv, t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(bv)
            n += len(bv)
        vision.eval()
        audio.eval()
        curves["loss"].append(total / max(n, 1))
        if val_v is not None:
            score = _val_score(vision, audio, val_v, val_a)
            curves["val"].append(score)
        if on_epoch is not None:
            with torch.no_grad():
                on_epoch(epoch, vision, audio)
        if bar is not None:
            bar.update(1)
        keep = epoch == keep_epoch if keep_epoch is not None else score > best[0]
        if keep:
            best = (score if val_v is not None else float("nan"), epoch,
                    (copy.deepcopy(vision.state_dict()), copy.deepcopy(audio.state_dict()),
                     float(temp())))
    vision.load_state_dict(best[2][0])
    audio.load_state_dict(best[2][1])
    return ZeroShotModel(vision, audio, best[2][2], embed_dim, best[1], best[0], curves)


def fit(vision: ModalityData, audio: ModalityData, cfg: ZeroShotConfig = ZeroShotConfig(),
        seed: int = 0, on_epoch=None, progress: bool = False) -> tuple[ZeroShotModel, dict]:
    """Train heads on the seen classes of the training data and select on validation
    (``cfg.selection``, see the module text).

    Only ``vision`` and ``audio`` (training splits) are read here; no test data.

    Parameters
    ----------
    vision, audio : ModalityData
        Training splits; only their seen classes are used.
    cfg : ZeroShotConfig
    seed : int
        Seeds the validation split, the pairing and the heads' initialisation.
    on_epoch : callable, optional
        ``on_epoch(candidate, epoch, vision_head, audio_head)`` after every epoch of each
        training whose heads can be returned (every candidate with ``"seen_samples"``, the
        final training with ``"held_out_classes"``); it observes, it must not train.
    progress : bool
        Show a progress bar over every epoch of every training (plain lines off a terminal).

    Returns
    -------
    model : ZeroShotModel
        The selected heads (``model.curves["val"]`` is the validation curve that chose the
        epoch; ``model.candidates`` lists every setting's score and best epoch).
    split : dict
        Sizes of the train / validation parts (and the class folds).
    """
    validate_inputs(vision, audio, cfg.seen)
    rng = np.random.default_rng(seed)
    grid = list(itertools.product(cfg.embed_dims, cfg.temperatures))
    trainings = len(grid) * (1 if cfg.selection == "seen_samples" else cfg.n_class_folds + 1)
    with progress_bar(total=trainings * cfg.epochs, desc=f"heads (seed {seed})", unit="epoch",
                      disable=not progress, leave=False) as bar, torch_threads(1):
        return _fit(vision, audio, cfg, seed, on_epoch, rng, grid, bar)


def _fit(vision, audio, cfg, seed, on_epoch, rng, grid, bar):
    if cfg.selection == "seen_samples":
        tv, va = split_validation(vision.classes(cfg.seen), cfg.val_fraction, rng)
        ta, aa = split_validation(audio.classes(cfg.seen), cfg.val_fraction, rng)
        best, candidates = None, []
        for k, (dim, temp) in enumerate(grid):
            hook = None if on_epoch is None else (lambda e, v, a, k=k: on_epoch(k, e, v, a))
            m = train_heads(tv, ta, va, aa, cfg, dim, temp, seed * 1000 + k, hook, bar=bar)
            candidates.append({"embed_dim": dim, "temperature": temp, "val_score": m.val_score,
                               "best_epoch": m.best_epoch})
            if best is None or m.val_score > best.val_score:
                best, best.candidate_index = m, k
        best.candidates = candidates
        best.selection = cfg.selection
        sizes = {"train_vision": len(tv.labels), "val_vision": len(va.labels),
                 "train_audio": len(ta.labels), "val_audio": len(aa.labels)}
        return best, sizes

    # held-out classes: every fold of seen classes is validated zero-shot by heads trained on
    # the other seen classes; the mean curve over folds picks the setting and the epoch
    sv, sa = vision.classes(cfg.seen), audio.classes(cfg.seen)
    folds = class_folds(cfg.seen, cfg.n_class_folds, rng)
    candidates, best_k = [], 0
    for k, (dim, temp) in enumerate(grid):
        curves = []
        for f, fold in enumerate(folds):
            rest = [c for c in cfg.seen if c not in fold]
            m = train_heads(sv.classes(rest), sa.classes(rest), sv.classes(fold),
                            sa.classes(fold), cfg, dim, temp, seed * 1000 + 10 * k + f, bar=bar)
            curves.append(m.curves["val"])
        mean_curve = np.mean(curves, axis=0)
        # ties (a saturated score) go to the latest epoch: as good on held-out classes, and
        # better trained on the seen ones
        epoch = int(len(mean_curve) - 1 - np.argmax(mean_curve[::-1]))
        candidates.append({"embed_dim": dim, "temperature": temp,
                           "val_score": float(mean_curve[epoch]), "best_epoch": epoch,
                           "val_curve": mean_curve.tolist()})
        if candidates[k]["val_score"] > candidates[best_k]["val_score"]:
            best_k = k
    chosen = candidates[best_k]
    hook = None if on_epoch is None else (lambda e, v, a: on_epoch(best_k, e, v, a))
    model = train_heads(sv, sa, None, None, cfg, chosen["embed_dim"], chosen["temperature"],
                        seed * 1000 + 999, hook, keep_epoch=chosen["best_epoch"], bar=bar)
    model.val_score = chosen["val_score"]
    model.curves["val"] = chosen["val_curve"]
    model.candidates = candidates
    model.candidate_index = best_k
    model.selection = cfg.selection
    sizes = {"train_vision": len(sv.labels), "train_audio": len(sa.labels),
             "class_folds": [list(f) for f in folds]}
    return model, sizes


def evaluate(model: ZeroShotModel, vision: ModalityData, audio: ModalityData,
             cfg: ZeroShotConfig = ZeroShotConfig()) -> dict:
    """Test metrics (call once, on the test splits): for the unseen classes and for the seen
    ones, top-1/top-5 retrieval in both directions and prototype classification, each with its
    chance level."""
    validate_inputs(vision, audio, tuple(cfg.unseen))
    zv_all, za_all = model.embed(vision), model.embed(audio)
    out = {}
    for name, classes in (("unseen", cfg.unseen), ("seen", cfg.seen)):
        mv, ma = np.isin(vision.labels, classes), np.isin(audio.labels, classes)
        if not mv.any() or not ma.any():
            continue
        zv, lv, za, la = zv_all[mv], vision.labels[mv], za_all[ma], audio.labels[ma]
        block = {}
        for direction, (q, lq, g, lg) in (("audio_to_image", (za, la, zv, lv)),
                                          ("image_to_audio", (zv, lv, za, la))):
            r = retrieval(q, lq, g, lg)
            ch = retrieval_chance(lq, lg)
            proto = prototype_classification(q, lq, g, lg)
            block[direction] = {"top1": r["top1"], "top1_chance": ch["top1"],
                                "top5": r["top5"], "top5_chance": ch["top5"],
                                "prototype_accuracy": proto["accuracy"],
                                "prototype_chance": proto["chance"],
                                "confusion": proto["confusion"], "classes": proto["classes"]}
        block["n_vision"], block["n_audio"] = int(mv.sum()), int(ma.sum())
        out[name] = block
    return out


def zeroshot_protocol(train_vision: ModalityData, train_audio: ModalityData,
                      test_vision: ModalityData, test_audio: ModalityData,
                      cfg: ZeroShotConfig = ZeroShotConfig(), seed: int = 0,
                      progress: bool = False) -> dict:
    """fit on the training splits, then evaluate once on the test splits."""
    model, sizes = fit(train_vision, train_audio, cfg, seed, progress=progress)
    metrics = evaluate(model, test_vision, test_audio, cfg)
    return {"model": model, "sizes": sizes, "metrics": metrics,
            "selected": {"embed_dim": model.embed_dim, "temperature": model.temperature,
                         "best_epoch": model.best_epoch, "val_score": model.val_score},
            "config": dataclasses.asdict(cfg)}
