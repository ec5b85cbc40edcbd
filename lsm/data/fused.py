"""The fused event decoder: raw dataset bytes -> the kernel's event streams, in one pass.

The reference path (:mod:`lsm.data.formats` + :mod:`lsm.data.transforms`) reads a sample with
tonic into a structured array, crops it with tonic's ``CenterCrop``, selects a polarity and bins
it with NumPy: a dozen array passes and allocations per sample, about 1,300 samples/s on N-MNIST.
This module does the same work in Numba kernels over a whole chunk of files at once, parallel over
files:

* **N-MNIST** (:func:`nmnist_streams`): each file is read whole into one buffer of the chunk;
  :func:`_nmnist_kernel` decodes the 40-bit records (x, y, polarity, 23-bit timestamp, overflow
  markers ``y = 240`` adding 2**13 us to what follows, in linear time), checks them exactly as
  :func:`lsm.data.formats.read_nmnist_bin` does, and crops, selects the polarity and bins in the
  same loop.
* **N-TIDIGITS** (:func:`ntidigits_streams`): each sample's two datasets are read with h5py
  (their dtypes and shapes checked as :func:`~lsm.data.formats.read_ntidigits_sample` does), then
  one kernel checks the values and bins the chunk.

Binning is :class:`~lsm.data.transforms.ToEventStream`'s: ticks of ``resolution_us``, the span
from the first to the last kept tick cut into ``n_bins`` (``bin = (tick - tick0) * n_bins //
n_ticks``), channel ``x + W * (y + H * p)``, and with ``binarize`` each (bin, channel) once, sorted
by bin then channel. The output is event for event the reference path's (``tests/test_fused.py``
compares them sample by sample, edge cases included). A sample that the reference path refuses is
refused here with the same message (the file, the event, the field).

:func:`fused_plan` says whether a :class:`~lsm.data.transforms.Preprocessing` is one this decoder
knows (the presets of :mod:`lsm.data.transforms`); any other chain goes through the reference path.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from numba.cpython.unsafe.numbers import trailing_zeros

from lsm.data.formats import (
    NMNIST_SENSOR,
    NTIDIGITS_CHANNELS,
    NTIDIGITS_MAX_TIME_S,
    BadSampleError,
    nmnist_error,
    read_ntidigits_sample,
)
from lsm.data.transforms import (
    Preprocessing,
    SelectPolarity,
    preprocessing_error,
    span_error,
)

__all__ = ["FusedPlan", "FusedStreams", "Workspace", "fused_plan", "read_files",
           "nmnist_streams", "decode_nmnist_buffer", "ntidigits_streams", "DECODERS"]

#: How a dataset's files become event streams: "fused" (this module, when the preprocessing is
#: one it knows), "reference" (tonic + transforms) or "auto" (fused when it can).
DECODERS = ("auto", "fused", "reference")

# error codes of the N-MNIST kernel (the messages are built by lsm.data.formats.nmnist_error)
_OK, _EMPTY, _TRUNCATED, _NO_EVENTS, _BAD_X, _BAD_Y, _BACKWARDS, _SPAN = range(8)
_INT64_MAX = np.iinfo(np.int64).max
_ERROR_KINDS = {_EMPTY: "empty", _TRUNCATED: "truncated", _NO_EVENTS: "no_events",
                _BAD_X: "x", _BAD_Y: "y", _BACKWARDS: "backwards"}
_OVERFLOW_Y = 240
_OVERFLOW_US = 1 << 13


@dataclass(frozen=True)
class FusedPlan:
    """What the fused decoder does to each sample (derived from a :class:`Preprocessing`).

    Attributes
    ----------
    dataset : {"nmnist", "ntidigits"}
    x0, y0 : int
        Crop origin on the sensor (tonic's ``CenterCrop``: ``(34 - size) // 2``).
    width, height : int
        Crop size (N-TIDIGITS: 64 channels x 1).
    polarity : int
        Polarity kept (0 or 1), or -1 for both as separate channels.
    n_bins, resolution_us : int
    binarize : bool
    """

    dataset: str
    x0: int
    y0: int
    width: int
    height: int
    polarity: int
    n_bins: int
    resolution_us: int
    binarize: bool

    @property
    def n_channels(self) -> int:
        return self.width * self.height * (2 if self.polarity < 0 else 1)


@dataclass
class FusedStreams:
    """Event streams of a chunk of samples in the kernel's CSR form, and the refused samples.

    ``offsets`` has one entry per sample of the chunk plus one; a refused sample has no events
    and its index (in the chunk) and message are in ``errors``.
    """

    offsets: np.ndarray
    bins: np.ndarray
    channels: np.ndarray
    errors: list

    def keep(self, good: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets, bins, channels) of the samples ``good`` (a boolean mask): refused samples
        own no events, so dropping them only drops their offsets."""
        counts = np.diff(self.offsets)[good]
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return offsets, self.bins, self.channels


def fused_plan(preprocessing: Preprocessing) -> FusedPlan | None:
    """The plan for ``preprocessing``, or None when the fused decoder does not know it.

    Known: tonic ``CenterCrop`` of the 34 x 34 x 2 N-MNIST sensor then :class:`SelectPolarity`
    (the N-MNIST preset, any crop, polarity and bins); no steps on the 64 x 1 x 1 cochlea (the
    N-TIDIGITS preset, any bins and tick).
    """
    from tonic.transforms import CenterCrop

    stream = preprocessing.stream
    steps = preprocessing.steps
    if not steps and tuple(stream.sensor_size) == (NTIDIGITS_CHANNELS, 1, 1):
        return FusedPlan("ntidigits", 0, 0, NTIDIGITS_CHANNELS, 1, 0, stream.n_bins,
                         stream.resolution_us, bool(stream.binarize))
    if (len(steps) != 2 or type(steps[0]) is not CenterCrop
            or type(steps[1]) is not SelectPolarity):
        return None
    crop, select = steps
    w, h, _ = NMNIST_SENSOR
    if tuple(crop.sensor_size) != NMNIST_SENSOR:
        return None
    size = crop.size
    cw, ch = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if not (1 <= cw <= w and 1 <= ch <= h):
        return None
    pol = -1 if select.polarity is None else int(select.polarity)
    if tuple(stream.sensor_size) != (cw, ch, 2 if pol < 0 else 1):
        return None
    return FusedPlan("nmnist", (w - cw) // 2, (h - ch) // 2, cw, ch, pol, stream.n_bins,
                     stream.resolution_us, bool(stream.binarize))


# ---------------------------------------------------------------------- binning (shared)
@njit(nogil=True, cache=True, inline="always")
def _flush_bin(bits, b, out_bins, out_ch, pos):
    """Write the channels set in ``bits`` (a bitmap) as events of bin ``b``, in increasing
    order, and clear it; returns the new end."""
    for w in range(bits.shape[0]):
        word = bits[w]
        while word != 0:
            out_bins[pos] = b
            out_ch[pos] = w * 64 + trailing_zeros(word)
            pos += 1
            word &= word - np.uint64(1)
        bits[w] = 0
    return pos


@njit(nogil=True, cache=True, inline="always")
def _emit(ticks, chans, k, n_bins, binarize, bits, out_bins, out_ch, pos):
    """Bin the ``k`` kept events (``ticks`` non-decreasing) into ``out_*[pos:]``; returns the
    new end.

    ``bin = (tick - tick0) * n_bins // n_ticks`` over the span ``tick0 .. tick_last``, found by
    walking the bin edges forward (one division per bin, not per event). With ``binarize`` the
    channels of a bin are gathered in ``bits`` (a zeroed uint64 bitmap of n_channels bits) and
    written once each, in increasing order.
    """
    if k == 0:
        return pos
    tick0 = ticks[0]
    n_ticks = ticks[k - 1] - tick0 + 1
    b = 0
    # the first tick offset of bin b + 1: ceil((b + 1) * n_ticks / n_bins)
    edge = (n_ticks + n_bins - 1) // n_bins
    one = np.uint64(1)
    for e in range(k):
        dt = ticks[e] - tick0
        if dt >= edge:
            if binarize:
                pos = _flush_bin(bits, b, out_bins, out_ch, pos)
            b = (dt * n_bins) // n_ticks
            edge = ((b + 1) * n_ticks + n_bins - 1) // n_bins
        c = chans[e]
        if binarize:
            bits[c >> 6] |= one << np.uint64(c & 63)
        else:
            out_bins[pos] = b
            out_ch[pos] = c
            pos += 1
    if binarize:
        pos = _flush_bin(bits, b, out_bins, out_ch, pos)
    return pos


# ---------------------------------------------------------------------- N-MNIST
@njit(nogil=True, cache=True)
def _nmnist_file(raw, lo, hi, x0, y0, cw, ch, polarity, res_us, n_bins, binarize, out_bins,
                 out_ch, out_lo, err):
    """Decode, check, crop, select and bin one file ``raw[lo:hi]``; returns its event count and
    fills ``err`` (code, event, value, previous value) when it is refused."""
    size = hi - lo
    if size == 0:
        err[0] = _EMPTY
        return 0
    if size % 5:
        err[0] = _TRUNCATED
        err[1] = size
        return 0
    w, h = 34, 34
    n_rec = size // 5
    ticks = np.empty(n_rec, np.int64)
    chans = np.empty(n_rec, np.int32)
    both = np.int64(1) if polarity < 0 else np.int64(0)  # polarity as a channel bit
    overflow = np.int64(0)
    j = 0  # event index among the non-overflow records (what tonic returns)
    k = 0  # kept events
    bad_x = -1
    bad_y = -1
    back = -1
    prev = np.int64(-1)
    for r in range(n_rec):
        b = lo + 5 * r
        x = np.int64(raw[b])
        y = np.int64(raw[b + 1])
        if y == _OVERFLOW_Y:
            overflow += _OVERFLOW_US
            continue
        b2 = np.int64(raw[b + 2])
        # tonic adds the overflows to uint32 timestamps: they wrap at 2**32 us the same way
        t = ((((b2 & 127) << 16) | (np.int64(raw[b + 3]) << 8) | np.int64(raw[b + 4]))
             + overflow) & 0xFFFFFFFF
        p = b2 >> 7
        if x >= w and bad_x < 0:
            bad_x = j
            err[4] = x
        if y >= h and bad_y < 0:
            bad_y = j
            err[5] = y
        if j > 0 and t < prev and back < 0:
            back = j
            err[6] = t
            err[7] = prev
        prev = t
        j += 1
        # kept or not, the event is written; only a kept one advances k (no branch to mispredict)
        keep = ((x >= x0) & (x < x0 + cw) & (y >= y0) & (y < y0 + ch)
                & ((polarity < 0) | (p == polarity)))
        ticks[k] = t
        chans[k] = (x - x0) + cw * ((y - y0) + ch * (p & both))
        k += keep
    if j == 0:
        err[0] = _NO_EVENTS
        return 0
    if bad_x >= 0:
        err[0] = _BAD_X
        err[1] = bad_x
        err[2] = err[4]
        return 0
    if bad_y >= 0:
        err[0] = _BAD_Y
        err[1] = bad_y
        err[2] = err[5]
        return 0
    if back >= 0:
        err[0] = _BACKWARDS
        err[1] = back
        err[2] = err[6]
        err[3] = err[7]
        return 0
    if res_us != 1:
        for e in range(k):
            ticks[e] = ticks[e] // res_us
    if k > 0 and ticks[k - 1] - ticks[0] + 1 > _INT64_MAX // n_bins:
        err[0] = _SPAN
        err[2] = ticks[k - 1] - ticks[0] + 1
        return 0
    bits = np.zeros((cw * ch * (2 if polarity < 0 else 1) + 63) // 64, np.uint64)
    return _emit(ticks, chans, k, n_bins, binarize, bits, out_bins, out_ch, out_lo) - out_lo


@njit(parallel=True, nogil=True, cache=True)
def _nmnist_kernel(raw, starts, x0, y0, cw, ch, polarity, res_us, n_bins, binarize, out_bins,
                   out_ch, counts, errors):
    """Files ``raw[starts[f]:starts[f+1]]`` in parallel; file ``f`` writes its events from
    ``out_*[starts[f] // 5]`` on (never more than its records) and its count to ``counts[f]``.
    ``errors`` (n_files, 8) int64 zeros receives the code and details of a refused file."""
    for f in prange(starts.shape[0] - 1):
        lo = starts[f]
        counts[f] = _nmnist_file(raw, lo, starts[f + 1], x0, y0, cw, ch, polarity, res_us,
                                 n_bins, binarize, out_bins, out_ch, lo // 5, errors[f])


@njit(parallel=True, nogil=True, cache=True)
def _compact(src_lo, counts, out_bins, out_ch, offsets, bins, channels):
    """Move each sample's events from ``out_*[src_lo[s]:]`` to ``*[offsets[s]:offsets[s+1]]``."""
    for s in prange(counts.shape[0]):
        lo = src_lo[s]
        d = offsets[s]
        for e in range(counts[s]):
            bins[d + e] = out_bins[lo + e]
            channels[d + e] = out_ch[lo + e]


def _finish(src_lo: np.ndarray, counts: np.ndarray, out_bins: np.ndarray, out_ch: np.ndarray,
            errors: list) -> FusedStreams:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    bins = np.empty(offsets[-1], np.int32)
    channels = np.empty(offsets[-1], np.int32)
    _compact(src_lo, counts, out_bins, out_ch, offsets, bins, channels)
    return FusedStreams(offsets, bins, channels, errors)


#: bytes read per system call: above any N-MNIST file (about 20-30 KB), below malloc's mmap limit
_READ_BLOCK = 1 << 16


class Workspace:
    """Buffers kept from one chunk to the next (the file bytes, the decoder's scratch output).

    A fresh buffer of tens of MB costs a page fault per 4 KB page on first touch, about as much
    as decoding into it; reusing one makes that a once-per-run cost. Pass one workspace to the
    consecutive calls of one run (:func:`nmnist_streams`); results never point into it.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype) -> np.ndarray:
        """A buffer of at least ``n`` items (its first ``n`` returned), kept for the next call."""
        buf = self._buffers.get(name)
        if buf is None or len(buf) < n or buf.dtype != np.dtype(dtype):
            buf = np.empty(max(n, 0 if buf is None else len(buf) * 5 // 4), dtype=dtype)
            self._buffers[name] = buf
        return buf[:n]


def read_files(paths: list, workspace: Workspace | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every file whole, back to back in one buffer: (raw, starts, {index: message}); a file
    that cannot be read holds no bytes and has a message.

    Each file is read straight into the buffer (``os.readv`` into its free end, no bytes object
    per file), which grows when a file does not fit.
    """
    workspace = Workspace() if workspace is None else workspace
    buf = workspace.get("raw", len(paths) * 32768 + _READ_BLOCK, np.uint8)
    view = memoryview(buf)
    starts = np.zeros(len(paths) + 1, dtype=np.int64)
    failed = {}
    pos = 0
    for i, p in enumerate(paths):
        begin = pos
        try:
            # non-blocking open: a FIFO put in a file's place must not hang the run
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)
                regular = stat.S_ISREG(st.st_mode)
                if not regular:
                    failed[i] = f"{p}: not a regular file"
                # what stat says, as the reference reader reads it
                end = pos + st.st_size if regular else pos
                while pos < end:
                    if pos + _READ_BLOCK > len(buf):
                        kept = buf[:pos].copy()
                        buf = workspace.get("raw", 2 * len(buf) + _READ_BLOCK + st.st_size,
                                            np.uint8)
                        buf[:pos] = kept
                        view = memoryview(buf)
                    got = os.readv(fd, [view[pos:min(end, pos + _READ_BLOCK)]])
                    pos += got
                    if got == 0:  # shorter than stat said: truncated under our feet
                        break
            finally:
                os.close(fd)
        except OSError as exc:  # gone, an I/O error
            failed[i] = f"{p}: cannot read ({exc.strerror or exc})"
        if i in failed:
            pos = begin
        starts[i + 1] = pos
    return buf[:pos], starts, failed


def nmnist_streams(paths: list, plan: FusedPlan, root=None,
                   workspace: Workspace | None = None) -> FusedStreams:
    """N-MNIST ``.bin`` files -> event streams, as the reference path makes them.

    Parameters
    ----------
    paths : list of path
        The files, one sample each.
    plan : FusedPlan
        From :func:`fused_plan` of the N-MNIST preprocessing.
    root : path, optional
        The dataset's folder: messages name samples relative to it.
    workspace : Workspace, optional
        Buffers to reuse across the calls of one run.

    Returns
    -------
    FusedStreams
        One stream per file; a file the reference reader refuses (empty, truncated, only
        overflow markers, x or y outside 34 x 34, time going backwards, unreadable) has no
        events and a :class:`~lsm.data.formats.BadSampleError` message naming it in ``errors``.
    """
    raw, starts, failed = read_files(paths, workspace)
    return decode_nmnist_buffer(paths, raw, starts, failed, plan, root, workspace)


def decode_nmnist_buffer(paths: list, raw: np.ndarray, starts: np.ndarray, failed: dict,
                         plan: FusedPlan, root=None,
                         workspace: Workspace | None = None) -> FusedStreams:
    """The decoding half of :func:`nmnist_streams`: files ``raw[starts[i]:starts[i+1]]``
    (``failed``: {index: message} of those that could not be read). ``root``: the dataset's
    folder, for the sample ids of the messages (default the paths)."""
    if plan.dataset != "nmnist":
        raise ValueError(f"plan is for {plan.dataset!r}, not N-MNIST")
    n = len(paths)
    counts = np.zeros(n, dtype=np.int64)
    errs = np.zeros((n, 8), dtype=np.int64)
    cap = max(1, int(starts[-1]) // 5)
    workspace = Workspace() if workspace is None else workspace
    out_bins = workspace.get("bins", cap, np.int32)
    out_ch = workspace.get("channels", cap, np.int32)
    if n:
        _nmnist_kernel(raw, starts, plan.x0, plan.y0, plan.width, plan.height, plan.polarity,
                       plan.resolution_us, plan.n_bins, plan.binarize, out_bins, out_ch,
                       counts, errs)
    errors = []
    for i in range(n):
        if i in failed:
            errors.append((i, failed[i]))
        elif errs[i, 0] != _OK:
            code, j, a, b = (int(v) for v in errs[i, :4])
            kind = _ERROR_KINDS.get(code)
            if code == _SPAN:
                errors.append((i, preprocessing_error(
                    os.path.relpath(paths[i], root) if root is not None else str(paths[i]),
                    span_error(a, plan.resolution_us, plan.n_bins))))
            elif kind == "truncated":
                errors.append((i, nmnist_error(paths[i], kind, size=j)))
            else:
                errors.append((i, nmnist_error(paths[i], kind, event=j, value=a, previous=b)))
    return _finish(starts[:-1] // 5, counts, out_bins, out_ch, errors)


# ---------------------------------------------------------------------- N-TIDIGITS
@njit(parallel=True, nogil=True, cache=True)
def _ntidigits_kernel(x, t, starts, max_time_s, res_us, n_bins, binarize, out_bins, out_ch,
                      counts, bad, span):
    """Samples ``x[starts[s]:starts[s+1]]`` (channels, float64) and ``t[...]`` (seconds) in
    parallel: checked (whole channels in [0, 64), finite timestamps within +-max, not going
    backwards, at least one event), rounded to microseconds, binned into ``out_*[starts[s]:]``.
    A sample failing a check gets ``bad[s] = 1`` and no events; one whose span (``span[s]``
    ticks) times ``n_bins`` leaves int64 gets ``bad[s] = 2``."""
    for s in prange(starts.shape[0] - 1):
        lo = starts[s]
        hi = starts[s + 1]
        n = hi - lo
        ok = n > 0
        for e in range(lo, hi):
            c = x[e]
            ts = t[e]
            if not (np.isfinite(c) and c == np.floor(c) and 0 <= c < 64):
                ok = False
            if not (np.isfinite(ts) and abs(ts) <= max_time_s):
                ok = False
            if e > lo and ts < t[e - 1]:
                ok = False
        if not ok:
            bad[s] = 1
            continue
        ticks = np.empty(n, np.int64)
        chans = np.empty(n, np.int32)
        for e in range(n):
            us = np.int64(np.round(t[lo + e] * 1e6))
            ticks[e] = us // res_us
            chans[e] = np.int32(x[lo + e])
        span[s] = ticks[n - 1] - ticks[0] + 1
        if span[s] > _INT64_MAX // n_bins:
            bad[s] = 2
            continue
        bits = np.zeros(1, np.uint64)  # 64 channels
        counts[s] = _emit(ticks, chans, n, n_bins, binarize, bits, out_bins, out_ch, lo) - lo


def _ntidigits_raw(addresses, timestamps, sample_id: str):
    """A sample's (addresses, timestamps) from the split's two groups, as stored, or None when
    its datasets are not plain 1-D real arrays of one length (the reference reader then says
    what is wrong)."""
    import h5py

    try:
        a = addresses[sample_id]
        t = timestamps[sample_id]
    except KeyError:
        return None
    if not (isinstance(a, h5py.Dataset) and isinstance(t, h5py.Dataset)):
        return None
    if a.dtype.kind not in "iuf" or t.dtype.kind not in "biuf" or a.ndim != 1 \
            or a.shape != t.shape:
        return None
    try:
        return a[()], t[()]
    except (OSError, ValueError, TypeError):
        return None


def ntidigits_streams(h5, split: str, sample_ids: list, plan: FusedPlan,
                      source: str) -> FusedStreams:
    """N-TIDIGITS samples of an open HDF5 file -> event streams, as the reference path makes
    them.

    Parameters
    ----------
    h5 : h5py.File
    split : {"train", "test"}
    sample_ids : list of str
    plan : FusedPlan
        From :func:`fused_plan` of the N-TIDIGITS preprocessing.
    source : str
        The file's name, for the messages.

    Returns
    -------
    FusedStreams
        A sample the reference reader refuses has no events and its message (the reference
        reader's own, naming the file, the sample and the event) in ``errors``.
    """
    if plan.dataset != "ntidigits":
        raise ValueError(f"plan is for {plan.dataset!r}, not N-TIDIGITS")
    n = len(sample_ids)
    xs, ts, refused = [], [], []
    lengths = np.zeros(n, dtype=np.int64)
    addresses, timestamps = h5[f"{split}_addresses"], h5[f"{split}_timestamps"]
    for i, sid in enumerate(sample_ids):
        got = _ntidigits_raw(addresses, timestamps, sid)
        if got is None:
            refused.append(i)
            continue
        xs.append(got[0])
        ts.append(got[1])
        lengths[i] = len(got[0])
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    x = np.concatenate(xs).astype(np.float64, copy=False) if xs else np.zeros(0)
    t = np.concatenate(ts).astype(np.float64, copy=False) if ts else np.zeros(0)
    counts = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=np.int8)
    span = np.zeros(n, dtype=np.int64)
    cap = max(1, int(starts[-1]))
    out_bins = np.empty(cap, np.int32)
    out_ch = np.empty(cap, np.int32)
    if n:
        _ntidigits_kernel(x, t, starts, NTIDIGITS_MAX_TIME_S, plan.resolution_us, plan.n_bins,
                          plan.binarize, out_bins, out_ch, counts, bad, span)
    bad[refused] = 1
    errors = []
    for i in np.flatnonzero(bad):
        counts[i] = 0
        if bad[i] == 2:
            errors.append((int(i), preprocessing_error(
                sample_ids[i], span_error(int(span[i]), plan.resolution_us, plan.n_bins))))
            continue
        try:  # the reference reader words the message (rare: only for a refused sample)
            read_ntidigits_sample(h5, split, sample_ids[i], source)
        except BadSampleError as exc:
            errors.append((int(i), str(exc)))
        else:  # pragma: no cover - the two checks disagree: never silently accept
            raise AssertionError(f"{source}: sample {sample_ids[i]!r} refused by the fused "
                                 "checks but accepted by the reference reader")
    return _finish(starts[:-1], counts, out_bins, out_ch, errors)

