"""Array periphery: input DAC, transimpedance amplifier + ADC, and first-order IR drop.

Multiply mode of the macro: binary spikes on the rows become read-voltage pulses (``InputDAC``),
each bit line sums its cells' currents, a transimpedance amplifier turns the current into a voltage
and an ADC (14 bits by default) digitises it (``ADC``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsm.validation import check_number

__all__ = ["InputDAC", "ADC", "IRDrop"]


@dataclass(frozen=True)
class InputDAC:
    """Binary spikes -> read-voltage pulses on the word lines.

    Parameters
    ----------
    v_read : float
        Read voltage of a spike, V (default 0.2; small enough not to disturb the cells).
    """

    v_read: float = 0.2

    def __post_init__(self) -> None:
        check_number("InputDAC", "v_read", self.v_read, 0.0, 2.0, low_open=True)

    def voltages(self, spikes: np.ndarray) -> np.ndarray:
        """``spikes`` (0/1, any shape) -> volts, float64."""
        s = np.asarray(spikes)
        if s.size and not np.isin(s, (0, 1)).all():
            raise ValueError("InputDAC: spikes must be binary (0/1)")
        return s.astype(np.float64) * self.v_read


@dataclass(frozen=True)
class ADC:
    """Bit-line current -> transimpedance amplifier -> ADC codes.

    ``v = i_ua * r_tia_kohm / 1000`` volts, then ``code = round((v - v_min) / lsb)`` clipped to
    ``[0, 2**bits - 1]`` with ``lsb = (v_max - v_min) / (2**bits - 1)``; inside the range the
    quantisation error is at most half an LSB, outside it the code saturates at the rail.

    Parameters
    ----------
    bits : int
        ADC resolution (default 14, the paper's macro).
    r_tia_kohm : float
        Transimpedance gain, kOhm (default 2.5: 400 uA full scale on a 1 V range).
    v_min, v_max : float
        ADC input range, V (default 0 and 1).
    """

    bits: int = 14
    r_tia_kohm: float = 2.5
    v_min: float = 0.0
    v_max: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)):
            raise TypeError(f"ADC.bits must be an integer, got {self.bits!r}")
        if not 1 <= self.bits <= 24:
            raise ValueError(f"ADC.bits must be in [1, 24], got {self.bits}")
        check_number("ADC", "r_tia_kohm", self.r_tia_kohm, 0.0, low_open=True)
        check_number("ADC", "v_min", self.v_min)
        check_number("ADC", "v_max", self.v_max)
        if self.v_max <= self.v_min:
            raise ValueError(f"ADC.v_max ({self.v_max}) must exceed v_min ({self.v_min})")

    @property
    def max_code(self) -> int:
        return (1 << self.bits) - 1

    @property
    def lsb_v(self) -> float:
        return (self.v_max - self.v_min) / self.max_code

    @property
    def lsb_ua(self) -> float:
        """One LSB expressed as bit-line current, uA."""
        return self.lsb_v * 1000.0 / self.r_tia_kohm

    @property
    def full_scale_ua(self) -> tuple[float, float]:
        k = 1000.0 / self.r_tia_kohm
        return self.v_min * k, self.v_max * k

    def codes(self, i_ua: np.ndarray) -> np.ndarray:
        """Bit-line currents (uA) -> ADC codes (int32)."""
        v = np.asarray(i_ua, dtype=np.float64) * (self.r_tia_kohm / 1000.0)
        c = np.rint((v - self.v_min) / self.lsb_v)
        return np.clip(c, 0, self.max_code).astype(np.int32)

    def currents(self, codes: np.ndarray) -> np.ndarray:
        """ADC codes -> the bit-line current (uA) they stand for."""
        v = self.v_min + np.asarray(codes, dtype=np.float64) * self.lsb_v
        return v * (1000.0 / self.r_tia_kohm)


@dataclass(frozen=True)
class IRDrop:
    """First-order IR drop: the voltage a cell sees falls linearly with its distance from the
    word-line driver (column index) and from the bit-line sense amplifier (row index)::

        V_cell[i, j] = V_row[i] * (1 - drop_frac * (j / (cols - 1) + (rows - 1 - i) / (rows - 1))
                                   / 2)

    Parameters
    ----------
    drop_frac : float
        Fraction of the voltage lost at the far corner of the array (default 0: off).
    """

    drop_frac: float = 0.0

    def __post_init__(self) -> None:
        check_number("IRDrop", "drop_frac", self.drop_frac, 0.0, 1.0)

    def attenuation(self, rows: np.ndarray, cols: np.ndarray, n_rows: int,
                    n_cols: int) -> np.ndarray:
        """Attenuation factors (len(rows), len(cols)) for the given absolute cell positions."""
        if self.drop_frac == 0.0:
            return np.ones((len(rows), len(cols)))
        fr = (n_rows - 1 - np.asarray(rows, dtype=np.float64)) / max(n_rows - 1, 1)
        fc = np.asarray(cols, dtype=np.float64) / max(n_cols - 1, 1)
        return 1.0 - self.drop_frac * (fr[:, None] + fc[None, :]) / 2.0
