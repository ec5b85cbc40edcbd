"""The in-loop path: the reservoir with every time step's multiplies computed on an array.

A weight source may return, beside the static weights, an *in-loop encoder*
(:attr:`lsm.weights.WeightSet.in_loop`): an object that runs the reservoir itself, computing
each bin's input and recurrent drive through a crossbar (simulated, or the real macro) instead of
with ``w_in`` / ``w_rec``. :class:`InLoopEncoder` is the protocol it implements; the LSM hands it
its batches by keyword. Implementations:

- :class:`InLoopCrossbar`: the simulated crossbar (``CrossbarWeights(in_loop=True)``), a Numba
  kernel with fresh read noise and ADC quantisation on every multiply;
- ``hw.weights.MacroInLoop``: every multiply on the macro (``MacroWeights(mode="in_loop")``).

Both apply the membrane equation of :func:`lsm.kernels.membrane_update` to the drive they get::

    u_t = decay * (u_{t-1} * (1 - s_{t-1})) + I_t       reset = "zero"
    u_t = decay * u_{t-1} + I_t - v_th * s_{t-1}        reset = "subtract"
    u_t = decay * u_{t-1} + I_t                         reset = "none"
    s_t = [u_t > v_th]
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lsm.crossbar.inloop import InLoopPhysics
from lsm.events import EventBatch
from lsm.kernels import ACTIVITY_FIELDS, RESET_CODES, activity_off, lif_events_crossbar

__all__ = ["InLoopEncoder", "InLoopCrossbar", "ENCODE_KEYWORDS", "check_in_loop_encoder",
           "check_encode_arguments"]

#: The keyword arguments of :meth:`InLoopEncoder.encode`.
ENCODE_KEYWORDS = ("events", "decay", "v_th", "reset", "counts", "spikes", "sample_offset")


@runtime_checkable
class InLoopEncoder(Protocol):
    """Runs the reservoir with its multiplies computed in the loop (see the module notes)."""

    def encode(self, *, events: EventBatch, decay: float, v_th: float, reset: str,
               counts: np.ndarray, spikes: np.ndarray,
               sample_offset: int) -> None:  # pragma: no cover - protocol
        """Encode a batch of samples, adding their spikes to ``counts`` (and ``spikes``).

        Parameters
        ----------
        events : EventBatch
            The samples of this batch; ``events.n_bins`` steps each, ``events.n_channels`` the
            number of input rows.
        decay : float
            Leak factor per step, in [0, 1]; applied in float32.
        v_th : float
            Firing threshold (> 0), in weight units; applied in float32.
        reset : {"zero", "subtract", "none"}
            What a spike does to its membrane (:attr:`lsm.config.LSMConfig.reset`).
        counts : ndarray of int32, shape (len(events), n_windows, n_neurons), zeroed
            Output: spike counts per sample, time window and neuron; bin ``t`` counts in
            window ``t * n_windows // events.n_bins`` (``n_windows = 1``: total counts).
        spikes : ndarray of uint8, shape (len(events), events.n_bins, n_neurons), zeroed, or
            shape (0, 0, 0)
            Output: spike rasters, written only when not empty.
        sample_offset : int
            Global index of the first sample of this batch, so that noise drawn per sample
            does not depend on how the samples are batched.
        """
        ...


def check_in_loop_encoder(encoder: Any, where: str = "WeightSet.in_loop") -> None:
    """Refuse, with a TypeError naming it, an ``encoder`` that is not an :class:`InLoopEncoder`:
    no ``encode`` method, or one that does not take the protocol's keyword arguments."""
    name = type(encoder).__name__
    if not isinstance(encoder, InLoopEncoder):
        raise TypeError(f"{where} must be an InLoopEncoder (an object with an encode(*, "
                        f"{', '.join(ENCODE_KEYWORDS)}) method) or None; got {name}")
    try:
        signature = inspect.signature(encoder.encode)
    except (TypeError, ValueError):  # a builtin or C callable without a signature: trust it
        return
    try:
        signature.bind(**dict.fromkeys(ENCODE_KEYWORDS))
    except TypeError as exc:
        raise TypeError(f"{where}: {name}.encode{signature} does not take the InLoopEncoder "
                        f"keyword arguments ({', '.join(ENCODE_KEYWORDS)}): {exc}") from None


def check_encode_arguments(events: EventBatch, reset: str, counts: np.ndarray,
                           spikes: np.ndarray, n_neurons: int, owner: str) -> int:
    """Check what :meth:`InLoopEncoder.encode` was given (a kernel would write past a too-small
    output) and return the reset rule's code (:data:`lsm.kernels.RESET_CODES`).

    Raises
    ------
    TypeError
        ``events`` is not an EventBatch.
    ValueError
        An unknown ``reset``, or ``counts`` / ``spikes`` of the wrong shape or dtype or
        read-only; naming ``owner``.
    """
    if not isinstance(events, EventBatch):
        raise TypeError(f"{owner}.encode: events must be an EventBatch, got "
                        f"{type(events).__name__}")
    if not isinstance(reset, str) or reset not in RESET_CODES:
        raise ValueError(f"{owner}.encode: reset must be one of {sorted(RESET_CODES)}, "
                         f"got {reset!r}")
    n = len(events)
    if not (isinstance(counts, np.ndarray) and counts.dtype == np.int32 and counts.ndim == 3
            and counts.shape[0] == n and 1 <= counts.shape[1] <= events.n_bins
            and counts.shape[2] == n_neurons and counts.flags.writeable):
        raise ValueError(f"{owner}.encode: counts must be a writable int32 array of shape "
                         f"({n}, n_windows, {n_neurons}) with 1 <= n_windows <= "
                         f"{events.n_bins}, got {_describe(counts)}")
    if not (isinstance(spikes, np.ndarray) and spikes.dtype == np.uint8
            and spikes.shape in ((0, 0, 0), (n, events.n_bins, n_neurons))
            and spikes.flags.writeable):
        raise ValueError(f"{owner}.encode: spikes must be a writable uint8 array of shape "
                         f"({n}, {events.n_bins}, {n_neurons}) or (0, 0, 0), got "
                         f"{_describe(spikes)}")
    return RESET_CODES[reset]


def _describe(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} {a.shape}" + ("" if a.flags.writeable else " (read-only)")
    return type(a).__name__


@dataclass(frozen=True)
class InLoopCrossbar:
    """The simulated crossbar in the loop: an :class:`InLoopEncoder`.

    Built by :class:`lsm.weights.CrossbarWeights` with ``in_loop=True``. Per bin the active input
    rows and the rows of last bin's spikes drive the array in one multiply (two, input then
    recurrent, when the gains differ: one digital scale per multiply); every column gets fresh
    read noise and ADC quantisation (:mod:`lsm.crossbar.inloop`), and the differential pairs
    become the current ``I_t = gain * (I+ - I-) / v_read`` of the membrane equation. The kernel
    is :func:`lsm.kernels.lif_events_crossbar`.

    Attributes
    ----------
    physics : InLoopPhysics
        Effective conductances and periphery constants of the programmed block.
    gain_in_per_us, gain_rec_per_us : float
        Weight per uS of differential conductance: ``w_in_const / g_unit_us`` and
        ``w_rec_const / g_unit_us``.
    seed : int
        Noise seed (uint64); noise is a pure function of (seed, global sample index, bin,
        multiply, column), so results do not depend on threads or batching.
    """

    physics: InLoopPhysics
    gain_in_per_us: float
    gain_rec_per_us: float
    seed: int

    #: its kernel counts activity itself (``encode(activity=, drive=)``); the LSM records and
    #: counts rasters for encoders without this
    counts_activity = True

    @property
    def n_neurons(self) -> int:
        return self.physics.g_rec_us.shape[0]

    def encode(self, *, events: EventBatch, decay: float, v_th: float, reset: str,
               counts: np.ndarray, spikes: np.ndarray, sample_offset: int,
               activity: np.ndarray | None = None, drive: np.ndarray | None = None,
               input_rows: np.ndarray | None = None) -> None:
        """See :meth:`InLoopEncoder.encode`; ``activity`` (int64 (n, len(ACTIVITY_FIELDS))),
        ``drive`` (int32 (n, n_neurons)) and ``input_rows`` (int32 (n, n_inputs)), zeroed,
        receive the activity counts when given (:func:`lsm.kernels.lif_events_crossbar`)."""
        reset_mode = check_encode_arguments(events, reset, counts, spikes, self.n_neurons,
                                            "InLoopCrossbar")
        if events.n_channels != self.physics.g_in_us.shape[0]:
            raise ValueError(f"InLoopCrossbar.encode: events have {events.n_channels} "
                             f"channels, the array {self.physics.g_in_us.shape[0]} input rows")
        p, f = self.physics, np.float32
        lif_events_crossbar(events.offsets, events.bins, events.channels, events.n_bins,
                            p.g_in_us, p.g_rec_us, p.m2_in_us2, p.m2_rec_us2, f(p.v_read_v),
                            f(p.noise_scale_v), f(p.adc_codes_per_ua), f(p.adc_offset_codes),
                            f(p.max_code), f(self.gain_in_per_us), f(self.gain_rec_per_us),
                            np.uint64(self.seed), int(sample_offset), f(decay), f(v_th),
                            reset_mode, counts, spikes,
                            *_activity_arrays(activity, drive, input_rows, counts,
                                              events.n_channels))


def _activity_arrays(activity, drive, input_rows, counts, n_inputs):
    """The kernel's ``activity, drive, input_rows`` operands: off when none is given, else
    checked."""
    if activity is None and drive is None and input_rows is None:
        return activity_off()
    n, _, n_neurons = counts.shape
    for name, a, dtype, shape in (("activity", activity, np.int64, (n, len(ACTIVITY_FIELDS))),
                                  ("drive", drive, np.int32, (n, n_neurons)),
                                  ("input_rows", input_rows, np.int32, (n, n_inputs))):
        if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == shape
                and a.flags.writeable and a.flags.c_contiguous):
            raise ValueError(f"InLoopCrossbar.encode: {name} must be a writable C-contiguous "
                             f"{np.dtype(dtype).name} array of shape {shape}, got "
                             f"{_describe(a)}")
    return activity, drive, input_rows
