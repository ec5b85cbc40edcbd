"""Event streams in the form the reservoir kernel consumes.

A batch of samples is stored as CSR: the events of sample ``i`` are
``bins[offsets[i]:offsets[i+1]]`` and ``channels[...]`` of the same slice, with bins
non-decreasing inside a sample. Each event adds its channel's input weights once in its bin, so a
repeated (bin, channel) pair counts twice; a binary raster is the special case without repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EventBatch"]


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True)
class EventBatch:
    """A validated batch of per-sample event streams (CSR over samples).

    Build one with :meth:`from_streams` or :meth:`from_raster`; both check every field and name the
    offending sample in their errors.

    Attributes
    ----------
    offsets : ndarray of int64, shape (n_samples + 1,)
    bins : ndarray of int32, shape (n_events,)
        Time-bin index of each event, non-decreasing within a sample.
    channels : ndarray of int32, shape (n_events,)
        Input channel of each event.
    n_bins, n_channels : int
        The ranges of ``bins`` and ``channels``.
    """

    offsets: np.ndarray
    bins: np.ndarray
    channels: np.ndarray
    n_bins: int
    n_channels: int

    def __post_init__(self) -> None:
        _validate_csr(self.offsets, self.bins, self.channels, self.n_bins, self.n_channels)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return int(self.offsets[-1])

    def events_per_sample(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(bins, channels) of sample ``i``."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.bins[lo:hi], self.channels[lo:hi]

    def select(self, index: slice | np.ndarray) -> EventBatch:
        """A new batch with the samples ``index`` (a slice or integer array), in that order."""
        idx = np.arange(len(self))[index]
        starts = self.offsets[idx]
        counts = self.offsets[idx + 1] - starts
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        # event j of the new batch comes from starts[s] + (j - offsets[s]) for its sample s
        take = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
        return EventBatch(offsets, self.bins[take], self.channels[take], self.n_bins,
                          self.n_channels)

    def to_raster(self, dtype=np.uint8) -> np.ndarray:
        """Dense (n_samples, n_bins, n_channels) event counts."""
        out = np.zeros((len(self), self.n_bins, self.n_channels), dtype=dtype)
        sample = np.repeat(np.arange(len(self)), np.diff(self.offsets))
        np.add.at(out, (sample, self.bins, self.channels), 1)
        return out

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_raster(cls, raster: np.ndarray) -> EventBatch:
        """Events of a dense binary raster of shape (n_samples, n_bins, n_channels).

        Raises
        ------
        ValueError
            If the raster is not 3-D, or holds a value other than 0 and 1 (the error names the
            sample, bin and channel of the first such value).
        """
        raster = np.asarray(raster)
        if raster.ndim != 3:
            raise ValueError(
                f"raster must have shape (n_samples, n_bins, n_channels), got shape {raster.shape}"
            )
        if raster.dtype != np.bool_:
            if not (np.issubdtype(raster.dtype, np.integer)
                    or np.issubdtype(raster.dtype, np.floating)):
                raise ValueError(f"raster must be boolean or numeric, got dtype {raster.dtype}")
            bad = (raster != 0) & (raster != 1)  # NaN compares unequal to both: caught here
            if bad.any():
                s, t, c = np.unravel_index(_first_bad(bad.ravel()), raster.shape)
                raise ValueError(
                    f"raster must be binary (0/1): sample {s}, bin {t}, channel {c} holds "
                    f"{raster[s, t, c].item()!r}"
                )
        n, n_bins, n_channels = raster.shape
        s, t, c = np.nonzero(raster)  # C order: sorted by sample, then bin, then channel
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(s, minlength=n), out=offsets[1:])
        return cls(offsets, t.astype(np.int32), c.astype(np.int32), n_bins, n_channels)

    @classmethod
    def from_streams(cls, streams: Sequence, n_bins: int, n_channels: int) -> EventBatch:
        """Batch a list of per-sample ``(bins, channels)`` pairs of 1-D integer arrays.

        Raises
        ------
        ValueError
            Naming the sample and the field when a pair is malformed, an index is out of range,
            or bins go backwards.
        """
        if isinstance(streams, np.ndarray) and streams.ndim == 3:
            raise ValueError("got a 3-D array: use EventBatch.from_raster for dense rasters")
        bins_list, chans_list = [], []
        counts = np.zeros(len(streams), dtype=np.int64)
        for i, item in enumerate(streams):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(
                    f"sample {i}: an event stream must be a (bins, channels) pair of arrays, "
                    f"got {type(item).__name__}"
                )
            pair = []
            for field, arr in zip(("bins", "channels"), item, strict=True):
                arr = np.asarray(arr)
                if arr.ndim != 1:
                    raise ValueError(f"sample {i}: {field} must be 1-D, got shape {arr.shape}")
                if arr.size and not np.issubdtype(arr.dtype, np.integer):
                    raise ValueError(
                        f"sample {i}: {field} must hold integers, got dtype {arr.dtype}"
                    )
                pair.append(arr)
            if len(pair[0]) != len(pair[1]):
                raise ValueError(
                    f"sample {i}: bins and channels differ in length "
                    f"({len(pair[0])} != {len(pair[1])})"
                )
            bins_list.append(pair[0].astype(np.int32, copy=False))
            chans_list.append(pair[1].astype(np.int32, copy=False))
            counts[i] = len(pair[0])
        offsets = np.zeros(len(streams) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(offsets, _concat(bins_list), _concat(chans_list), n_bins, n_channels)


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)


def _validate_csr(offsets, bins, channels, n_bins, n_channels) -> None:
    """Whole-batch checks, vectorised; errors name the first bad sample."""
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0:
        raise ValueError("offsets must be 1-D, start at 0 and have n_samples + 1 entries")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must be non-decreasing")
    if bins.shape != channels.shape or bins.ndim != 1 or len(bins) != offsets[-1]:
        raise ValueError(
            f"bins {bins.shape} and channels {channels.shape} must be 1-D with offsets[-1] = "
            f"{offsets[-1]} entries"
        )
    if n_bins < 1 or n_channels < 1:
        raise ValueError(f"n_bins ({n_bins}) and n_channels ({n_channels}) must be >= 1")

    def sample_of(j: int) -> int:
        return int(np.searchsorted(offsets, j, side="right") - 1)

    for field, arr, n in (("bins", bins, n_bins), ("channels", channels, n_channels)):
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{field} must hold integers, got dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            j = _first_bad(bad)
            s = sample_of(j)
            raise ValueError(
                f"sample {s}: {field}[{j - offsets[s]}] = {arr[j]} is outside [0, {n})"
            )
    if len(bins) > 1:
        back = np.diff(bins.astype(np.int64)) < 0
        # a decrease across a sample boundary is allowed
        starts = offsets[1:-1]
        starts = starts[(starts > 0) & (starts < len(bins))]
        back[starts - 1] = False
        if back.any():
            j = _first_bad(back) + 1
            s = sample_of(j)
            raise ValueError(
                f"sample {s}: bins out of order at event {j - offsets[s]} "
                f"(bin {bins[j]} after {bins[j - 1]}); events must be sorted by time bin"
            )
