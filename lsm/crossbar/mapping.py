"""Placing an LSM's weight matrices on a crossbar as differential pairs.

As on the paper's macro, a signed weight is the difference of two cells in the same row:
``G+`` in column ``i`` and ``G-`` in column ``i + N/2`` of the ``N = 2 * n_neurons`` columns used,
and ``weight = const * (G+ - G-) / g_unit``. Rows ``0 .. n_inputs-1`` of the block hold ``W_in``,
the next ``n_neurons`` rows hold ``W_rec``::

             cols 0 .. n-1 (G+)      cols n .. 2n-1 (G-)
    rows 0 .. n_in-1        W_in+                   W_in-
    rows n_in .. n_in+n-1   W_rec+                  W_rec-
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsm.crossbar.array import Region

__all__ = ["DifferentialMapping"]


@dataclass(frozen=True)
class DifferentialMapping:
    """Where ``W_in`` (n_inputs x n_neurons) and ``W_rec`` (n_neurons x n_neurons) live.

    Parameters
    ----------
    n_inputs, n_neurons : int
    array_rows, array_cols : int
        Size of the array (default 512 x 512).
    row_offset, col_offset : int
        Top-left cell of the block.

    Raises
    ------
    ValueError
        When the block does not fit, naming what is needed and what there is.
    """

    n_inputs: int
    n_neurons: int
    array_rows: int = 512
    array_cols: int = 512
    row_offset: int = 0
    col_offset: int = 0

    def __post_init__(self) -> None:
        for name in ("n_inputs", "n_neurons", "array_rows", "array_cols"):
            if getattr(self, name) < 1:
                raise ValueError(f"DifferentialMapping.{name} must be >= 1")
        if self.row_offset < 0 or self.col_offset < 0:
            raise ValueError("DifferentialMapping offsets must be >= 0")
        need_r = self.row_offset + self.rows_needed
        need_c = self.col_offset + self.cols_needed
        if need_r > self.array_rows or need_c > self.array_cols:
            raise ValueError(
                f"W_in ({self.n_inputs} x {self.n_neurons}) and W_rec ({self.n_neurons} x "
                f"{self.n_neurons}) as differential pairs need {self.rows_needed} rows x "
                f"{self.cols_needed} columns (n_inputs + n_neurons rows, 2 x n_neurons columns)"
                f" from row {self.row_offset}, column {self.col_offset}; the array has "
                f"{self.array_rows} x {self.array_cols}"
            )

    @property
    def rows_needed(self) -> int:
        return self.n_inputs + self.n_neurons

    @property
    def cols_needed(self) -> int:
        return 2 * self.n_neurons

    @property
    def region(self) -> Region:
        return Region(self.row_offset, self.row_offset + self.rows_needed, self.col_offset,
                      self.col_offset + self.cols_needed)

    @property
    def utilisation(self) -> float:
        """Fraction of the array's cells this block uses."""
        return self.rows_needed * self.cols_needed / (self.array_rows * self.array_cols)

    def report(self) -> dict:
        return {"rows": self.rows_needed, "cols": self.cols_needed,
                "array": [self.array_rows, self.array_cols],
                "offset": [self.row_offset, self.col_offset],
                "utilisation": self.utilisation}

    def split(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(in_plus, in_minus, rec_plus, rec_minus) views of a block-shaped array."""
        block = np.asarray(block)
        if block.shape != (self.rows_needed, self.cols_needed):
            raise ValueError(f"expected a block of shape {(self.rows_needed, self.cols_needed)},"
                             f" got {block.shape}")
        n_in, n = self.n_inputs, self.n_neurons
        return block[:n_in, :n], block[:n_in, n:], block[n_in:, :n], block[n_in:, n:]

    def weights(self, g_block_us: np.ndarray, w_in_const: float, w_rec_const: float,
                g_unit_us: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Signed weights from a block of conductances: ``const * (G+ - G-) / g_unit``."""
        ip, im, rp, rm = self.split(g_block_us)
        w_in = w_in_const * (ip - im) / g_unit_us
        w_rec = w_rec_const * (rp - rm) / g_unit_us
        return w_in.astype(np.float32), w_rec.astype(np.float32)

    def targets(self, w_in: np.ndarray, w_rec: np.ndarray, w_in_const: float,
                w_rec_const: float, g_base_us: float, g_unit_us: float = 1.0) -> np.ndarray:
        """Conductance targets (block-shaped, uS) that represent given weights: the positive part
        on ``G+`` and the negative part on ``G-``, both above a common ``g_base_us``."""
        out = np.full((self.rows_needed, self.cols_needed), float(g_base_us))
        ip, im, rp, rm = self.split(out)
        for w, const, plus, minus in ((w_in, w_in_const, ip, im), (w_rec, w_rec_const, rp, rm)):
            g = np.asarray(w, dtype=np.float64) * g_unit_us / const
            plus += np.maximum(g, 0.0)
            minus += np.maximum(-g, 0.0)
        return out
