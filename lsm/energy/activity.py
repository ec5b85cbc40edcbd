"""What one inference does: the activity counts the energy model prices.

The kernels count as they run when asked (``LSM.encode(..., return_activity=True)``; off by
default, see ``benchmarks/activity_overhead.py`` for its cost); :func:`count_activity` counts
the same things directly from the input events and the spike rasters, which is how the dense
torch reference and the chip in the loop are accounted, and what the tests compare the kernels
with.

Per sample, with ``k_in(t)`` the input events of bin ``t`` and ``k_rec(t)`` the spikes of bin
``t - 1`` (the rows that drive bin ``t``; spikes of the last bin drive nothing)::

    input_events     sum_t k_in(t)                 input-row activations
    spikes           sum_t (spikes of bin t)        reservoir spikes
    recurrent_rows   sum_t k_rec(t)                 recurrent-row activations
    steps            bins processed: the kernels stop once the events are consumed and the last
                     bin had no spike (nothing can fire again); an event-driven design stops
                     there too
    input_steps      bins with k_in(t) > 0          input multiplies, when the two blocks are
    recurrent_steps  bins with k_rec(t) > 0         multiplied separately
    active_steps     bins with k_in + k_rec > 0     multiplies, when one multiply drives both
    peak_rows        max_t k_in(t) + k_rec(t)       the most rows driven at once

plus per row: ``input_rows[c]`` (events on channel ``c``: each drives input row ``c`` once) and
``drive[j]`` (the bins in which neuron ``j``'s spike drove recurrent row ``j``). Derived
quantities (synaptic operations, ADC conversions, cell read energy) are in
:mod:`lsm.energy.model`; they need the weights or the conductances, the counts do not. Active
columns: a multiply reads every column of the block (all 2N cells of each differential pair
carry current once any row is driven), so conversions are ``multiplies x 2N``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsm.events import EventBatch
from lsm.kernels import ACTIVITY_FIELDS

__all__ = ["Activity", "ACTIVITY_FIELDS", "count_activity", "input_row_counts"]


@dataclass(frozen=True)
class Activity:
    """Activity counts of a batch of inferences.

    Attributes
    ----------
    counts : ndarray of int64, shape (n_samples, len(ACTIVITY_FIELDS))
        The per-sample counters of :data:`ACTIVITY_FIELDS` (see the module notes).
    input_rows : ndarray of int32, shape (n_samples, n_inputs)
        Activations of each input row (events per channel).
    drive : ndarray of int32, shape (n_samples, n_neurons)
        Activations of each recurrent row (spikes that drove the next bin).
    n_bins : int
        Time bins per sample.
    """

    counts: np.ndarray
    input_rows: np.ndarray
    drive: np.ndarray
    n_bins: int

    def __post_init__(self) -> None:
        n = self.counts.shape[0]
        if self.counts.shape != (n, len(ACTIVITY_FIELDS)):
            raise ValueError(f"Activity.counts must have shape (n_samples, "
                             f"{len(ACTIVITY_FIELDS)}), got {self.counts.shape}")
        for name in ("counts", "input_rows", "drive"):
            a = getattr(self, name)
            if a.ndim != 2 or a.shape[0] != n:
                raise ValueError(f"Activity.{name} must have shape ({n}, rows), got {a.shape}")
            if not np.issubdtype(a.dtype, np.integer) or (a.size and a.min() < 0):
                raise ValueError(f"Activity.{name} must hold counts (integers >= 0)")

    def __len__(self) -> int:
        return self.counts.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.input_rows.shape[1]

    @property
    def n_neurons(self) -> int:
        return self.drive.shape[1]

    def __getitem__(self, field: str) -> np.ndarray:
        """The per-sample counter ``field`` (one of :data:`ACTIVITY_FIELDS`), int64 (n_samples,)."""
        if field not in ACTIVITY_FIELDS:
            raise KeyError(f"unknown activity field {field!r}; known: {list(ACTIVITY_FIELDS)}")
        return self.counts[:, ACTIVITY_FIELDS.index(field)]

    def multiplies(self, separate: bool) -> np.ndarray:
        """Crossbar multiplies per sample: one per active bin, or one per active block and bin
        when the input and recurrent blocks are multiplied (and digitised) separately."""
        if separate:
            return self["input_steps"] + self["recurrent_steps"]
        return self["active_steps"].copy()

    def total(self) -> dict:
        """Each counter summed over the samples (int; ``peak_rows``: the largest)."""
        return {f: int(self[f].max(initial=0) if f == "peak_rows" else self[f].sum())
                for f in ACTIVITY_FIELDS}

    def mean(self) -> dict:
        """Mean of each counter per sample (float; NaN-free: 0 for an empty batch)."""
        n = max(len(self), 1)
        return {f: float(self[f].sum() / n) for f in ACTIVITY_FIELDS}

    def select(self, index) -> Activity:
        return Activity(self.counts[index], self.input_rows[index], self.drive[index], self.n_bins)

    @staticmethod
    def concatenate(parts: list[Activity]) -> Activity:
        if not parts:
            raise ValueError("Activity.concatenate needs at least one part")
        return Activity(np.concatenate([p.counts for p in parts]),
                        np.concatenate([p.input_rows for p in parts]),
                        np.concatenate([p.drive for p in parts]), parts[0].n_bins)

    def arrays(self) -> dict:
        """The arrays, for ``np.savez`` (:meth:`from_arrays` reads them back)."""
        return {"activity_counts": self.counts, "activity_input_rows": self.input_rows,
                "activity_drive": self.drive, "activity_n_bins": np.int64(self.n_bins),
                "activity_fields": np.array(ACTIVITY_FIELDS)}

    @classmethod
    def from_arrays(cls, data, where: str = "activity") -> Activity:
        """Inverse of :meth:`arrays`; a ValueError naming ``where`` for a file of other fields."""
        try:
            fields = tuple(str(f) for f in data["activity_fields"])
            out = cls(np.asarray(data["activity_counts"], np.int64),
                      np.asarray(data["activity_input_rows"], np.int32),
                      np.asarray(data["activity_drive"], np.int32),
                      int(data["activity_n_bins"]))
        except KeyError as exc:
            raise ValueError(f"{where}: no activity counts ({exc.args[0]} missing)") from None
        if fields != ACTIVITY_FIELDS:
            raise ValueError(f"{where}: activity fields {list(fields)} are not this version's "
                             f"{list(ACTIVITY_FIELDS)}")
        return out

    @classmethod
    def empty(cls, n_samples: int, n_inputs: int, n_neurons: int, n_bins: int) -> Activity:
        """Zeroed counters, as the kernels take them."""
        return cls(np.zeros((n_samples, len(ACTIVITY_FIELDS)), np.int64),
                   np.zeros((n_samples, n_inputs), np.int32),
                   np.zeros((n_samples, n_neurons), np.int32), n_bins)


def input_row_counts(events: EventBatch) -> np.ndarray:
    """Events per sample and channel, int32 (n_samples, n_channels): the input-row activations
    (every event is consumed before a sample can stop early)."""
    n = len(events)
    sample = np.repeat(np.arange(n, dtype=np.int64), np.diff(events.offsets))
    flat = np.bincount(sample * events.n_channels + events.channels,
                       minlength=n * events.n_channels)
    return flat.reshape(n, events.n_channels).astype(np.int32)


def count_activity(events: EventBatch, spikes: np.ndarray) -> Activity:
    """Count the activity of inferences directly from their events and spike rasters.

    Parameters
    ----------
    events : EventBatch
        The inputs.
    spikes : ndarray, shape (len(events), events.n_bins, n_neurons)
        The spike rasters the reservoir produced for them (0/1).

    Returns
    -------
    Activity
    """
    spikes = np.asarray(spikes)
    n, n_bins = len(events), events.n_bins
    if spikes.ndim != 3 or spikes.shape[:2] != (n, n_bins):
        raise ValueError(f"spikes must have shape ({n}, {n_bins}, n_neurons), got {spikes.shape}")
    per_bin = spikes.sum(axis=2, dtype=np.int64)                    # (n, n_bins)
    k_rec = np.zeros_like(per_bin)
    k_rec[:, 1:] = per_bin[:, :-1]
    sample = np.repeat(np.arange(n, dtype=np.int64), np.diff(events.offsets))
    k_in = np.bincount(sample * n_bins + events.bins, minlength=n * n_bins)
    k_in = k_in.reshape(n, n_bins).astype(np.int64)
    # last bin holding an event (-1 without events); processing stops at the first later bin
    # that no spike of the bin before drives
    last = np.full(n, -1, np.int64)
    has = np.diff(events.offsets) > 0
    last[has] = events.bins[events.offsets[1:][has] - 1]
    t = np.arange(n_bins)
    idle = (t[None, :] > last[:, None]) & (k_rec == 0)
    steps = np.where(idle.any(axis=1), idle.argmax(axis=1), n_bins)
    ran = t[None, :] < steps[:, None]
    rows = k_in + k_rec
    counts = np.stack([
        k_in.sum(1), per_bin.sum(1), k_rec.sum(1), steps,
        ((k_in > 0) & ran).sum(1), ((k_rec > 0) & ran).sum(1), ((rows > 0) & ran).sum(1),
        np.where(ran, rows, 0).max(1, initial=0),
    ], axis=1).astype(np.int64)
    drive = spikes[:, :-1, :].sum(axis=1, dtype=np.int64).astype(np.int32)
    return Activity(counts, input_row_counts(events), drive, n_bins)
