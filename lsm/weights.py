"""Where the reservoir's fixed random weights come from.

A :class:`WeightSource` turns an :class:`~lsm.config.LSMConfig` into a :class:`WeightSet`: the input
matrix ``w_in`` (n_inputs, n_neurons), the recurrent matrix ``w_rec`` (n_neurons, n_neurons), both
float32, and a JSON-serialisable ``provenance`` that says how they were made (it keys the feature
cache, so two sources that could give different weights must describe themselves differently).

Sources here: :class:`GaussianWeights` (the paper's software baseline) and :class:`ArrayWeights`
(explicit arrays). The crossbar, measured-map and chip sources implement the same protocol.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lsm.config import LSMConfig

__all__ = [
    "WeightSet",
    "WeightSource",
    "GaussianWeights",
    "ArrayWeights",
    "DIFFERENTIAL_SIGMA_US",
    "as_weight_source",
]

#: Standard deviation (uS) of a differential pair ``G+ - G-`` of two cells whose conductances
#: each spread by 6.75 uS, the middle of the 6.6-6.9 uS of the paper's macro. The Gaussian
#: baseline draws with this sigma so that software and RRAM weights have the same scale.
DIFFERENTIAL_SIGMA_US = 6.75 * math.sqrt(2.0)


@dataclass(frozen=True)
class WeightSet:
    """Reservoir weights plus how they were made.

    Attributes
    ----------
    w_in : ndarray of float32, shape (n_inputs, n_neurons), C-contiguous
        ``w_in[c, i]`` is the weight from input channel ``c`` to neuron ``i``.
    w_rec : ndarray of float32, shape (n_neurons, n_neurons), C-contiguous
        ``w_rec[j, i]`` is the weight from neuron ``j`` to neuron ``i``.
    provenance : dict
        JSON-serialisable description of the source and its settings.
    """

    w_in: np.ndarray
    w_rec: np.ndarray
    provenance: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        """SHA-256 of both matrices' bytes and shapes: equal iff the weights are bit-identical."""
        h = hashlib.sha256()
        for a in (self.w_in, self.w_rec):
            h.update(repr(a.shape).encode())
            h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        return h.hexdigest()


@runtime_checkable
class WeightSource(Protocol):
    """Anything that can make reservoir weights for a config."""

    def build(self, config: LSMConfig) -> WeightSet:  # pragma: no cover - protocol
        ...


def check_weights(w_in: Any, w_rec: Any, config: LSMConfig,
                  source: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and values and return float32 C-contiguous copies.

    Raises
    ------
    ValueError
        Naming ``source``, the matrix and the first offending entry.
    """
    out = []
    expected = {"w_in": (config.n_inputs, config.n_neurons),
                "w_rec": (config.n_neurons, config.n_neurons)}
    for name, arr in (("w_in", w_in), ("w_rec", w_rec)):
        a = np.asarray(arr)
        if a.shape != expected[name]:
            raise ValueError(
                f"{source}: {name} has shape {a.shape}, expected {expected[name]} "
                f"(n_inputs={config.n_inputs}, n_neurons={config.n_neurons})"
            )
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{source}: {name} must be numeric, got dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=np.float32)
        bad = ~np.isfinite(a)
        if bad.any():
            r, c = np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape)
            raise ValueError(f"{source}: {name}[{r}, {c}] = {a[r, c]} is not finite")
        out.append(a)
    return out[0], out[1]


@dataclass(frozen=True)
class GaussianWeights:
    """The software baseline: ``w = const * N(0, sigma)``, optionally sparse.

    ``w_in = w_in_const * sigma * z * m_in`` and ``w_rec = w_rec_const * sigma * z * m_rec`` with
    ``z`` standard normal and ``m`` Bernoulli masks of probability ``config.p_in`` /
    ``config.p_rec``. Input and recurrent matrices use independent child streams of the seed, so
    changing ``p_rec`` does not change ``w_in``.

    Parameters
    ----------
    sigma : float
        Standard deviation of the draw before scaling by the weight const. The default,
        :data:`DIFFERENTIAL_SIGMA_US` (9.55, in uS), matches the spread of the RRAM differential
        pairs, so that the paper's const (0.07) and threshold (5.0) give an active reservoir.
    seed : int or None
        Seed of the draw; ``None`` uses ``config.seed``.
    """

    sigma: float = DIFFERENTIAL_SIGMA_US
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"GaussianWeights.sigma must be finite and > 0, got {self.sigma}")
        if self.seed is not None and (not isinstance(self.seed, (int, np.integer))
                                      or self.seed < 0):
            raise ValueError(f"GaussianWeights.seed must be a non-negative int, got {self.seed!r}")

    def build(self, config: LSMConfig) -> WeightSet:
        seed = config.seed if self.seed is None else int(self.seed)
        g_in, g_rec, g_min, g_mrec = (np.random.default_rng(s)
                                      for s in np.random.SeedSequence(seed).spawn(4))
        w_in = g_in.standard_normal((config.n_inputs, config.n_neurons))
        w_rec = g_rec.standard_normal((config.n_neurons, config.n_neurons))
        w_in *= self.sigma * config.w_in_const
        w_rec *= self.sigma * config.w_rec_const
        if config.p_in < 1:
            w_in *= g_min.random(w_in.shape) < config.p_in
        if config.p_rec < 1:
            w_rec *= g_mrec.random(w_rec.shape) < config.p_rec
        w_in, w_rec = check_weights(w_in, w_rec, config, "GaussianWeights")
        provenance = {"source": "gaussian", "sigma": self.sigma, "seed": seed,
                      "w_in_const": config.w_in_const, "w_rec_const": config.w_rec_const,
                      "p_in": config.p_in, "p_rec": config.p_rec}
        return WeightSet(w_in, w_rec, provenance)


class ArrayWeights:
    """Explicit weight matrices, used as given (cast to float32).

    Parameters
    ----------
    w_in : array_like, shape (n_inputs, n_neurons)
    w_rec : array_like, shape (n_neurons, n_neurons)
    name : str
        A label kept in the provenance; the provenance also holds the arrays' SHA-256.
    """

    def __init__(self, w_in: Any, w_rec: Any, name: str = "arrays") -> None:
        self.w_in = np.asarray(w_in)
        self.w_rec = np.asarray(w_rec)
        self.name = name

    def build(self, config: LSMConfig) -> WeightSet:
        w_in, w_rec = check_weights(self.w_in, self.w_rec, config, f"ArrayWeights({self.name})")
        ws = WeightSet(w_in, w_rec)
        return WeightSet(w_in, w_rec, {"source": "arrays", "name": self.name,
                                       "sha256": ws.fingerprint()})

    def __repr__(self) -> str:
        return f"ArrayWeights(name={self.name!r}, w_in={self.w_in.shape}, w_rec={self.w_rec.shape})"


def as_weight_source(weights: Any) -> WeightSource:
    """Accept a WeightSource, a ``(w_in, w_rec)`` pair of arrays, or ``None`` (Gaussian)."""
    if weights is None:
        return GaussianWeights()
    if isinstance(weights, WeightSource):
        return weights
    if isinstance(weights, (tuple, list)) and len(weights) == 2:
        return ArrayWeights(*weights)
    raise TypeError(
        "weights must be a WeightSource (with a build(config) method), a (w_in, w_rec) pair of "
        f"arrays, or None; got {type(weights).__name__}"
    )
