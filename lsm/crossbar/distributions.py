"""Conductance distributions of formed cells: the families a calibration fits and a digital twin
draws from.

Each family is a small frozen dataclass of its parameters (uS or dimensionless) with ``pdf``,
``cdf``, ``sample`` and ``mean_std``; the fitting lives in :mod:`calibration.fits`, the drawing
here, so that the simulator can use a fitted family without the lab packages.

- :class:`Gaussian`: ``G ~ N(mean_us, std_us^2)``.
- :class:`LogNormal`: ``log G ~ N(mu, sigma^2)`` (``G`` in uS).
- :class:`GaussianMixture`: ``w N(mean1, std1^2) + (1 - w) N(mean2, std2^2)``.
- :class:`FormingLaw`: the crossbar model's own forming law
  (:class:`~lsm.crossbar.ProgrammingParams`): ``N(mean_us, (cv mean_us)^2)`` truncated to
  ``[g_min_us, g_max_us]``.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from lsm.validation import check_number

__all__ = ["Gaussian", "LogNormal", "GaussianMixture", "FormingLaw", "FAMILIES",
           "family_from_dict"]


def _norm_pdf(x, m, s):
    return np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))


@dataclass(frozen=True)
class Gaussian:
    """``G ~ N(mean_us, std_us^2)``."""

    mean_us: float
    std_us: float
    name = "gaussian"
    n_params = 2

    def __post_init__(self) -> None:
        check_number("Gaussian", "mean_us", self.mean_us)
        check_number("Gaussian", "std_us", self.std_us, 0.0, low_open=True)

    def pdf(self, g):
        return _norm_pdf(np.asarray(g, dtype=np.float64), self.mean_us, self.std_us)

    def cdf(self, g):
        return special.ndtr((np.asarray(g, dtype=np.float64) - self.mean_us) / self.std_us)

    def sample(self, rng: np.random.Generator, size) -> np.ndarray:
        return rng.normal(self.mean_us, self.std_us, size)

    def mean_std(self) -> tuple[float, float]:
        return self.mean_us, self.std_us

    def to_dict(self) -> dict:
        return {"family": self.name, **asdict(self)}


@dataclass(frozen=True)
class LogNormal:
    """``log(G / 1 uS) ~ N(mu, sigma^2)``."""

    mu: float
    sigma: float
    name = "lognormal"
    n_params = 2

    def __post_init__(self) -> None:
        check_number("LogNormal", "mu", self.mu)
        check_number("LogNormal", "sigma", self.sigma, 0.0, low_open=True)

    def pdf(self, g):
        g = np.asarray(g, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = _norm_pdf(np.log(np.where(g > 0, g, 1.0)), self.mu, self.sigma) / g
        return np.where(g > 0, out, 0.0)

    def cdf(self, g):
        g = np.asarray(g, dtype=np.float64)
        with np.errstate(divide="ignore"):
            z = (np.log(np.where(g > 0, g, 1e-300)) - self.mu) / self.sigma
        return np.where(g > 0, special.ndtr(z), 0.0)

    def sample(self, rng: np.random.Generator, size) -> np.ndarray:
        return np.exp(rng.normal(self.mu, self.sigma, size))

    def mean_std(self) -> tuple[float, float]:
        m = math.exp(self.mu + self.sigma ** 2 / 2)
        return m, m * math.sqrt(math.expm1(self.sigma ** 2))

    def to_dict(self) -> dict:
        return {"family": self.name, **asdict(self)}


@dataclass(frozen=True)
class GaussianMixture:
    """``weight N(mean1_us, std1_us^2) + (1 - weight) N(mean2_us, std2_us^2)``."""

    weight: float
    mean1_us: float
    std1_us: float
    mean2_us: float
    std2_us: float
    name = "mixture"
    n_params = 5

    def __post_init__(self) -> None:
        o = "GaussianMixture"
        check_number(o, "weight", self.weight, 0.0, 1.0)
        check_number(o, "mean1_us", self.mean1_us)
        check_number(o, "mean2_us", self.mean2_us)
        check_number(o, "std1_us", self.std1_us, 0.0, low_open=True)
        check_number(o, "std2_us", self.std2_us, 0.0, low_open=True)

    def pdf(self, g):
        g = np.asarray(g, dtype=np.float64)
        return (self.weight * _norm_pdf(g, self.mean1_us, self.std1_us)
                + (1 - self.weight) * _norm_pdf(g, self.mean2_us, self.std2_us))

    def cdf(self, g):
        g = np.asarray(g, dtype=np.float64)
        return (self.weight * special.ndtr((g - self.mean1_us) / self.std1_us)
                + (1 - self.weight) * special.ndtr((g - self.mean2_us) / self.std2_us))

    def sample(self, rng: np.random.Generator, size) -> np.ndarray:
        first = rng.random(size) < self.weight
        return np.where(first, rng.normal(self.mean1_us, self.std1_us, size),
                        rng.normal(self.mean2_us, self.std2_us, size))

    def mean_std(self) -> tuple[float, float]:
        w = self.weight
        m = w * self.mean1_us + (1 - w) * self.mean2_us
        second = (w * (self.std1_us ** 2 + self.mean1_us ** 2)
                  + (1 - w) * (self.std2_us ** 2 + self.mean2_us ** 2))
        return m, math.sqrt(max(second - m * m, 0.0))

    def to_dict(self) -> dict:
        return {"family": self.name, **asdict(self)}


@dataclass(frozen=True)
class FormingLaw:
    """The crossbar model's forming law: ``N(mean_us, (cv mean_us)^2)`` truncated to
    ``[g_min_us, g_max_us]`` (the bounds are the model's, not fitted)."""

    mean_us: float
    cv: float
    g_min_us: float = 0.5
    g_max_us: float = 100.0
    name = "forming-law"
    n_params = 2

    def __post_init__(self) -> None:
        o = "FormingLaw"
        check_number(o, "mean_us", self.mean_us, 0.0, low_open=True)
        check_number(o, "cv", self.cv, 0.0, low_open=True)
        check_number(o, "g_min_us", self.g_min_us, 0.0)
        check_number(o, "g_max_us", self.g_max_us, self.g_min_us, low_open=True)

    @property
    def _std(self) -> float:
        return self.cv * self.mean_us

    def _mass(self) -> tuple[float, float]:
        a = special.ndtr((self.g_min_us - self.mean_us) / self._std)
        b = special.ndtr((self.g_max_us - self.mean_us) / self._std)
        return float(a), float(b)

    def pdf(self, g):
        g = np.asarray(g, dtype=np.float64)
        a, b = self._mass()
        inside = (g >= self.g_min_us) & (g <= self.g_max_us)
        return np.where(inside, _norm_pdf(g, self.mean_us, self._std) / max(b - a, 1e-300), 0.0)

    def cdf(self, g):
        g = np.clip(np.asarray(g, dtype=np.float64), self.g_min_us, self.g_max_us)
        a, b = self._mass()
        return (special.ndtr((g - self.mean_us) / self._std) - a) / max(b - a, 1e-300)

    def sample(self, rng: np.random.Generator, size) -> np.ndarray:
        a, b = self._mass()
        u = rng.random(size)
        x = self.mean_us + self._std * special.ndtri(a + u * (b - a))
        return np.clip(x, self.g_min_us, self.g_max_us)

    def mean_std(self) -> tuple[float, float]:
        s = self._std
        t = stats.truncnorm((self.g_min_us - self.mean_us) / s,
                            (self.g_max_us - self.mean_us) / s, loc=self.mean_us, scale=s)
        return float(t.mean()), float(t.std())

    def to_dict(self) -> dict:
        return {"family": self.name, **asdict(self)}


#: family name -> class
FAMILIES = {c.name: c for c in (Gaussian, LogNormal, GaussianMixture, FormingLaw)}


def family_from_dict(data: Any, where: str = "distribution"):
    """A family from its :meth:`to_dict` form (``{"family": name, <parameters>}``); extra keys
    (fit statistics) are ignored, missing or invalid parameters raise ValueError naming
    ``where``."""
    if not isinstance(data, dict) or data.get("family") not in FAMILIES:
        raise ValueError(f"{where}: needs 'family' one of {sorted(FAMILIES)}, got "
                         f"{data.get('family') if isinstance(data, dict) else data!r}")
    cls = FAMILIES[data["family"]]
    names = [f for f in cls.__dataclass_fields__]
    required = [f for f in names if cls.__dataclass_fields__[f].default is MISSING]
    missing = [f for f in required if f not in data]
    if missing:
        raise ValueError(f"{where}: {cls.name} needs parameter(s) {missing}")
    try:
        return cls(**{f: data[f] for f in names if f in data})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
