"""Readout features: what a readout sees of a spike train, for the reservoir and for its
"no reservoir" baseline alike.

Every kind is a reduction of the spikes (or input events) of a sample over time::

    "rates"    r_i       = (1 / T) sum_t s_t,i                       float32 (n, d)
    "counts"   c_i       = sum_t s_t,i                               int32 (n, d)
    "windows"  c_{w,i}   = sum over t in window w of s_t,i           int32 (n, K * d)
    "binned"   s_t,i                                                 uint8 (n, T, d)

with ``T`` bins, ``d`` neurons (or input channels) and ``K`` windows: bin ``t`` belongs to window
``w = t * K // T`` (windows of ``T / K`` bins, the first ones shorter by a bin when ``K`` does not
divide ``T``). A "windows" row is window-major: column ``w * d + i`` is unit ``i`` in window
``w``, so ``x.reshape(n, K, d)`` is the (sample, window, unit) view. For the reservoir the
kernels count the windows while they run (:func:`lsm.kernels.lif_events`); nothing of size
``T`` is kept. :func:`event_features` computes the same features of the input events: the
readout on them is the "no reservoir" baseline every supervised result is printed beside.
"""

from __future__ import annotations

import numbers

import numpy as np

from lsm.events import EventBatch

__all__ = ["FEATURES", "READOUT_FEATURES", "DEFAULT_N_WINDOWS", "check_features",
           "window_of_bin", "counts_to_features", "event_features", "describe_features"]

#: Every feature kind :meth:`lsm.LSM.encode` returns.
FEATURES = ("rates", "counts", "windows", "binned")
#: The kinds a readout takes (two-dimensional: one row per sample).
READOUT_FEATURES = ("windows", "rates", "counts")
#: Windows of the "windows" features unless told otherwise (the issue's measurement: 5 windows
#: of the paper's N-MNIST encoder lift a logistic readout from about 0.70 to 0.85).
DEFAULT_N_WINDOWS = 5


def check_features(features: str, n_windows: int, n_bins: int,
                   allowed: tuple = FEATURES) -> int:
    """Validate a feature kind and its number of windows; return the windows the kernel counts
    (``n_windows`` for "windows", 1 for every other kind).

    Raises
    ------
    ValueError
        An unknown kind, or ``n_windows`` not an integer in 1 .. ``n_bins``.
    """
    if features not in allowed:
        raise ValueError(f"features must be one of {allowed}, got {features!r}")
    if features != "windows":
        return 1
    if isinstance(n_windows, bool) or not isinstance(n_windows, numbers.Integral) \
            or not 1 <= n_windows <= n_bins:
        raise ValueError(f"n_windows must be an integer from 1 to {n_bins} (the time bins per "
                         f"sample), got {n_windows!r}")
    return int(n_windows)


def window_of_bin(n_bins: int, n_windows: int) -> np.ndarray:
    """int64 (n_bins,): the window of each bin, ``t * n_windows // n_bins``."""
    return (np.arange(n_bins, dtype=np.int64) * n_windows) // n_bins


def counts_to_features(counts: np.ndarray, features: str, n_bins: int) -> np.ndarray:
    """Spike counts per window, int32 (n, K, d), as the features of ``features`` (any kind but
    "binned"); K is 1 except for "windows"."""
    n, k, d = counts.shape
    if features == "windows":
        return counts.reshape(n, k * d)
    total = counts.sum(axis=1, dtype=np.int32) if k > 1 else counts[:, 0]
    if features == "counts":
        return total
    return (total / np.float32(n_bins)).astype(np.float32)


def event_features(events: EventBatch, features: str = "windows",
                   n_windows: int = DEFAULT_N_WINDOWS) -> np.ndarray:
    """The features of the input events themselves: the "no reservoir" baseline.

    Each event counts once in its bin and channel (a repeated event twice), exactly as it drives
    the reservoir.

    Parameters
    ----------
    events : EventBatch
    features : {"windows", "rates", "counts", "binned"}
    n_windows : int
        Windows for "windows" (1 .. ``events.n_bins``).

    Returns
    -------
    ndarray
        As :meth:`lsm.LSM.encode` would return for a reservoir whose neurons were the input
        channels: (n, K * n_channels) int32 for "windows", (n, n_channels) for "rates" (float32)
        and "counts" (int32), (n, n_bins, n_channels) uint8 for "binned".
    """
    if not isinstance(events, EventBatch):
        raise TypeError(f"events must be an EventBatch, got {type(events).__name__}")
    k = check_features(features, n_windows, events.n_bins)
    if features == "binned":
        return events.to_raster(np.uint8)
    n, d = len(events), events.n_channels
    sample = np.repeat(np.arange(n, dtype=np.int64), np.diff(events.offsets))
    window = window_of_bin(events.n_bins, k)[events.bins]
    flat = (sample * k + window) * d + events.channels
    counts = np.bincount(flat, minlength=n * k * d).astype(np.int32).reshape(n, k, d)
    return counts_to_features(counts, features, events.n_bins)


def describe_features(features: str, n_windows: int = DEFAULT_N_WINDOWS) -> str:
    """A short name for tables: ``"windows(5)"``, ``"rates"`` ..."""
    return f"windows({n_windows})" if features == "windows" else features
