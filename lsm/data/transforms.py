"""The paper's preprocessing as small composable transforms on structured event arrays.

Each transform is a dataclass with one job (tonic's style); the last one, :class:`ToEventStream`,
turns events into the ``(bins, channels)`` stream the reservoir kernel consumes, without dense
frames. tonic's own :class:`tonic.transforms.CenterCrop` does the N-MNIST crop.

Presets: :func:`nmnist_preprocessing` (centre crop 34 -> 16, one polarity, 50 bins -> 256
channels) and :func:`ntidigits_preprocessing` (1 ms bins squeezed to 129 binarised bins, 64
channels).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

__all__ = ["SelectPolarity", "ToEventStream", "Preprocessing", "nmnist_preprocessing",
           "ntidigits_preprocessing", "describe", "span_error", "preprocessing_error"]


@dataclass(frozen=True)
class SelectPolarity:
    """Keep the events of one polarity (``polarity=None`` keeps both)."""

    polarity: int | None = 1

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if self.polarity is None:
            return events
        return events[events["p"] == self.polarity]


def span_error(n_ticks: int, resolution_us: int, n_bins: int) -> str:
    """Why a sample whose ticks times ``n_bins`` leave int64 cannot be binned (one wording for
    :class:`ToEventStream` and the fused decoder)."""
    return (f"events span {n_ticks} ticks of {resolution_us} us: too long to divide into "
            f"{n_bins} bins in int64")


def preprocessing_error(sample_id: str, reason: str) -> str:
    """The message of a sample that read well but could not be preprocessed."""
    return f"sample {sample_id}: preprocessing failed: {reason}"


@dataclass(frozen=True)
class ToEventStream:
    """Structured events -> ``(bins, channels)`` int32 arrays, sorted by bin.

    Time: timestamps (us) are first quantised to ``resolution_us`` ticks; the span from the
    sample's first to its last tick is then divided into ``n_bins`` equal bins
    (``bin = floor((tick - tick0) * n_bins / n_ticks)``), as tonic's ``ToFrame(n_time_bins=...)``
    slices time. Channel: ``x + W * (y + H * p_index)`` for a ``(W, H, P)`` sensor, where
    ``p_index`` is the polarity when ``P == 2`` and 0 otherwise. With ``binarize`` a repeated
    (bin, channel) pair is kept once.

    Parameters
    ----------
    sensor_size : (W, H, P)
        After any crop; ``P`` is 2 when both polarities are kept as separate channels.
    n_bins : int
    resolution_us : int
        Tick length before squeezing (1 for N-MNIST, 1000 for N-TIDIGITS's 1 ms bins).
    binarize : bool
    """

    sensor_size: tuple
    n_bins: int
    resolution_us: int = 1
    binarize: bool = True

    def __post_init__(self) -> None:
        if len(self.sensor_size) != 3 or min(self.sensor_size) < 1:
            raise ValueError(f"sensor_size must be (W, H, P) >= 1, got {self.sensor_size}")
        if self.n_bins < 1 or self.resolution_us < 1:
            raise ValueError("n_bins and resolution_us must be >= 1")

    @property
    def n_channels(self) -> int:
        w, h, p = self.sensor_size
        return w * h * p

    def __call__(self, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, h, p = self.sensor_size
        if len(events) == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        tick = np.asarray(events["t"], dtype=np.int64) // self.resolution_us
        tick -= tick.min()
        n_ticks = int(tick.max()) + 1
        if n_ticks > np.iinfo(np.int64).max // self.n_bins:
            raise ValueError(span_error(n_ticks, self.resolution_us, self.n_bins))
        bins = (tick * self.n_bins) // n_ticks
        x = np.asarray(events["x"], dtype=np.int64)
        y = np.asarray(events["y"], dtype=np.int64) if "y" in events.dtype.names else 0
        pol = (np.asarray(events["p"], dtype=np.int64) if p == 2 else 0)
        ch = x + w * (y + h * pol)
        if self.binarize:
            key = np.unique(bins * self.n_channels + ch)  # sorted by bin, then channel
            bins, ch = key // self.n_channels, key % self.n_channels
        else:
            order = np.argsort(bins, kind="stable")
            bins, ch = bins[order], ch[order]
        return bins.astype(np.int32), ch.astype(np.int32)


@dataclass(frozen=True)
class Preprocessing:
    """A chain of event transforms ending in :class:`ToEventStream`."""

    steps: tuple
    stream: ToEventStream

    @property
    def n_bins(self) -> int:
        return self.stream.n_bins

    @property
    def n_channels(self) -> int:
        return self.stream.n_channels

    def __call__(self, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for step in self.steps:
            events = step(events)
        return self.stream(events)

    def describe(self) -> list:
        return [describe(s) for s in (*self.steps, self.stream)]


def describe(transform) -> dict:
    """Class name and parameters of a transform: what the feature cache keys on."""
    if dataclasses.is_dataclass(transform):
        params = {f.name: getattr(transform, f.name) for f in dataclasses.fields(transform)}
    else:  # pragma: no cover - foreign transforms
        params = dict(vars(transform))
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
    return {"transform": f"{type(transform).__module__}.{type(transform).__qualname__}",
            **params}


def nmnist_preprocessing(crop: int = 16, polarity: int | None = 1, n_bins: int = 50,
                         binarize: bool = True) -> Preprocessing:
    """The paper's N-MNIST preprocessing: centre crop 34 x 34 -> ``crop`` x ``crop`` (tonic's
    CenterCrop), one polarity (or both as separate channels), ``n_bins`` time bins."""
    from tonic.transforms import CenterCrop

    if not 1 <= crop <= 34:
        raise ValueError(f"crop must be in [1, 34], got {crop}")
    if polarity not in (0, 1, None):
        raise ValueError(f"polarity must be 0, 1 or None (both), got {polarity!r}")
    steps = (CenterCrop(sensor_size=(34, 34, 2), size=(crop, crop)), SelectPolarity(polarity))
    return Preprocessing(steps, ToEventStream((crop, crop, 2 if polarity is None else 1),
                                              n_bins, 1, binarize))


def ntidigits_preprocessing(n_bins: int = 129, resolution_us: int = 1000,
                            binarize: bool = True) -> Preprocessing:
    """The paper's N-TIDIGITS preprocessing: 1 ms bins squeezed into 129 binarised bins over
    the 64 cochlea channels."""
    return Preprocessing((), ToEventStream((64, 1, 1), n_bins, resolution_us, binarize))
