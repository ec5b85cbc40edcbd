"""Projection heads: small digital networks that map LSM features into the shared embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """Linear or MLP head with GELU, optional L2 normalisation of the output.

    ``n_layers = 0`` is a single linear map; ``n_layers = k >= 1`` stacks ``k`` Linear+GELU blocks
    (hidden width ``hidden_dim``, the last block of width ``out_dim``). The paper's head is
    ``n_layers = 1``: one linear layer and a GELU, 200 -> 64.

    Parameters
    ----------
    in_dim : int
        Feature size (the reservoir's n_neurons).
    out_dim : int
        Embedding size (64 or 128 in the paper).
    n_layers : int
        0 (linear) to 3.
    hidden_dim : int
        Width of the hidden blocks when ``n_layers >= 2``.
    normalize : bool
        L2-normalise the embeddings (cosine similarities in the losses).
    """

    def __init__(self, in_dim: int, out_dim: int = 64, n_layers: int = 1, hidden_dim: int = 128,
                 normalize: bool = True) -> None:
        super().__init__()
        for name, v in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden_dim", hidden_dim)):
            if int(v) < 1:
                raise ValueError(f"ProjectionHead.{name} must be >= 1, got {v}")
        if not 0 <= n_layers <= 3:
            raise ValueError(f"ProjectionHead.n_layers must be in [0, 3], got {n_layers}")
        layers: list[nn.Module] = []
        if n_layers == 0:
            layers.append(nn.Linear(in_dim, out_dim))
        else:
            dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [out_dim]
            for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
                layers += [nn.Linear(d_in, d_out), nn.GELU()]
        self.net = nn.Sequential(*layers)
        self.normalize = normalize
        self.in_dim, self.out_dim, self.n_layers = in_dim, out_dim, n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return F.normalize(z, dim=-1) if self.normalize else z

    def macs_per_sample(self) -> int:
        """Multiply-accumulates of one forward pass."""
        return sum(m.in_features * m.out_features for m in self.net if isinstance(m, nn.Linear))
