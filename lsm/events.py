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

from lsm.validation import InvalidTypeError, check_memory

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
        # checked in the arrays' own dtypes, then stored as the kernel's (int64, int32, int32):
        # nothing wraps around in a cast, and any integer (or empty) input reaches the kernel
        # in the one dtype it is compiled for
        offsets, bins, channels = _validate_csr(self.offsets, self.bins, self.channels,
                                                self.n_bins, self.n_channels)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "bins", bins)
        object.__setattr__(self, "channels", channels)

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
        """A new batch with the samples ``index`` (a slice or integer array), in that order.

        A slice with step 1 is a contiguous run of this (valid) batch: it shares the event
        arrays (views) and is not checked again, so that cutting a batch into kernel calls
        costs nothing per event.
        """
        if isinstance(index, slice) and index.step in (None, 1):
            lo, hi, _ = index.indices(len(self))
            hi = max(lo, hi)
            e_lo, e_hi = self.offsets[lo], self.offsets[hi]
            return self._unchecked(self.offsets[lo:hi + 1] - e_lo, self.bins[e_lo:e_hi],
                                   self.channels[e_lo:e_hi])
        idx = np.arange(len(self))[index]
        starts = self.offsets[idx]
        counts = self.offsets[idx + 1] - starts
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        # event j of the new batch comes from starts[s] + (j - offsets[s]) for its sample s
        take = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
        return EventBatch(offsets, self.bins[take], self.channels[take], self.n_bins,
                          self.n_channels)

    def _unchecked(self, offsets: np.ndarray, bins: np.ndarray,
                   channels: np.ndarray) -> EventBatch:
        """A batch of this one's sizes from arrays already valid and in the kernel's dtypes."""
        out = object.__new__(EventBatch)
        for name, value in (("offsets", offsets), ("bins", bins), ("channels", channels),
                            ("n_bins", self.n_bins), ("n_channels", self.n_channels)):
            object.__setattr__(out, name, value)
        return out

    def to_raster(self, dtype=np.uint8) -> np.ndarray:
        """Dense (n_samples, n_bins, n_channels) event counts."""
        out = np.zeros((len(self), self.n_bins, self.n_channels), dtype=dtype)
        sample = np.repeat(np.arange(len(self)), np.diff(self.offsets))
        np.add.at(out, (sample, self.bins, self.channels), 1)
        return out

    # ------------------------------------------------------------------ constructors
    @classmethod
    def concatenate(cls, batches: Sequence, n_bins: int, n_channels: int) -> EventBatch:
        """One batch holding the samples of ``batches`` (EventBatch of ``n_bins`` x
        ``n_channels`` each) in order; the events are copied once, not checked again."""
        for b in batches:
            if not isinstance(b, EventBatch) or (b.n_bins, b.n_channels) != (n_bins, n_channels):
                raise ValueError(f"every batch must be an EventBatch of {n_bins} bins x "
                                 f"{n_channels} channels")
        if not batches:
            return cls(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32),
                       n_bins, n_channels)
        shift = np.cumsum([0] + [b.n_events for b in batches[:-1]])
        offsets = np.concatenate([batches[0].offsets[:1]]
                                 + [b.offsets[1:] + s for b, s in zip(batches, shift,
                                                                      strict=True)])
        return batches[0]._unchecked(offsets.astype(np.int64),
                                     _concat([b.bins for b in batches]),
                                     _concat([b.channels for b in batches]))

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
            if raster.dtype.kind not in "iuf":
                raise ValueError(f"raster must be boolean or numeric (integer or float 0/1), "
                                 f"got dtype {raster.dtype}")
            bad = (raster != 0) & (raster != 1)  # NaN compares unequal to both: caught here
            if bad.any():
                s, t, c = np.unravel_index(_first_bad(bad.ravel()), raster.shape)
                raise ValueError(
                    f"raster must be binary (0/1): sample {s}, bin {t}, channel {c} holds "
                    f"{raster[s, t, c].item()!r}"
                )
        n, n_bins, n_channels = raster.shape
        n_events = int(np.count_nonzero(raster))
        check_memory(f"the {n_events} events of the raster (3 int64 indices each)",
                     24 * n_events)
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
            pair = [np.asarray(arr) for arr in item]
            for field, arr in zip(("bins", "channels"), pair, strict=True):
                if arr.ndim != 1:
                    raise ValueError(f"sample {i}: {field} must be 1-D, got shape {arr.shape}")
            if len(pair[0]) != len(pair[1]):
                raise ValueError(
                    f"sample {i}: bins and channels differ in length "
                    f"({len(pair[0])} != {len(pair[1])})"
                )
            one = np.array([0, len(pair[0])])
            bins_list.append(_index_array(pair[0], "bins", n_bins, one, i))
            chans_list.append(_index_array(pair[1], "channels", n_channels, one, i))
            counts[i] = len(pair[0])
        offsets = np.zeros(len(streams) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(offsets, _concat(bins_list), _concat(chans_list), n_bins, n_channels)


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)


def _index_array(arr: np.ndarray, field: str, n: int, offsets: np.ndarray,
                 first_sample: int = 0) -> np.ndarray:
    """``arr`` as int32 after checking, in its own dtype, that it holds integers in ``[0, n)``.

    A uint64 2**64 - 1 or an int64 2**32 + 3 is reported as that value, never wrapped into a valid
    index by the cast. An empty array of any numeric dtype (``np.array([])`` is float64) is
    accepted. Errors name the sample (found through ``offsets``, numbered from
    ``first_sample``) and the event's position in it.
    """
    if arr.dtype.kind not in ("iu" if arr.size else "biuf"):
        where = f"sample {first_sample}: " if len(offsets) == 2 else ""
        raise ValueError(f"{where}{field} must hold integers, got dtype {arr.dtype}")
    if arr.size:
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            j = _first_bad(bad)
            s = int(np.searchsorted(offsets, j, side="right") - 1)
            raise ValueError(f"sample {first_sample + s}: {field}[{j - int(offsets[s])}] = "
                             f"{arr[j].item()} is outside [0, {n})")
    return arr.astype(np.int32, copy=False)


def _validate_csr(offsets, bins, channels, n_bins, n_channels):
    """Whole-batch checks, vectorised; errors name the first bad sample. Returns the arrays in
    the kernel's dtypes (int64 offsets, int32 bins and channels)."""
    offsets, bins, channels = np.asarray(offsets), np.asarray(bins), np.asarray(channels)
    if not isinstance(n_bins, (int, np.integer)) or not isinstance(n_channels,
                                                                   (int, np.integer)):
        raise InvalidTypeError(f"n_bins and n_channels must be integers, got {n_bins!r} and "
                               f"{n_channels!r}")
    if n_bins < 1 or n_channels < 1:
        raise ValueError(f"n_bins ({n_bins}) and n_channels ({n_channels}) must be >= 1")
    if offsets.ndim != 1 or len(offsets) < 1 or offsets.dtype.kind not in "iu":
        raise ValueError(f"offsets must be a 1-D integer array of n_samples + 1 entries, got "
                         f"shape {offsets.shape} dtype {offsets.dtype}")
    if bins.shape != channels.shape or bins.ndim != 1:
        raise ValueError(f"bins {bins.shape} and channels {channels.shape} must be 1-D arrays "
                         "of the same length")
    # bounds first, in the offsets' own dtype: then the int64 cast is exact
    if offsets[0] != 0 or offsets[-1] != len(bins) or offsets.min() < 0 \
            or offsets.max() > len(bins):
        raise ValueError(f"offsets must start at 0 and end at the number of events "
                         f"({len(bins)}), with every entry in between; got offsets[0] = "
                         f"{offsets[0].item()}, offsets[-1] = {offsets[-1].item()}")
    offsets = offsets.astype(np.int64, copy=False)
    if np.any(np.diff(offsets) < 0):
        s = _first_bad(np.diff(offsets) < 0)
        raise ValueError(f"offsets must be non-decreasing: offsets[{s + 1}] = "
                         f"{offsets[s + 1]} < offsets[{s}] = {offsets[s]}")
    bins = _index_array(bins, "bins", n_bins, offsets)
    channels = _index_array(channels, "channels", n_channels, offsets)
    if len(bins) > 1:
        back = np.diff(bins.astype(np.int64)) < 0
        # a decrease across a sample boundary is allowed
        starts = offsets[1:-1]
        starts = starts[(starts > 0) & (starts < len(bins))]
        back[starts - 1] = False
        if back.any():
            j = _first_bad(back) + 1
            s = int(np.searchsorted(offsets, j, side="right") - 1)
            raise ValueError(
                f"sample {s}: bins out of order at event {j - offsets[s]} "
                f"(bin {bins[j]} after {bins[j - 1]}); events must be sorted by time bin"
            )
    return offsets, bins, channels
