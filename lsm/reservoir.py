"""The liquid state machine: a weight source plus the LIF kernel, events in, features out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse

from lsm.config import LSMConfig
from lsm.energy.activity import Activity, count_activity
from lsm.events import EventBatch
from lsm.features import (
    DEFAULT_N_WINDOWS,
    FEATURES,
    check_features,
    counts_to_features,
    window_of_bin,
)
from lsm.inloop import check_in_loop_encoder
from lsm.kernels import RESET_CODES, activity_off, lif_events, lif_events_codes
from lsm.progress import progress_bar
from lsm.validation import array_bytes, check_memory
from lsm.weight_codes import WeightCodes, check_rows_per_bin, quantise
from lsm.weights import WeightSet, as_weight_source, check_weights

__all__ = ["LSM", "FEATURES", "BACKENDS", "CSR_BELOW"]

BACKENDS = ("numba", "torch")

#: Default ``csr_below`` per :attr:`LSMConfig.weight_format`: below this fraction of nonzeros a
#: matrix is stored CSR. A dense int16 row is half the bytes of a float32 one, so dense rows stay
#: the faster choice down to sparser matrices (measured on the 1000-neuron "large" workload of
#: ``lsm bench encode``: dense int16 recurrent rows beat CSR at 5 % and 10 % nonzeros, lose at
#: 2 %).
CSR_BELOW = {"float32": 0.3, "int16": 0.03}

_EMPTY_I64 = np.zeros(0, dtype=np.int64)
_EMPTY_U32 = np.zeros(0, dtype=np.uint32)


def _kernel_operands(w: np.ndarray, csr_below: float):
    """(dense, indptr, indices, data) in ``w``'s dtype (float32 weights or int16 codes): CSR
    when the nonzero fraction is below ``csr_below``.

    Column indices are uint32: an unsigned index spares the kernel numba's negative-index
    wrap-around test on every scattered add (about 25 % of the CSR recurrence's time).
    """
    density = np.count_nonzero(w) / w.size if w.size else 1.0
    if density < csr_below:
        m = scipy.sparse.csr_matrix(w)
        m.sort_indices()
        return (np.zeros((0, 0), w.dtype), m.indptr.astype(np.int64),
                m.indices.astype(np.uint32), m.data.astype(w.dtype))
    return (np.ascontiguousarray(w), _EMPTY_I64, _EMPTY_U32, np.zeros(0, w.dtype))


class LSM:
    """A liquid state machine: fixed random LIF reservoir that turns event streams into features.

    Parameters
    ----------
    config : LSMConfig, optional
        Model settings; the default is the paper's N-MNIST encoder.
    weights : WeightSource or (w_in, w_rec) or None
        Where the weights come from; ``None`` draws :class:`~lsm.weights.GaussianWeights` with
        ``config.seed``.
    backend : {"numba", "torch"}
        ``"numba"``: the event-driven kernel (CPU, parallel over samples). ``"torch"``: the dense
        reference implementation, on CUDA when available.
    csr_below : float, optional
        A weight matrix whose fraction of nonzeros is below this is stored CSR for the numba
        kernel (scattered adds over the nonzeros only); denser ones stay dense (contiguous,
        vectorised row adds are faster there). Results are bit-identical either way. Default:
        :data:`CSR_BELOW` of ``config.weight_format`` (0.3 for float32, 0.03 for int16).

    Attributes
    ----------
    w_in : ndarray float32 (n_inputs, n_neurons)
    w_rec : ndarray float32 (n_neurons, n_neurons)
        The weights as the source made them (also with ``weight_format="int16"``).
    codes : (WeightCodes, WeightCodes) or None
        With ``config.weight_format == "int16"``: the input and recurrent matrices as the
        kernels use them, int16 codes and a scale each (:mod:`lsm.weight_codes`).
    provenance : dict
        How the weights were made (from the weight source).
    conductance_us : ndarray or None
        The block of cells the weights were read from, uS, when the source has one
        (:attr:`lsm.weights.WeightSet.conductance_us`).

    Examples
    --------
    >>> lsm = LSM(LSMConfig(n_inputs=4, n_neurons=8, n_bins=5))
    >>> raster = np.zeros((2, 5, 4), dtype=np.uint8); raster[0, 0, 1] = 1
    >>> lsm.encode(raster, progress=False).shape
    (2, 8)
    """

    def __init__(self, config: LSMConfig | None = None, weights: Any = None,
                 backend: str = "numba", csr_below: float | None = None) -> None:
        self.config = config if config is not None else LSMConfig()
        if not isinstance(self.config, LSMConfig):
            raise TypeError(f"config must be an LSMConfig, got {type(self.config).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if csr_below is None:
            csr_below = CSR_BELOW[self.config.weight_format]
        if not 0.0 <= csr_below <= 1.0:
            raise ValueError(f"csr_below must be in [0, 1], got {csr_below}")
        self.backend = backend
        self.csr_below = csr_below
        self.weight_source = as_weight_source(weights)
        ws = self.weight_source.build(self.config)
        if not isinstance(ws, WeightSet):
            raise TypeError(f"{self.weight_source!r}.build() must return a WeightSet")
        # a source may be buggy: check what it returned, like explicit arrays
        self.w_in, self.w_rec = check_weights(ws.w_in, ws.w_rec, self.config,
                                              type(self.weight_source).__name__)
        self.provenance = dict(ws.provenance)
        self.conductance_us = ws.conductance_us
        self._in_loop = ws.in_loop
        if self._in_loop is not None:
            check_in_loop_encoder(self._in_loop,
                                  f"{type(self.weight_source).__name__}.build().in_loop")
        if self._in_loop is not None and backend != "numba":
            raise ValueError("in-loop crossbar simulation runs on the numba backend only")
        self.codes: tuple[WeightCodes, WeightCodes] | None = None
        if self.config.weight_format == "int16":
            if self._in_loop is not None:
                raise ValueError(
                    f"LSMConfig.weight_format='int16' is for the software kernel: "
                    f"{type(self.weight_source).__name__} computes every multiply in the loop "
                    "through its array model; use weight_format='float32'")
            self.codes = (quantise(self.w_in), quantise(self.w_rec))
            self._in_ops = _kernel_operands(self.codes[0].codes, csr_below)
            self._rec_ops = _kernel_operands(self.codes[1].codes, csr_below)
        else:
            self._in_ops = _kernel_operands(self.w_in, csr_below)
            self._rec_ops = _kernel_operands(self.w_rec, csr_below)

    @property
    def weight_set(self) -> WeightSet:
        return WeightSet(self.w_in, self.w_rec, self.provenance, self._in_loop,
                         self.conductance_us)

    def __repr__(self) -> str:
        c = self.config
        return (f"LSM({c.n_inputs} -> {c.n_neurons}, {c.n_bins} bins, decay={c.decay}, "
                f"v_th={c.v_th}, reset={c.reset!r}, weights={self.provenance.get('source')!r}, "
                f"weight_format={c.weight_format!r}, backend={self.backend!r})")

    # ------------------------------------------------------------------ input
    def to_events(self, x: Any) -> EventBatch:
        """Validate ``x`` and return it as an :class:`EventBatch` matching this config.

        ``x`` is an EventBatch, a dense binary raster (n_samples, n_bins, n_inputs), or a
        sequence of per-sample ``(bins, channels)`` pairs.
        """
        c = self.config
        if isinstance(x, EventBatch):
            batch = x
        elif isinstance(x, np.ndarray) and x.ndim != 1 or _is_tensor(x):
            raster = np.asarray(x.cpu() if _is_tensor(x) else x)
            if raster.ndim != 3:
                raise ValueError(
                    f"raster must have shape (n_samples, n_bins={c.n_bins}, "
                    f"n_inputs={c.n_inputs}), got {raster.shape}"
                )
            if raster.shape[1:] != (c.n_bins, c.n_inputs):
                raise ValueError(
                    f"raster has shape {raster.shape}, expected (n_samples, n_bins={c.n_bins}, "
                    f"n_inputs={c.n_inputs})"
                )
            batch = EventBatch.from_raster(raster)
        elif isinstance(x, Sequence) or isinstance(x, np.ndarray):
            batch = EventBatch.from_streams(x, c.n_bins, c.n_inputs)
        else:
            raise TypeError(
                "x must be a raster array (n_samples, n_bins, n_inputs), a sequence of "
                f"(bins, channels) pairs, or an EventBatch; got {type(x).__name__}"
            )
        if batch.n_bins != c.n_bins or batch.n_channels != c.n_inputs:
            raise ValueError(
                f"events are for {batch.n_bins} bins x {batch.n_channels} channels, the LSM "
                f"expects {c.n_bins} bins x {c.n_inputs} inputs"
            )
        return batch

    # ------------------------------------------------------------------ encoding
    def encode(self, x: Any, features: str = "rates", progress: bool = True,
               batch_size: int = 512, backend: str | None = None,
               device: Any = None, n_windows: int = DEFAULT_N_WINDOWS,
               first_sample: int = 0, return_activity: bool = False):
        """Run the reservoir on every sample and return its features.

        Parameters
        ----------
        x : raster, sequence of (bins, channels), or EventBatch
            See :meth:`to_events`.
        features : {"rates", "counts", "windows", "binned"}
            ``"rates"``: spikes per bin, float32 (n_samples, n_neurons); ``"counts"``: int32
            spike counts (n_samples, n_neurons); ``"windows"``: int32 spike counts in
            ``n_windows`` time windows, (n_samples, n_windows * n_neurons), window-major
            (see :mod:`lsm.features`); ``"binned"``: uint8 spike rasters
            (n_samples, n_bins, n_neurons).
        progress : bool
            Show a progress bar over batches.
        batch_size : int
            Samples per kernel call (progress granularity; memory of the torch backend).
        backend : {"numba", "torch"}, optional
            Overrides the LSM's backend for this call.
        device : torch device, optional
            For the torch backend; default CUDA when available.
        n_windows : int
            Time windows of ``"windows"`` (1 .. n_bins; bin ``t`` counts in window
            ``t * n_windows // n_bins``). The numba kernels count them as they run.
        first_sample : int
            Index of ``x``'s first sample in the whole dataset, when ``x`` is one chunk of it:
            the crossbar-in-the-loop noise is a function of the global sample index, so a
            dataset encoded chunk by chunk gets the features it gets in one call.
        return_activity : bool
            Also count what each inference did (input events, spikes, row activations,
            multiplies; :class:`lsm.energy.Activity`), the input of the energy model. The numba
            kernels (software and simulated crossbar) count as they run; the torch backend and
            other in-loop encoders (the chip) record the spike rasters batch by batch and count
            them (:func:`lsm.energy.count_activity`). Off by default.

        Returns
        -------
        ndarray, or (ndarray, Activity) with ``return_activity``
        """
        n_counted = check_features(features, n_windows, self.config.n_bins)
        backend = self.backend if backend is None else backend
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend != "numba" and self._in_loop is not None:
            raise ValueError("in-loop crossbar simulation runs on the numba backend only")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        batch = self.to_events(x)
        activity = None
        if return_activity:
            c = self.config
            check_memory(f"activity counts of {len(batch)} samples x {c.n_inputs} inputs + "
                         f"{c.n_neurons} neurons",
                         array_bytes((len(batch), c.n_inputs + c.n_neurons + 8), np.int32))
            activity = Activity.empty(len(batch), c.n_inputs, c.n_neurons, c.n_bins)
        counts, spikes = self._run(batch, record=features == "binned", n_windows=n_counted,
                                   progress=progress, batch_size=int(batch_size),
                                   backend=backend, device=device,
                                   first_sample=int(first_sample), activity=activity)
        out = spikes if features == "binned" else counts_to_features(counts, features,
                                                                      self.config.n_bins)
        return (out, activity) if return_activity else out

    def _run(self, batch: EventBatch, record: bool, n_windows: int, progress: bool,
             batch_size: int, backend: str, device: Any, first_sample: int = 0,
             activity: Activity | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Spike counts per window, int32 (n, n_windows, n_neurons), and the rasters when
        ``record``; fills ``activity`` when given."""
        c = self.config
        n = len(batch)
        _check_output_sizes(c, n, n_windows, record,
                            min(n, batch_size) if backend == "torch" else 0)
        if self.codes is not None:
            check_rows_per_bin(batch, first_sample)
        counts = np.zeros((n, n_windows, c.n_neurons), dtype=np.int32)
        spikes = (np.zeros((n, c.n_bins, c.n_neurons), dtype=np.uint8) if record
                  else np.zeros((0, 0, 0), dtype=np.uint8))
        torch_state = self._torch_state(device) if backend == "torch" else None
        with progress_bar(total=n, desc=f"encode ({backend})", unit="sample", disable=not progress,
                  leave=False) as bar:
            for lo in range(0, n, batch_size):
                hi = min(n, lo + batch_size)
                rec = spikes[lo:hi] if record else spikes
                if activity is not None and not self._counts_activity(backend):
                    self._run_counted(batch, lo, hi, counts, rec, backend, torch_state,
                                      first_sample, activity)
                elif backend == "numba":
                    self._run_numba(batch, lo, hi, counts, rec, first_sample, activity)
                else:
                    self._run_torch(batch, lo, hi, counts, rec, torch_state)
                bar.update(hi - lo)
        return counts, (spikes if record else None)

    def _counts_activity(self, backend: str) -> bool:
        """Whether this backend's kernel counts activity itself (else rasters are counted)."""
        if backend != "numba":
            return False
        return self._in_loop is None or getattr(self._in_loop, "counts_activity", False)

    def _run_counted(self, batch, lo, hi, counts, rec, backend, torch_state, first_sample,
                     activity: Activity) -> None:
        """One batch through a path that does not count: record its rasters (into ``rec``
        when the caller records them too), count them."""
        raster = rec if rec.shape[0] else np.zeros(
            (hi - lo, self.config.n_bins, self.config.n_neurons), np.uint8)
        part = slice(lo, hi)
        if backend == "numba":
            self._run_numba(batch, lo, hi, counts, raster, first_sample)
        else:
            self._run_torch(batch, lo, hi, counts, raster, torch_state)
        got = count_activity(batch.select(part), raster)
        activity.counts[part] = got.counts
        activity.input_rows[part] = got.input_rows
        activity.drive[part] = got.drive

    def _run_numba(self, batch, lo, hi, counts, rec, first_sample: int = 0,
                   activity: Activity | None = None) -> None:
        """Samples ``lo:hi`` into ``counts[lo:hi]``, their rasters into ``rec`` (unless it is
        empty) and ``activity[lo:hi]`` (when given)."""
        c = self.config
        e_lo, e_hi = batch.offsets[lo], batch.offsets[hi]
        offsets = batch.offsets[lo:hi + 1] - e_lo
        acts = ((activity.counts[lo:hi], activity.drive[lo:hi], activity.input_rows[lo:hi])
                if activity is not None else activity_off())
        if self._in_loop is not None:
            extra = ({"activity": acts[0], "drive": acts[1], "input_rows": acts[2]}
                     if activity is not None else {})
            self._in_loop.encode(events=batch.select(slice(lo, hi)), decay=np.float32(c.decay),
                                 v_th=np.float32(c.v_th), reset=c.reset, counts=counts[lo:hi],
                                 spikes=rec, sample_offset=first_sample + lo, **extra)
            return
        out = (counts[lo:hi], rec, *acts)
        if self.codes is not None:
            lif_events_codes(offsets, batch.bins[e_lo:e_hi], batch.channels[e_lo:e_hi],
                             c.n_bins, *self._in_ops, *self._rec_ops, self.codes[0].scale,
                             self.codes[1].scale, np.float32(c.decay), np.float32(c.v_th),
                             RESET_CODES[c.reset], *out)
            return
        lif_events(offsets, batch.bins[e_lo:e_hi], batch.channels[e_lo:e_hi], c.n_bins,
                   *self._in_ops, *self._rec_ops, np.float32(c.decay), np.float32(c.v_th),
                   RESET_CODES[c.reset], *out)

    def _torch_state(self, device):
        from lsm.torch_backend import default_device, to_tensor

        dev = default_device() if device is None else device
        if self.codes is not None:  # int16 codes as float64: sums of them are exact
            return (dev, *(to_tensor(w.codes.astype(np.float64), dev) for w in self.codes),
                    tuple(float(w.scale) for w in self.codes))
        return dev, to_tensor(self.w_in, dev), to_tensor(self.w_rec, dev), None

    def _run_torch(self, batch, lo, hi, counts, rec, state) -> None:
        """Samples ``lo:hi`` into ``counts[lo:hi]`` and their rasters into ``rec`` (unless it
        is empty)."""
        import torch

        from lsm.torch_backend import lif_dense

        dev, w_in, w_rec, scales = state
        raster = torch.from_numpy(batch.select(slice(lo, hi)).to_raster(np.float32)).to(dev)
        n_windows = counts.shape[1]
        cnt, spk = lif_dense(raster, w_in, w_rec, self.config.decay, self.config.v_th,
                             self.config.reset, record=rec.shape[0] > 0 or n_windows > 1,
                             scales=scales)
        if n_windows == 1:
            counts[lo:hi, 0] = cnt.cpu().numpy()
        else:  # the dense reference records the rasters and sums them per window
            window = torch.from_numpy(window_of_bin(self.config.n_bins, n_windows)).to(dev)
            per_window = torch.zeros(hi - lo, n_windows, spk.shape[2], dtype=torch.int32,
                                     device=dev)
            per_window.index_add_(1, window, spk.to(torch.int32))
            counts[lo:hi] = per_window.cpu().numpy()
        if rec.shape[0]:
            rec[:] = spk.cpu().numpy()


def _check_output_sizes(c: LSMConfig, n: int, n_windows: int, record: bool,
                        raster_samples: int) -> None:
    """Refuse, before allocating, outputs (and torch input rasters) over the memory budget."""
    check_memory(f"spike counts of {n} samples x {n_windows} windows x {c.n_neurons} neurons",
                 array_bytes((n, n_windows, c.n_neurons), np.int32))
    if record:
        check_memory(f"binned spikes of {n} samples x {c.n_bins} bins x {c.n_neurons} neurons",
                     array_bytes((n, c.n_bins, c.n_neurons), np.uint8))
    if raster_samples:
        check_memory(f"the dense raster of a batch of {raster_samples} samples x {c.n_bins} "
                     f"bins x {c.n_inputs} inputs (torch backend; lower batch_size)",
                     array_bytes((raster_samples, c.n_bins, c.n_inputs), np.float32))


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "cpu")
