"""Numba kernels of the event-driven LIF reservoir (the hot path).

Pure functions, arrays in and arrays out; :class:`lsm.reservoir.LSM` validates inputs, converts
dtypes and layouts and reports progress. Per sample and per time bin ``t``::

    I_t = sum over events (t, c) of w_in[c, :]  +  sum over j in S_{t-1} of w_rec[j, :]
    u_t = decay * (u_{t-1} * (1 - s_{t-1})) + I_t       reset = zero      (RESET_ZERO)
    u_t = decay * u_{t-1} + I_t - v_th * s_{t-1}        reset = subtract  (RESET_SUBTRACT)
    u_t = decay * u_{t-1} + I_t                         reset = none      (RESET_NONE)
    s_t = [u_t > v_th]

All arithmetic is float32 in exactly this order (input rows in event order, then recurrent rows in
increasing neuron order; no fused multiply-add, no fast-math reordering): for the same current
``I_t`` it is what ``snntorch.Leaky`` computes, and results are bit-identical run to run, whatever
the number of threads.

Cost per sample: one row add (n_neurons floats) per input event and per spike (or ``fan-out``
scattered adds when a matrix is CSR), plus one branch-free pass over the neurons per bin. Rows
are added up to eight at a time in one pass over the accumulator (same order, fewer loads and
stores). A sample stops early once its events are consumed and no neuron fired in the last bin:
the membrane can then only decay towards zero (``0 <= decay <= 1`` and ``v_th > 0``), so no later
spike is possible.

A weight operand is either dense (a C-contiguous matrix) or CSR (``indptr, indices, data``); a
dense operand of shape (0, 0) selects the CSR one.
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
def _add_dense_rows(acc, wf, rows, lo, hi, offset):
    """``acc += w[rows[k] + offset]`` for k in lo..hi-1, in that order.

    ``wf`` is the row-major weight matrix flattened; the row length is ``len(acc)``. Eight (then
    two, then one) rows are summed per pass over ``acc``: ``((acc + r0) + r1) + ...`` is the same
    float arithmetic as eight separate passes, with fewer loads and stores of ``acc``.
    """
    n = acc.shape[0]
    p = lo
    while hi - p >= 8:
        b0 = (rows[p] + offset) * n
        b1 = (rows[p + 1] + offset) * n
        b2 = (rows[p + 2] + offset) * n
        b3 = (rows[p + 3] + offset) * n
        b4 = (rows[p + 4] + offset) * n
        b5 = (rows[p + 5] + offset) * n
        b6 = (rows[p + 6] + offset) * n
        b7 = (rows[p + 7] + offset) * n
        r0 = wf[b0:b0 + n]
        r1 = wf[b1:b1 + n]
        r2 = wf[b2:b2 + n]
        r3 = wf[b3:b3 + n]
        r4 = wf[b4:b4 + n]
        r5 = wf[b5:b5 + n]
        r6 = wf[b6:b6 + n]
        r7 = wf[b7:b7 + n]
        for i in range(n):
            acc[i] = ((((((((acc[i] + r0[i]) + r1[i]) + r2[i]) + r3[i]) + r4[i]) + r5[i])
                       + r6[i]) + r7[i])
        p += 8
    while hi - p >= 2:
        b0 = (rows[p] + offset) * n
        b1 = (rows[p + 1] + offset) * n
        r0 = wf[b0:b0 + n]
        r1 = wf[b1:b1 + n]
        for i in range(n):
            acc[i] = (acc[i] + r0[i]) + r1[i]
        p += 2
    if p < hi:
        b0 = (rows[p] + offset) * n
        r0 = wf[b0:b0 + n]
        for i in range(n):
            acc[i] += r0[i]


@njit(nogil=True, cache=True, inline="always")
def _add_csr_rows(acc, indptr, indices, data, rows, lo, hi):
    """``acc[indices[k]] += data[k]`` over the CSR rows ``rows[lo:hi]``, in order."""
    for p in range(lo, hi):
        r = rows[p]
        for k in range(indptr[r], indptr[r + 1]):
            acc[indices[k]] += data[k]


@njit(nogil=True, cache=True)
def _lif_sample(bins, channels, n_bins, w_in_flat, in_indptr, in_indices, in_data,
                w_rec_flat, rec_indptr, rec_indices, rec_data, decay, v_th, reset_mode,
                counts, spikes):
    """Run one sample. ``counts`` (n_neurons,) int32 receives its spike counts and ``spikes``
    (n_bins, n_neurons) uint8 its raster when not empty."""
    n = counts.shape[0]
    in_dense = w_in_flat.shape[0] > 0
    rec_dense = w_rec_flat.shape[0] > 0
    record = spikes.shape[0] > 0
    u = np.zeros(n, np.float32)
    current = np.zeros(n, np.float32)
    keep = np.ones(n, np.float32)     # 1 - s_{t-1}
    fired = np.zeros(n, np.float32)   # s_{t-1}
    fired_idx = np.empty(n, np.int64)
    n_fired = 0
    one = np.float32(1.0)
    zero = np.float32(0.0)
    p = 0
    n_events = bins.shape[0]
    for t in range(n_bins):
        if p >= n_events and n_fired == 0:
            break  # nothing left to drive a neuron over threshold
        q = p
        while q < n_events and bins[q] == t:
            q += 1
        if in_dense:
            _add_dense_rows(current, w_in_flat, channels, p, q, 0)
        else:
            _add_csr_rows(current, in_indptr, in_indices, in_data, channels, p, q)
        p = q
        if rec_dense:
            _add_dense_rows(current, w_rec_flat, fired_idx, 0, n_fired, 0)
        else:
            _add_csr_rows(current, rec_indptr, rec_indices, rec_data, fired_idx, 0, n_fired)
        # membrane update, branch-free over neurons
        if reset_mode == 0:
            for i in range(n):
                ui = decay * (u[i] * keep[i]) + current[i]
                u[i] = ui
                current[i] = zero
                f = one if ui > v_th else zero
                fired[i] = f
                keep[i] = one - f
        elif reset_mode == 1:
            for i in range(n):
                ui = decay * u[i] + current[i] - v_th * fired[i]
                u[i] = ui
                current[i] = zero
                f = one if ui > v_th else zero
                fired[i] = f
                keep[i] = one - f
        else:
            for i in range(n):
                ui = decay * u[i] + current[i]
                u[i] = ui
                current[i] = zero
                f = one if ui > v_th else zero
                fired[i] = f
                keep[i] = one - f
        # compact the spikes (branch-free): they drive the next bin and the outputs
        n_fired = 0
        for i in range(n):
            fired_idx[n_fired] = i
            n_fired += fired[i] != zero
        for k in range(n_fired):
            counts[fired_idx[k]] += 1
        if record:
            for k in range(n_fired):
                spikes[t, fired_idx[k]] = 1


@njit(parallel=True, nogil=True, cache=True)
def lif_events(offsets, bins, channels, n_bins, w_in, in_indptr, in_indices, in_data,
               w_rec, rec_indptr, rec_indices, rec_data, decay, v_th, reset_mode,
               counts, spikes):
    """Encode a CSR batch of event streams; samples run in parallel (``prange``).

    Parameters
    ----------
    offsets : int64 (n_samples + 1,)
        Sample ``s`` owns events ``offsets[s]:offsets[s+1]``.
    bins, channels : int32 (n_events,)
        Time bin (non-decreasing within a sample, < n_bins) and input channel of each event.
    n_bins : int
        Update steps per sample.
    w_in : float32 (n_inputs, n_neurons) C-contiguous, or (0, 0)
        Dense input weights; (0, 0) selects ``in_indptr, in_indices, in_data`` (CSR, row = input).
    w_rec : float32 (n_neurons, n_neurons) C-contiguous, or (0, 0)
        Dense recurrent weights (row = presynaptic neuron); (0, 0) selects the CSR operands.
    decay, v_th : float32
    reset_mode : int
        RESET_ZERO, RESET_SUBTRACT or RESET_NONE.
    counts : int32 (n_samples, n_neurons), zeroed
        Output: spike counts.
    spikes : uint8 (n_samples, n_bins, n_neurons) or (0, 0, 0), zeroed
        Output: spike rasters, recorded only when not empty.
    """
    n_samples = offsets.shape[0] - 1
    w_in_flat = w_in.ravel()
    w_rec_flat = w_rec.ravel()
    record = spikes.shape[0] > 0
    no_spikes = np.zeros((0, 0), np.uint8)
    for s in prange(n_samples):
        lo = offsets[s]
        hi = offsets[s + 1]
        _lif_sample(bins[lo:hi], channels[lo:hi], n_bins, w_in_flat, in_indptr, in_indices,
                    in_data, w_rec_flat, rec_indptr, rec_indices, rec_data, decay, v_th,
                    reset_mode, counts[s], spikes[s] if record else no_spikes)
