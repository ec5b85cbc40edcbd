"""Numba kernels of the event-driven LIF reservoir (the hot path), and the one membrane update.

Pure functions, arrays in and arrays out; :class:`lsm.reservoir.LSM` validates inputs, converts
dtypes and layouts and reports progress. Per sample and per time bin ``t``::

    I_t = sum over events (t, c) of w_in[c, :]  +  sum over j in S_{t-1} of w_rec[j, :]
    u_t = decay * (u_{t-1} * (1 - s_{t-1})) + I_t       reset = zero      (RESET_ZERO)
    u_t = decay * u_{t-1} + I_t - v_th * s_{t-1}        reset = subtract  (RESET_SUBTRACT)
    u_t = decay * u_{t-1} + I_t                         reset = none      (RESET_NONE)
    s_t = [u_t > v_th]

The last four lines are :func:`membrane_update`, the only definition of the neuron in the
project: the kernels here inline its Numba compilation per neuron, and the dense torch reference
(:mod:`lsm.torch_backend`) and the chip loop (``hw.weights.MacroInLoop``) call it on whole
tensors / arrays. ``1 - s_{t-1}`` is computed as ``s_{t-1} == 0``: the same factor (exactly 1
or 0) in any dtype, with no integer literal to widen float32 arithmetic under Numba.

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

Given ``activity`` arrays (``LSM.encode(..., return_activity=True)``), the kernels also count
what each sample did for the energy model (:data:`ACTIVITY_FIELDS`, per-row activations;
:mod:`lsm.energy.activity`): a few integer adds per bin and one per row activation.

A weight operand is either dense (a C-contiguous matrix) or CSR (``indptr, indices, data``); a
dense operand of shape (0, 0) selects the CSR one.

:func:`lif_events_codes` is the same reservoir with each matrix stored as int16 codes and one
float32 scale (``LSMConfig.weight_format = "int16"``): rows are summed into two int32
accumulators (input, recurrent; exact in any order) and ``I_t = scale_in * A_t + scale_rec *
B_t`` in float32 before the same membrane update. Half the bytes per row.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["RESET_ZERO", "RESET_SUBTRACT", "RESET_NONE", "RESET_CODES", "membrane_update",
           "lif_events", "lif_events_codes", "lif_events_crossbar", "crossbar_multiply",
           "hash_normal", "ACTIVITY_FIELDS", "activity_off"]

#: Reset rules after a spike, as the kernels and :func:`membrane_update` take them.
RESET_ZERO = 0
RESET_SUBTRACT = 1
RESET_NONE = 2
#: :attr:`lsm.config.LSMConfig.reset` names -> reset codes.
RESET_CODES = {"zero": RESET_ZERO, "subtract": RESET_SUBTRACT, "none": RESET_NONE}


def membrane_update(u, current, fired, decay, v_th, reset_mode):
    """One time step of the leaky integrate-and-fire membrane (snntorch's ``Leaky``).

    ``reset_mode`` picks what happens to a neuron that fired in the previous step::

        RESET_ZERO:      u_t = decay * (u_{t-1} * (1 - s_{t-1})) + I_t
        RESET_SUBTRACT:  u_t = decay * u_{t-1} + I_t - v_th * s_{t-1}
        RESET_NONE:      u_t = decay * u_{t-1} + I_t
        s_t = [u_t > v_th]

    Written with operators only, so that the same definition runs on NumPy arrays, on torch
    tensors and, compiled by Numba, on the float32 scalars of the kernels; float32 in, float32
    out, in exactly this order of operations (no fused multiply-add).

    Parameters
    ----------
    u : float32 scalar, ndarray or tensor
        Membrane potential ``u_{t-1}``.
    current : like ``u``
        Input current ``I_t`` of this step (input and recurrent drive summed).
    fired : like ``u`` (0 or 1), or bool
        Spikes ``s_{t-1}`` of the previous step.
    decay : float32
        Leak factor per step (snntorch's ``beta``), in [0, 1].
    v_th : float32
        Firing threshold, > 0.
    reset_mode : int
        :data:`RESET_ZERO`, :data:`RESET_SUBTRACT` or :data:`RESET_NONE`.

    Returns
    -------
    u_t : like ``u``
        The new membrane potential.
    s_t : bool, like ``u``
        ``u_t > v_th``: the spikes of this step.
    """
    if reset_mode == RESET_ZERO:
        u_t = decay * (u * (fired == 0)) + current
    elif reset_mode == RESET_SUBTRACT:
        u_t = decay * u + current - v_th * fired
    else:
        u_t = decay * u + current
    return u_t, u_t > v_th


#: :func:`membrane_update` compiled for the kernels (inlined into their per-neuron loop).
_membrane_update = njit(nogil=True, cache=True, inline="always")(membrane_update)


@njit(nogil=True, cache=True, inline="always")
def _add_dense_rows(acc, wf, rows, lo, hi):
    """``acc += w[rows[k]]`` for k in lo..hi-1, in that order.

    ``wf`` is the row-major weight matrix flattened; the row length is ``len(acc)``. Eight (then
    two, then one) rows are summed per pass over ``acc``: ``((acc + r0) + r1) + ...`` is the same
    float arithmetic as eight separate passes, with fewer loads and stores of ``acc``.
    """
    n = acc.shape[0]
    p = lo
    while hi - p >= 8:
        b0 = rows[p] * n
        b1 = rows[p + 1] * n
        b2 = rows[p + 2] * n
        b3 = rows[p + 3] * n
        b4 = rows[p + 4] * n
        b5 = rows[p + 5] * n
        b6 = rows[p + 6] * n
        b7 = rows[p + 7] * n
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
        b0 = rows[p] * n
        b1 = rows[p + 1] * n
        r0 = wf[b0:b0 + n]
        r1 = wf[b1:b1 + n]
        for i in range(n):
            acc[i] = (acc[i] + r0[i]) + r1[i]
        p += 2
    if p < hi:
        b0 = rows[p] * n
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


@njit(nogil=True, cache=True, inline="always")
def _membrane_step(u, current, fired, fired_idx, decay, v_th, reset_mode):
    """:func:`membrane_update` for every neuron, branch-free; zeroes ``current``, updates ``u``
    and ``fired = s_t`` (float32 0 or 1), writes the indices of the neurons that fired into
    ``fired_idx`` (increasing) and returns how many."""
    n = u.shape[0]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    # one loop per rule, the rule a constant in each: no per-neuron branch on reset_mode
    if reset_mode == RESET_ZERO:
        for i in range(n):
            u[i], s = _membrane_update(u[i], current[i], fired[i], decay, v_th, RESET_ZERO)
            current[i] = zero
            fired[i] = one if s else zero
    elif reset_mode == RESET_SUBTRACT:
        for i in range(n):
            u[i], s = _membrane_update(u[i], current[i], fired[i], decay, v_th, RESET_SUBTRACT)
            current[i] = zero
            fired[i] = one if s else zero
    else:
        for i in range(n):
            u[i], s = _membrane_update(u[i], current[i], fired[i], decay, v_th, RESET_NONE)
            current[i] = zero
            fired[i] = one if s else zero
    # compaction without branches: every index is written, only spikes advance the cursor
    n_fired = 0
    for i in range(n):
        fired_idx[n_fired] = i
        n_fired += fired[i] != zero
    return n_fired


@njit(nogil=True, cache=True, inline="always")
def _record_spikes(fired_idx, n_fired, t, n_bins, counts, spikes, record):
    """Add this bin's spikes to the counts of its time window and, when recording, to the
    raster. ``counts`` is (n_windows, n_neurons): bin ``t`` belongs to window
    ``t * n_windows // n_bins``."""
    w = (t * counts.shape[0]) // n_bins
    row = counts[w]
    for k in range(n_fired):
        row[fired_idx[k]] += 1
    if record:
        for k in range(n_fired):
            spikes[t, fired_idx[k]] = 1


#: Per-sample activity counters the kernels fill when given an ``activity`` array
#: (:mod:`lsm.energy.activity` documents each one); their column in that array.
ACTIVITY_FIELDS = ("input_events", "spikes", "recurrent_rows", "steps", "input_steps",
                   "recurrent_steps", "active_steps", "peak_rows")


def activity_off() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``activity, drive, input_rows`` arguments that switch the kernels' accounting off."""
    return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int32), np.zeros((0, 0), np.int32)


@njit(nogil=True, cache=True, inline="always")
def _account_step(activity, drive, input_rows, channels, p, q, fired_idx, k_rec):
    """Count one processed bin: the input rows ``channels[p:q]`` and the ``k_rec`` rows of last
    bin's spikes ``fired_idx[:k_rec]`` drive it. ``activity`` holds :data:`ACTIVITY_FIELDS`
    (spikes are counted by the caller after the membrane step); ``drive[j]`` and
    ``input_rows[c]`` count the activations of recurrent row ``j`` and input row ``c``."""
    k_in = q - p
    for k in range(p, q):
        input_rows[channels[k]] += 1
    activity[0] += k_in
    activity[2] += k_rec
    activity[3] += 1
    activity[4] += k_in > 0
    activity[5] += k_rec > 0
    activity[6] += (k_in + k_rec) > 0
    activity[7] = max(activity[7], k_in + k_rec)
    for k in range(k_rec):
        drive[fired_idx[k]] += 1


@njit(nogil=True, cache=True, inline="always")
def _add_rows(acc, w_flat, indptr, indices, data, rows, lo, hi):
    """The rows ``rows[lo:hi]`` of one matrix into ``acc``: dense when ``w_flat`` is not empty,
    else its CSR operands."""
    if w_flat.shape[0] > 0:
        _add_dense_rows(acc, w_flat, rows, lo, hi)
    else:
        _add_csr_rows(acc, indptr, indices, data, rows, lo, hi)


@njit(nogil=True, cache=True)
def _lif_sample(bins, channels, n_bins, w_in_flat, in_indptr, in_indices, in_data,
                w_rec_flat, rec_indptr, rec_indices, rec_data, scale_in, scale_rec, acc_in,
                acc_rec, decay, v_th, reset_mode, counts, spikes, activity, drive, input_rows):
    """Run one sample. ``counts`` (n_windows, n_neurons) int32 receives its spike counts per
    time window, ``spikes`` (n_bins, n_neurons) uint8 its raster when not empty, and
    ``activity`` (:data:`ACTIVITY_FIELDS`, int64), ``drive`` (n_neurons, int32) and
    ``input_rows`` (n_inputs, int32) its activity counts when not empty
    (:func:`_account_step`).

    float32 weights (``acc_in``, ``acc_rec`` empty): the rows are added straight into the
    current. int16 codes (``acc_in``, ``acc_rec``: int32 zeros, one per neuron): the rows of
    each matrix go into its accumulator, turned into the float32 current once per bin with the
    matrices' scales.
    """
    n = counts.shape[1]
    codes = acc_in.shape[0] > 0
    record = spikes.shape[0] > 0
    account = activity.shape[0] > 0
    u = np.zeros(n, np.float32)
    current = np.zeros(n, np.float32)
    fired = np.zeros(n, np.float32)   # s_{t-1}
    fired_idx = np.empty(n, np.int64)
    n_fired = 0
    p = 0
    n_events = bins.shape[0]
    for t in range(n_bins):
        if p >= n_events and n_fired == 0:
            break  # nothing left to drive a neuron over threshold
        q = p
        while q < n_events and bins[q] == t:
            q += 1
        if account:
            _account_step(activity, drive, input_rows, channels, p, q, fired_idx, n_fired)
        if codes:
            _add_rows(acc_in, w_in_flat, in_indptr, in_indices, in_data, channels, p, q)
            _add_rows(acc_rec, w_rec_flat, rec_indptr, rec_indices, rec_data, fired_idx, 0,
                      n_fired)
            _codes_to_current(acc_in, acc_rec, scale_in, scale_rec, current)
        else:
            _add_rows(current, w_in_flat, in_indptr, in_indices, in_data, channels, p, q)
            _add_rows(current, w_rec_flat, rec_indptr, rec_indices, rec_data, fired_idx, 0,
                      n_fired)
        p = q
        n_fired = _membrane_step(u, current, fired, fired_idx, decay, v_th, reset_mode)
        _record_spikes(fired_idx, n_fired, t, n_bins, counts, spikes, record)
        if account:
            activity[1] += n_fired


@njit(nogil=True, cache=True, inline="always")
def _codes_to_current(acc_in, acc_rec, scale_in, scale_rec, current):
    """``current = scale_in * acc_in + scale_rec * acc_rec`` in float32 (each int32 sum
    converted to float32 first, no fused multiply-add); zeroes both accumulators."""
    for i in range(current.shape[0]):
        current[i] = scale_in * np.float32(acc_in[i]) + scale_rec * np.float32(acc_rec[i])
        acc_in[i] = 0
        acc_rec[i] = 0


@njit(parallel=True, nogil=True, cache=True)
def lif_events(offsets, bins, channels, n_bins, w_in, in_indptr, in_indices, in_data,
               w_rec, rec_indptr, rec_indices, rec_data, decay, v_th, reset_mode,
               counts, spikes, activity, drive, input_rows):
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
        Dense input weights; (0, 0) selects ``in_indptr, in_indices, in_data`` (CSR, row = input;
        int64 indptr, uint32 indices, float32 data).
    w_rec : float32 (n_neurons, n_neurons) C-contiguous, or (0, 0)
        Dense recurrent weights (row = presynaptic neuron); (0, 0) selects the CSR operands.
    decay, v_th : float32
    reset_mode : int
        RESET_ZERO, RESET_SUBTRACT or RESET_NONE.
    counts : int32 (n_samples, n_windows, n_neurons), zeroed
        Output: spike counts per time window; bin ``t`` counts in window
        ``t * n_windows // n_bins`` (``n_windows = 1``: the total spike counts).
    spikes : uint8 (n_samples, n_bins, n_neurons) or (0, 0, 0), zeroed
        Output: spike rasters, recorded only when not empty.
    activity : int64 (n_samples, len(ACTIVITY_FIELDS)) or (0, 0), zeroed
        Output: activity counts per sample (:data:`ACTIVITY_FIELDS`), counted only when not
        empty; ``drive`` (n_samples, n_neurons) and ``input_rows`` (n_samples, n_inputs) are
        then int32, zeroed: the activations of each recurrent row (bins in which the neuron's
        spike drove it) and of each input row (its events). One add per row activation and a
        few per bin.
    """
    n_samples = offsets.shape[0] - 1
    w_in_flat = w_in.ravel()
    w_rec_flat = w_rec.ravel()
    record = spikes.shape[0] > 0
    no_spikes = np.zeros((0, 0), np.uint8)
    no_acc = np.zeros(0, np.float32)  # float32 weights: rows go straight into the current
    account = activity.shape[0] > 0
    no_activity = np.zeros(0, np.int64)
    no_drive = np.zeros(0, np.int32)
    one = np.float32(1.0)
    for s in prange(n_samples):
        lo = offsets[s]
        hi = offsets[s + 1]
        _lif_sample(bins[lo:hi], channels[lo:hi], n_bins, w_in_flat, in_indptr, in_indices,
                    in_data, w_rec_flat, rec_indptr, rec_indices, rec_data, one, one, no_acc,
                    no_acc, decay, v_th, reset_mode, counts[s],
                    spikes[s] if record else no_spikes,
                    activity[s] if account else no_activity,
                    drive[s] if account else no_drive,
                    input_rows[s] if account else no_drive)



# ---------------------------------------------------------------------- 16-bit weight codes
@njit(parallel=True, nogil=True, cache=True)
def lif_events_codes(offsets, bins, channels, n_bins, c_in, in_indptr, in_indices, in_data,
                     c_rec, rec_indptr, rec_indices, rec_data, scale_in, scale_rec, decay, v_th,
                     reset_mode, counts, spikes, activity, drive, input_rows):
    """:func:`lif_events` with the weights stored as 16-bit integer codes, one scale per matrix.

    ``w_in ~= scale_in * c_in`` and ``w_rec ~= scale_rec * c_rec``. Per sample and bin ``t``::

        A_t = sum over events (t, c) of c_in[c, :]          int32, exact in any order
        B_t = sum over j in S_{t-1} of c_rec[j, :]          int32, exact in any order
        I_t = scale_in * float32(A_t) + scale_rec * float32(B_t)        float32
        u_t, s_t = membrane_update(u_{t-1}, I_t, s_{t-1})               as in lif_events

    Each row read is half the bytes of a float32 row. The caller guarantees that no sum
    overflows int32: at most ``(2**31 - 1) // 32767`` rows of a matrix per bin
    (:func:`lsm.weight_codes.check_rows_per_bin`).

    Parameters
    ----------
    c_in : int16 (n_inputs, n_neurons) C-contiguous, or (0, 0)
        Dense input codes; (0, 0) selects ``in_indptr, in_indices, in_data`` (CSR; int64,
        uint32, int16).
    c_rec : int16 (n_neurons, n_neurons) C-contiguous, or (0, 0)
        Dense recurrent codes, or (0, 0) for the CSR operands.
    scale_in, scale_rec : float32
        Weight per code of each matrix.

    The other parameters, and the outputs ``counts``, ``spikes``, ``activity`` and ``drive``,
    are those of :func:`lif_events`.
    """
    n_samples = offsets.shape[0] - 1
    c_in_flat = c_in.ravel()
    c_rec_flat = c_rec.ravel()
    record = spikes.shape[0] > 0
    no_spikes = np.zeros((0, 0), np.uint8)
    n = counts.shape[2]
    account = activity.shape[0] > 0
    no_activity = np.zeros(0, np.int64)
    no_drive = np.zeros(0, np.int32)
    for s in prange(n_samples):
        lo = offsets[s]
        hi = offsets[s + 1]
        _lif_sample(bins[lo:hi], channels[lo:hi], n_bins, c_in_flat, in_indptr, in_indices,
                    in_data, c_rec_flat, rec_indptr, rec_indices, rec_data, scale_in, scale_rec,
                    np.zeros(n, np.int32), np.zeros(n, np.int32), decay, v_th, reset_mode,
                    counts[s], spikes[s] if record else no_spikes,
                    activity[s] if account else no_activity,
                    drive[s] if account else no_drive,
                    input_rows[s] if account else no_drive)

# ---------------------------------------------------------------------- crossbar in the loop
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_MASK16 = np.uint64(0xFFFF)
_SQRT3 = np.float32(np.sqrt(3.0))
_INV_2_16 = np.float32(1.0 / 65536.0)


@njit(nogil=True, cache=True, inline="always")
def _hash64(x):
    """splitmix64 finaliser: a well-mixed 64-bit hash of a 64-bit counter."""
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@njit(nogil=True, cache=True, inline="always")
def _normal_from_hash(h):
    """Approximately standard normal from one 64-bit hash: the Irwin-Hall sum of its four
    16-bit uniforms, centred and scaled to unit variance (support +-3.46 sigma)."""
    s = (h & _MASK16) + ((h >> np.uint64(16)) & _MASK16) + ((h >> np.uint64(32)) & _MASK16) \
        + (h >> np.uint64(48))
    return (np.float32(s) * _INV_2_16 - np.float32(2.0)) * _SQRT3


@njit(nogil=True, cache=True)
def hash_normal(seed, counters):
    """The in-loop kernel's noise source, exposed for its statistical tests: one approximately
    standard-normal float32 per uint64 counter, a pure function of (seed, counter)."""
    out = np.empty(counters.shape[0], np.float32)
    for j in range(counters.shape[0]):
        out[j] = _normal_from_hash(_hash64((seed + counters[j]) * _GOLDEN))
    return out


@njit(nogil=True, cache=True, inline="always")
def _adc_differential(acc, m2_in, k_in, m2_rec, k_rec, key, v_read, noise_scale, adc_scale,
                      adc_off, max_code, gain, current):
    """Bit-line currents of one multiply -> ADC -> differential weights.

    ``acc`` (2n,) holds the summed effective conductances (uS) of the active rows, G+ columns
    first: ``k_in`` input rows and ``k_rec`` recurrent rows. Column ``j`` carries
    ``I = v_read * acc[j]`` uA plus read noise ``N(0, noise_scale^2 * (k_in * m2_in[j] +
    k_rec * m2_rec[j]))`` (the sum of the active cells' noise, with each block's mean squared
    conductance of the column standing in for the active cells'), is quantised to
    ``code = clip(floor(I * adc_scale - adc_off + 0.5), 0, max_code)`` and read back as
    ``(code + adc_off) / adc_scale``. Then ``current[i] += gain * (I+_i - I-_i) / v_read`` and
    ``acc`` is zeroed.
    """
    n2 = acc.shape[0]
    n = n2 // 2
    zero = np.float32(0.0)
    half = np.float32(0.5)
    # separate loops: each one vectorises on its own
    for j in range(n2):
        acc[j] *= v_read
    if noise_scale > zero:
        fk_in = np.float32(k_in)
        fk_rec = np.float32(k_rec)
        for j in range(n2):
            h = _hash64((key + np.uint64(j)) * _GOLDEN)
            sd = noise_scale * np.sqrt(fk_in * m2_in[j] + fk_rec * m2_rec[j])
            acc[j] += sd * _normal_from_hash(h)
    for j in range(n2):
        code = np.floor(acc[j] * adc_scale - adc_off + half)
        code = min(max(code, zero), max_code)
        acc[j] = (code + adc_off) / adc_scale
    g = gain / v_read
    for i in range(n):
        current[i] += g * (acc[i] - acc[i + n])
        acc[i] = zero
        acc[i + n] = zero


@njit(nogil=True, cache=True)
def _lif_sample_crossbar(bins, channels, n_bins, g_in_flat, g_rec_flat, m2_in, m2_rec,
                         v_read, noise_scale, adc_scale, adc_off, max_code, gain_in, gain_rec,
                         key0, decay, v_th, reset_mode, counts, spikes, activity, drive,
                         input_rows):
    n = counts.shape[1]
    record = spikes.shape[0] > 0
    account = activity.shape[0] > 0
    one_multiply = gain_in == gain_rec
    u = np.zeros(n, np.float32)
    current = np.zeros(n, np.float32)
    fired = np.zeros(n, np.float32)
    fired_idx = np.empty(n, np.int64)
    acc = np.zeros(2 * n, np.float32)
    n_fired = 0
    p = 0
    n_events = bins.shape[0]
    n2 = np.uint64(2 * n)
    for t in range(n_bins):
        if p >= n_events and n_fired == 0:
            break
        q = p
        while q < n_events and bins[q] == t:
            q += 1
        key_t = key0 + np.uint64(2 * t) * n2
        if account:
            _account_step(activity, drive, input_rows, channels, p, q, fired_idx, n_fired)
        if one_multiply:
            # input rows and last bin's spike rows drive the array together: one multiply
            if q > p or n_fired > 0:
                _add_dense_rows(acc, g_in_flat, channels, p, q)
                _add_dense_rows(acc, g_rec_flat, fired_idx, 0, n_fired)
                _adc_differential(acc, m2_in, q - p, m2_rec, n_fired, key_t, v_read,
                                  noise_scale, adc_scale, adc_off, max_code, gain_in, current)
        else:
            # different consts: the two blocks are multiplied (and digitised) one after the other
            if q > p:
                _add_dense_rows(acc, g_in_flat, channels, p, q)
                _adc_differential(acc, m2_in, q - p, m2_rec, 0, key_t, v_read, noise_scale,
                                  adc_scale, adc_off, max_code, gain_in, current)
            if n_fired > 0:
                _add_dense_rows(acc, g_rec_flat, fired_idx, 0, n_fired)
                _adc_differential(acc, m2_in, 0, m2_rec, n_fired, key_t + n2, v_read,
                                  noise_scale, adc_scale, adc_off, max_code, gain_rec, current)
        p = q
        n_fired = _membrane_step(u, current, fired, fired_idx, decay, v_th, reset_mode)
        _record_spikes(fired_idx, n_fired, t, n_bins, counts, spikes, record)
        if account:
            activity[1] += n_fired


@njit(parallel=True, nogil=True, cache=True)
def lif_events_crossbar(offsets, bins, channels, n_bins, g_in, g_rec, m2_in, m2_rec,
                        v_read, noise_scale, adc_scale, adc_off, max_code, gain_in, gain_rec,
                        seed, sample_offset, decay, v_th, reset_mode, counts, spikes, activity,
                        drive, input_rows):
    """The reservoir with every bin's matrix-vector products computed through the crossbar.

    Per bin the active input rows and the rows of last bin's spikes drive the array at
    ``v_read`` in one multiply (two, input then recurrent, when ``gain_in != gain_rec``: one
    digital scale per multiply); the column currents get fresh read noise and ADC quantisation
    (:func:`_adc_differential`) before the differential pairs become the current ``I_t`` of the
    membrane equation (same as :func:`lif_events`).

    Parameters
    ----------
    g_in : float32 (n_inputs, 2 n_neurons)
        Effective conductances (uS, drift, IR drop and I-V nonlinearity folded in) of the input
        rows, G+ columns then G- columns.
    g_rec : float32 (n_neurons, 2 n_neurons)
        The same for the recurrent rows.
    m2_in, m2_rec : float32 (2 n_neurons,)
        Mean squared conductance of each column over the input / recurrent rows, uS^2.
    v_read, noise_scale, adc_scale, adc_off, max_code, gain_in, gain_rec : float32
        Read voltage (V); ``v_read * read_noise_rel`` (with the clipping's variance factor);
        ADC codes per uA; ADC offset in codes; top code; ``w_in_const / g_unit`` and
        ``w_rec_const / g_unit``.
    seed : uint64
        Noise seed; noise is a pure function of (seed, global sample index, bin, multiply,
        column), so results do not depend on threads or batching.
    sample_offset : int
        Global index of the first sample of this batch.
    activity, drive, input_rows : as for :func:`lif_events`
        Activity counts, when ``activity`` is not (0, 0): a bin counts as one multiply when
        ``gain_in == gain_rec`` (``active_steps``), else as ``input_steps + recurrent_steps``.
    """
    n_samples = offsets.shape[0] - 1
    n = counts.shape[2]
    g_in_flat = g_in.ravel()
    g_rec_flat = g_rec.ravel()
    record = spikes.shape[0] > 0
    no_spikes = np.zeros((0, 0), np.uint8)
    per_sample = np.uint64(2 * n_bins) * np.uint64(2 * n)
    account = activity.shape[0] > 0
    no_activity = np.zeros(0, np.int64)
    no_drive = np.zeros(0, np.int32)
    for s in prange(n_samples):
        lo = offsets[s]
        hi = offsets[s + 1]
        key0 = seed + np.uint64(sample_offset + s) * per_sample
        _lif_sample_crossbar(bins[lo:hi], channels[lo:hi], n_bins, g_in_flat, g_rec_flat,
                             m2_in, m2_rec, v_read, noise_scale, adc_scale, adc_off,
                             max_code, gain_in, gain_rec, key0, decay, v_th, reset_mode,
                             counts[s], spikes[s] if record else no_spikes,
                             activity[s] if account else no_activity,
                             drive[s] if account else no_drive,
                             input_rows[s] if account else no_drive)


@njit(nogil=True, cache=True)
def crossbar_multiply(acc_us, m2_in, k_in, m2_rec, k_rec, keys, v_read, noise_scale, adc_scale,
                      adc_off, max_code, gain):
    """One in-loop multiply, repeated for each noise key: the differential currents (in weight
    units) that :func:`lif_events_crossbar` feeds the membranes for summed conductances
    ``acc_us`` (2n,). For tests and the ``lsm crossbar vmm-error`` sweep."""
    n = acc_us.shape[0] // 2
    out = np.zeros((keys.shape[0], n), np.float32)
    acc = np.empty_like(acc_us)
    for r in range(keys.shape[0]):
        acc[:] = acc_us
        _adc_differential(acc, m2_in, k_in, m2_rec, k_rec, keys[r], v_read, noise_scale,
                          adc_scale, adc_off, max_code, gain, out[r])
    return out
