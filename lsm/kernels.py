"""Numba kernels of the event-driven LIF reservoir (the hot path).

Pure functions, arrays in and arrays out; :class:`lsm.reservoir.LSM` validates inputs, converts
dtypes and layouts and reports progress. Per sample and per time bin ``t``::

    I_t = sum over events (t, c) of w_in[c, :]  +  sum over j in S_{t-1} of w_rec[j, :]
    u_t = decay * u_{t-1} * (1 - s_{t-1}) + I_t          reset = zero      (RESET_ZERO)
    u_t = decay * u_{t-1} + I_t - v_th * s_{t-1}         reset = subtract  (RESET_SUBTRACT)
    u_t = decay * u_{t-1} + I_t                          reset = none      (RESET_NONE)
    s_t = [u_t > v_th]

All arithmetic is float32 in this order (no fused multiply-add, no fast-math reordering), which is
what ``snntorch.Leaky`` computes for the same current ``I_t``.

Cost: one contiguous row add per input event and per (spike, fan-out) plus one pass over the
neurons per bin; a sample stops early once its events are consumed and no neuron fired in the last
bin (the membrane can then only decay towards zero, so no later spike is possible).
Weights come dense (C-contiguous rows) or CSR (``indptr, indices, data``); a dense operand of shape
(0, 0) selects the CSR one.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["RESET_ZERO", "RESET_SUBTRACT", "RESET_NONE", "RESET_CODES", "lif_events"]

RESET_ZERO = 0
RESET_SUBTRACT = 1
RESET_NONE = 2
RESET_CODES = {"zero": RESET_ZERO, "subtract": RESET_SUBTRACT, "none": RESET_NONE}


@njit(nogil=True, cache=True, inline="always")
def _add_row(acc, dense, indptr, indices, data, row):
    """acc += row ``row`` of the weight matrix (dense when ``dense`` is non-empty, else CSR)."""
    if dense.shape[0] > 0:
        w = dense[row]
        for i in range(acc.shape[0]):
            acc[i] += w[i]
    else:
        for k in range(indptr[row], indptr[row + 1]):
            acc[indices[k]] += data[k]


@njit(nogil=True, cache=True)
def _lif_sample(bins, channels, n_bins, in_dense, in_indptr, in_indices, in_data,
                rec_dense, rec_indptr, rec_indices, rec_data, decay, v_th, reset_mode,
                counts, spikes_out, s):
    """Run sample ``s``; write its spike counts into ``counts[s]`` and, when ``spikes_out`` is
    not empty, its spike raster into ``spikes_out[s]``."""
    n = counts.shape[1]
    record = spikes_out.shape[0] > 0
    u = np.zeros(n, np.float32)
    current = np.zeros(n, np.float32)
    fired = np.zeros(n, np.bool_)
    fired_idx = np.empty(n, np.int64)
    n_fired = 0
    zero = np.float32(0.0)
    p = 0
    n_events = bins.shape[0]
    for t in range(n_bins):
        if p >= n_events and n_fired == 0 and t > 0:
            break  # no input left and no spike last step: nothing can fire any more
        while p < n_events and bins[p] == t:
            _add_row(current, in_dense, in_indptr, in_indices, in_data, channels[p])
            p += 1
        for k in range(n_fired):
            _add_row(current, rec_dense, rec_indptr, rec_indices, rec_data, fired_idx[k])
        n_fired = 0
        for i in range(n):
            if reset_mode == 0:
                if fired[i]:
                    ui = zero + current[i]
                else:
                    ui = decay * u[i] + current[i]
            elif reset_mode == 1:
                ui = decay * u[i] + current[i]
                if fired[i]:
                    ui = ui - v_th
            else:
                ui = decay * u[i] + current[i]
            u[i] = ui
            current[i] = zero
            f = ui > v_th
            fired[i] = f
            if f:
                fired_idx[n_fired] = i
                n_fired += 1
                counts[s, i] += 1
                if record:
                    spikes_out[s, t, i] = 1


@njit(parallel=True, nogil=True, cache=True)
def lif_events(offsets, bins, channels, n_bins, in_dense, in_indptr, in_indices, in_data,
               rec_dense, rec_indptr, rec_indices, rec_data, decay, v_th, reset_mode,
               counts, spikes_out):
    """Encode a CSR batch of event streams; samples run in parallel.

    Parameters
    ----------
    offsets : int64 (n_samples + 1,)
        Sample ``s`` owns events ``offsets[s]:offsets[s+1]``.
    bins, channels : int32 (n_events,)
        Time bin (non-decreasing within a sample) and input channel of each event.
    n_bins : int
        Update steps per sample.
    in_dense : float32 (n_inputs, n_neurons) or (0, 0)
        Dense input weights; (0, 0) selects ``in_indptr, in_indices, in_data`` (CSR by input row).
    rec_dense : float32 (n_neurons, n_neurons) or (0, 0)
        Dense recurrent weights (row = presynaptic neuron); (0, 0) selects the CSR operands.
    decay, v_th : float32
    reset_mode : int
        RESET_ZERO, RESET_SUBTRACT or RESET_NONE.
    counts : int32 (n_samples, n_neurons), zeroed
        Output spike counts.
    spikes_out : uint8 (n_samples, n_bins, n_neurons) or (0, 0, 0), zeroed
        Output spike rasters, recorded only when non-empty.
    """
    n_samples = offsets.shape[0] - 1
    for s in prange(n_samples):
        lo = offsets[s]
        hi = offsets[s + 1]
        _lif_sample(bins[lo:hi], channels[lo:hi], n_bins, in_dense, in_indptr, in_indices,
                    in_data, rec_dense, rec_indptr, rec_indices, rec_data, decay, v_th,
                    reset_mode, counts, spikes_out, s)
