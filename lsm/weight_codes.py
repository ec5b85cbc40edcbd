"""16-bit integer weight codes (``LSMConfig.weight_format = "int16"``).

A float32 weight matrix ``w`` becomes int16 codes and one float32 scale::

    scale = max|w| / 32767          (0 for an all-zero matrix)
    code  = round(w / scale)        |code| <= 32767
    w    ~= scale * code            |error| <= scale / 2

The kernel (:func:`lsm.kernels.lif_events_codes`) sums codes in int32, exactly and in any order,
as long as one bin adds at most :data:`~lsm.config.MAX_CODE_ROWS_PER_BIN` rows of a matrix
(65,538 x 32767 <= 2**31 - 1): :func:`check_rows_per_bin` refuses a batch that could overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsm.config import CODE_MAX, MAX_CODE_ROWS_PER_BIN
from lsm.events import EventBatch

__all__ = ["WeightCodes", "quantise", "check_rows_per_bin"]


@dataclass(frozen=True)
class WeightCodes:
    """One matrix as int16 codes and its scale.

    Attributes
    ----------
    codes : ndarray of int16, C-contiguous
    scale : numpy.float32
        Weight per code.
    """

    codes: np.ndarray
    scale: np.float32

    def weights(self) -> np.ndarray:
        """``scale * code`` as float32: the weights the codes stand for."""
        return self.scale * self.codes.astype(np.float32)


def quantise(w: np.ndarray) -> WeightCodes:
    """``w`` (finite, float32) as :class:`WeightCodes` with ``scale = max|w| / 32767``.

    The division and rounding are done in float64 (round half to even), so a largest entry maps
    to exactly +-32767.
    """
    w64 = np.asarray(w, dtype=np.float64)
    peak = float(np.abs(w64).max()) if w64.size else 0.0
    if peak == 0.0:
        return WeightCodes(np.zeros(w64.shape, np.int16), np.float32(0.0))
    scale = peak / CODE_MAX
    codes = np.clip(np.rint(w64 / scale), -CODE_MAX, CODE_MAX).astype(np.int16)
    return WeightCodes(np.ascontiguousarray(codes), np.float32(scale))


def check_rows_per_bin(batch: EventBatch, first_sample: int = 0) -> None:
    """Refuse a batch with more input events in one bin of one sample than the int32
    accumulator of int16 codes can sum (:data:`~lsm.config.MAX_CODE_ROWS_PER_BIN`).

    ``first_sample`` is the index of the batch's first sample in the caller's numbering (for the
    error message).

    Raises
    ------
    ValueError
        Naming the sample, the bin and the number of events.
    """
    per_sample = batch.events_per_sample()
    if per_sample.size == 0 or int(per_sample.max()) <= MAX_CODE_ROWS_PER_BIN:
        return  # no sample has enough events in total: the common case, O(n_samples)
    for s in np.flatnonzero(per_sample > MAX_CODE_ROWS_PER_BIN):
        bins, _ = batch.sample(int(s))
        counts = np.bincount(bins, minlength=1)
        t = int(np.argmax(counts))
        if counts[t] > MAX_CODE_ROWS_PER_BIN:
            raise ValueError(
                f"sample {first_sample + int(s)}, bin {t}: {int(counts[t])} input events in one "
                f"bin; with weight_format='int16' (|code| <= {CODE_MAX}) the kernel's int32 "
                f"sum of their rows could overflow (at most {MAX_CODE_ROWS_PER_BIN} events per "
                "bin); use weight_format='float32'")
