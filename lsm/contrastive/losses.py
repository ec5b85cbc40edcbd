"""Contrastive losses between two modalities' embeddings ``a`` (batch, d) and ``b`` (batch, d).

Row ``i`` of ``a`` and row ``i`` of ``b`` form a positive pair. All losses take the embeddings as
given (the projection heads L2-normalise them by default) and a temperature ``T > 0``; logits are
``s_ij = a_i . b_j / T``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["check_temperature", "clip_loss", "soft_clip_loss", "cwcl_loss", "supcon_loss",
           "Temperature", "LOSSES"]


def check_temperature(temperature) -> None:
    t = float(temperature.detach()) if torch.is_tensor(temperature) else float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be finite and > 0, got {t}")


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"embeddings must be two (batch, dim) tensors of one shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


def clip_loss(a: torch.Tensor, b: torch.Tensor, temperature=1.0) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP; Radford et al. 2021)::

        L = 1/2 [ CE(S, I) + CE(S^T, I) ],   S_ij = a_i . b_j / T,
        CE(S, I) = -1/N sum_i log( exp(S_ii) / sum_j exp(S_ij) )
    """
    _check_pair(a, b)
    check_temperature(temperature)
    logits = a @ b.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def soft_clip_loss(a: torch.Tensor, b: torch.Tensor, temperature=1.0) -> torch.Tensor:
    """The soft-target CLIP variant of the paper's code (targets from intra-modal similarity)::

        S = a b^T / T,   Q = softmax( (a a^T + b b^T) / 2 * T )   (row-wise)
        L = 1/2 [ -1/N sum_i sum_j Q_ij log softmax_j(S)_ij
                  -1/N sum_i sum_j Q_ji log softmax_j(S^T)_ij ]

    Pairs that look alike within both modalities share probability mass, which softens the
    penalty on same-class "negatives" in a batch.
    """
    _check_pair(a, b)
    check_temperature(temperature)
    logits = a @ b.T / temperature
    # as in the reference code, the targets are not detached: gradients flow through them too
    targets = F.softmax((a @ a.T + b @ b.T) / 2 * temperature, dim=-1)
    loss_b = -(targets * F.log_softmax(logits, dim=-1)).sum(1)
    loss_a = -(targets.T * F.log_softmax(logits.T, dim=-1)).sum(1)
    return 0.5 * (loss_a + loss_b).mean()


def cwcl_loss(a: torch.Tensor, b: torch.Tensor, temperature=1.0) -> torch.Tensor:
    """Continuously weighted contrastive loss (CWCL; Srinivasa et al. 2023), symmetric.

    For the direction with anchor modality ``a``, every ``b_j`` is a positive for ``a_i`` with
    weight ``w_ij = (1 + cos(a_i, a_j)) / 2`` (intra-modal similarity of the anchor modality,
    detached), instead of the one-hot ``j = i``::

        L_a->b = -1/N sum_i [ sum_j w_ij log softmax_j(a_i . b_j / T) ] / sum_j w_ij

    and ``L = (L_a->b + L_b->a) / 2`` with the roles swapped.
    """
    _check_pair(a, b)
    check_temperature(temperature)

    def one_way(x, y):
        with torch.no_grad():
            xn = F.normalize(x, dim=-1)
            w = (1.0 + xn @ xn.T) / 2.0
        logp = F.log_softmax(x @ y.T / temperature, dim=-1)
        return (-(w * logp).sum(1) / w.sum(1)).mean()

    return 0.5 * (one_way(a, b) + one_way(b, a))


def supcon_loss(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor,
                temperature=1.0) -> torch.Tensor:
    """Cross-modal supervised contrastive loss (Khosla et al. 2020), symmetric.

    Every ``b_p`` with the label of ``a_i`` is a positive for ``a_i``::

        L_a->b = -1/N sum_i 1/|P(i)| sum_{p in P(i)} log( exp(a_i . b_p / T)
                                                          / sum_j exp(a_i . b_j / T) )

    ``L = (L_a->b + L_b->a) / 2``. ``P(i)`` always holds ``i`` itself (pairs share a label).
    """
    _check_pair(a, b)
    check_temperature(temperature)
    labels = torch.as_tensor(labels, device=a.device)
    if labels.shape != (a.shape[0],):
        raise ValueError(f"labels must have shape ({a.shape[0]},), got {tuple(labels.shape)}")
    pos = (labels[:, None] == labels[None, :]).to(a.dtype)

    def one_way(x, y):
        logp = F.log_softmax(x @ y.T / temperature, dim=-1)
        return (-(pos * logp).sum(1) / pos.sum(1)).mean()

    return 0.5 * (one_way(a, b) + one_way(b, a))


class Temperature(nn.Module):
    """A temperature, fixed or learnable: stored as its logarithm so it stays > 0, and clamped to
    [0.01, 100] as CLIP clamps its logit scale, so that it can neither underflow nor explode."""

    T_MIN, T_MAX = 0.01, 100.0

    def __init__(self, value: float = 1.0, learnable: bool = False) -> None:
        super().__init__()
        check_temperature(value)
        log_t = torch.tensor(math.log(value), dtype=torch.float32)
        if learnable:
            self.log_t = nn.Parameter(log_t)
        else:
            self.register_buffer("log_t", log_t)

    def forward(self) -> torch.Tensor:
        return self.log_t.clamp(math.log(self.T_MIN), math.log(self.T_MAX)).exp()


LOSSES = {"clip": clip_loss, "soft_clip": soft_clip_loss, "cwcl": cwcl_loss,
          "supcon": supcon_loss}
