"""A 1T1R RRAM crossbar array: per-cell state, pulses, reads, multiply mode (write-verify on it:
:mod:`calibration.writeverify`).

State is explicit and independent of the LSM (the lab emulator drives the same object): the
programmed conductance ``g_us`` of every cell at its programming time, whether it is formed, when
it was last programmed, its drift exponent and its stuck-at fault. Time is a simulated clock
(``now_s``, moved by :meth:`CrossbarArray.advance`) unless a ``clock`` callable is given.

Random streams (faults, drift exponents, programming, reads) are independent children of one seed:
the same seed and the same calls give the same array, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from lsm.crossbar.device import FORM, RESET, SET, DeviceParams, Pulse
from lsm.crossbar.peripherals import ADC, InputDAC, IRDrop
from lsm.validation import array_bytes, check_memory

__all__ = ["Region", "CrossbarArray", "STUCK_NONE", "STUCK_HRS", "STUCK_LRS"]

STUCK_NONE, STUCK_HRS, STUCK_LRS = 0, 1, 2


@dataclass(frozen=True)
class Region:
    """A rectangle of cells: rows ``row_start:row_stop``, columns ``col_start:col_stop``."""

    row_start: int
    row_stop: int
    col_start: int
    col_stop: int

    def __post_init__(self) -> None:
        for name in ("row_start", "row_stop", "col_start", "col_stop"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"Region.{name} must be an integer, got {v!r}")
        if not (0 <= self.row_start < self.row_stop and 0 <= self.col_start < self.col_stop):
            raise ValueError(f"Region needs 0 <= start < stop on both axes, got {self}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.row_stop - self.row_start, self.col_stop - self.col_start

    @property
    def rows(self) -> np.ndarray:
        return np.arange(self.row_start, self.row_stop)

    @property
    def cols(self) -> np.ndarray:
        return np.arange(self.col_start, self.col_stop)

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column index of every cell, row-major, as two flat arrays."""
        r, c = np.meshgrid(self.rows, self.cols, indexing="ij")
        return r.ravel(), c.ravel()


def _truncated_draw(rng: np.random.Generator, mean: np.ndarray, std: np.ndarray, lo: float,
                    hi: float, distribution: str) -> np.ndarray:
    """Inverse-CDF draws of D(mean, std) truncated to [lo, hi], elementwise."""
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    u = rng.random(mean.shape)
    if distribution == "lognormal":
        cv = np.where(mean > 0, std / np.maximum(mean, 1e-300), 0.0)
        s = np.sqrt(np.log1p(cv ** 2))
        m = np.log(np.maximum(mean, 1e-300)) - s ** 2 / 2
        safe = np.where(s > 0, s, 1.0)
        a = special.ndtr((math.log(lo) - m) / safe)
        b = special.ndtr((math.log(hi) - m) / safe)
        x = np.exp(m + safe * special.ndtri(a + u * (b - a)))
        x = np.where(s > 0, x, mean)
    else:
        safe = np.where(std > 0, std, 1.0)
        a = special.ndtr((lo - mean) / safe)
        b = special.ndtr((hi - mean) / safe)
        x = mean + safe * special.ndtri(a + u * (b - a))
        x = np.where(std > 0, x, mean)
    return np.clip(x, lo, hi)


class CrossbarArray:
    """An RRAM crossbar of ``rows x cols`` 1T1R cells.

    Parameters
    ----------
    rows, cols : int
        Array size (default 512 x 512, the paper's macro).
    device : DeviceParams
        Cell physics.
    seed : int
        Seed of every random draw of this array.
    clock : callable, optional
        Returns the current time in seconds; default: the simulated clock of :meth:`advance`.
    """

    def __init__(self, rows: int = 512, cols: int = 512, device: DeviceParams | None = None,
                 seed: int = 0, clock: Callable[[], float] | None = None) -> None:
        for name, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"CrossbarArray.{name} must be a positive integer, got {v!r}")
        self.shape = (int(rows), int(cols))
        # each cell's state is a float64 in several arrays (conductance, time, drift exponent)
        check_memory(f"a CrossbarArray of {rows} x {cols} cells (float64 state per cell)",
                     array_bytes(self.shape, np.float64))
        self.device = device if device is not None else DeviceParams()
        self.seed = int(seed)
        fault_ss, drift_ss, prog_ss, read_ss = np.random.SeedSequence(self.seed).spawn(4)
        self._rng_prog = np.random.default_rng(prog_ss)
        self._rng_read = np.random.default_rng(read_ss)
        self._sim_time_s = 0.0
        self._clock = clock
        p = self.device.programming
        self.g_us = np.full(self.shape, p.g_virgin_us)
        self.formed = np.zeros(self.shape, dtype=bool)
        self.t_prog_s = np.zeros(self.shape)
        d = self.device.drift
        self.nu = np.maximum(np.random.default_rng(drift_ss).normal(d.nu, d.nu_std, self.shape),
                             0.0) if d.nu_std > 0 else np.full(self.shape, d.nu)
        f = self.device.faults
        u = np.random.default_rng(fault_ss).random(self.shape)
        self.stuck = np.full(self.shape, STUCK_NONE, dtype=np.int8)
        self.stuck[u < f.p_stuck_hrs] = STUCK_HRS
        self.stuck[(u >= f.p_stuck_hrs) & (u < f.p_stuck_hrs + f.p_stuck_lrs)] = STUCK_LRS
        self.pulse_count = 0

    # ------------------------------------------------------------------ time
    @property
    def now_s(self) -> float:
        return float(self._clock()) if self._clock is not None else self._sim_time_s

    def advance(self, dt_s: float) -> None:
        """Move the simulated clock forward by ``dt_s`` seconds."""
        if self._clock is not None:
            raise RuntimeError("this array follows an external clock; advance() is not allowed")
        if not (math.isfinite(dt_s) and dt_s >= 0):
            raise ValueError(f"dt_s must be finite and >= 0, got {dt_s}")
        self._sim_time_s += float(dt_s)

    # ------------------------------------------------------------------ validation
    def _cells(self, rows, cols) -> tuple[np.ndarray, np.ndarray]:
        r = np.asarray(rows)
        c = np.asarray(cols)
        for name, a, n in (("rows", r, self.shape[0]), ("cols", c, self.shape[1])):
            if a.size and not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"{name} must be integer indices, got dtype {a.dtype}")
            if a.size and (a.min() < 0 or a.max() >= n):
                bad = a[(a < 0) | (a >= n)].ravel()[0]
                raise ValueError(f"{name} index {bad} is outside the array [0, {n})")
        try:
            r, c = np.broadcast_arrays(r.astype(np.int64), c.astype(np.int64))
        except ValueError:
            raise ValueError(f"rows {r.shape} and cols {c.shape} do not broadcast") from None
        return r, c

    def check_region(self, region: Region) -> Region:
        if not isinstance(region, Region):
            raise TypeError(f"region must be a Region, got {type(region).__name__}")
        if region.row_stop > self.shape[0] or region.col_stop > self.shape[1]:
            raise ValueError(f"region {region} is outside the {self.shape[0]} x "
                             f"{self.shape[1]} array")
        return region

    # ------------------------------------------------------------------ programming
    def program(self, rows, cols, pulse: Pulse) -> None:
        """Apply ``pulse`` to each listed cell (``rows`` and ``cols`` broadcast like NumPy
        indices; each cell must appear once)."""
        if not isinstance(pulse, Pulse):
            raise TypeError(f"pulse must be a Pulse, got {type(pulse).__name__}")
        r, c = self._cells(rows, cols)
        self._apply(r.ravel(), c.ravel(), pulse.kind, np.full(r.size, pulse.amplitude_v),
                    pulse.width_ns, np.full(r.size, pulse.compliance_ua))

    def program_region(self, region: Region, pulse: Pulse) -> None:
        self.check_region(region)
        self.program(*region.cells(), pulse)

    def program_random(self, region: Region, pulse: Pulse | None = None) -> None:
        """Form every cell of ``region`` into the random-conductance state (default
        :meth:`Pulse.form`: 3 V, 1 us, 100 uA). Formed cells receive the pulse as a SET."""
        pulse = Pulse.form() if pulse is None else pulse
        if pulse.kind != FORM:
            raise ValueError(f"program_random needs a FORM pulse, got {pulse.kind.upper()}")
        self.program_region(region, pulse)

    def program_cells(self, rows, cols, kind: str, amplitude_v, width_ns: float,
                      compliance_ua=100.0) -> None:
        """Apply one pulse of ``kind`` to each listed cell, with a per-cell amplitude (V,
        signed: negative for RESET) and compliance (uA); the same physics as :meth:`program`
        (write-verify uses it: :mod:`calibration.writeverify`)."""
        if kind not in (FORM, SET, RESET):
            raise ValueError(f"kind must be one of {(FORM, SET, RESET)}, got {kind!r}")
        r, c = self._cells(rows, cols)
        r, c = r.ravel(), c.ravel()
        amp = np.broadcast_to(np.asarray(amplitude_v, dtype=np.float64), r.shape).copy()
        comp = np.broadcast_to(np.asarray(compliance_ua, dtype=np.float64), r.shape).copy()
        if not (np.isfinite(amp).all() and np.isfinite(comp).all() and (comp > 0).all()):
            raise ValueError("amplitudes must be finite and compliances finite and > 0")
        if (kind == RESET and (amp > 0).any()) or (kind != RESET and (amp < 0).any()):
            raise ValueError(f"a {kind.upper()} pulse needs amplitudes of sign "
                             f"{'<= 0' if kind == RESET else '>= 0'}")
        if not (math.isfinite(width_ns) and width_ns > 0):
            raise ValueError(f"width_ns must be finite and > 0, got {width_ns}")
        self._apply(r, c, kind, amp, float(width_ns), comp)

    def _apply(self, r: np.ndarray, c: np.ndarray, kind: str, amplitude_v: np.ndarray,
               width_ns: float, compliance_ua: np.ndarray) -> None:
        """Vectorised pulse application with per-cell amplitude and compliance."""
        if r.size == 0:
            return
        lin = r * self.shape[1] + c
        if np.unique(lin).size != lin.size:
            raise ValueError("a cell is listed more than once in one programming call")
        p = self.device.programming
        over = np.maximum(np.abs(amplitude_v) - p.threshold_v(kind), 0.0)
        eta = (1.0 - np.exp(-over / p.v_scale)) * (1.0 - math.exp(-width_ns / p.tau_ns))
        g_cc = p.g_per_ua * compliance_ua
        live = self.stuck[r, c] == STUCK_NONE
        formed = self.formed[r, c]
        g = self.g_us[r, c]
        new_g = g.copy()
        newly_formed = np.zeros(r.size, dtype=bool)
        if kind == FORM:
            virgin = live & ~formed & (eta > 0)
            if virgin.any():
                mean = eta[virgin] * g_cc[virgin]
                new_g[virgin] = _truncated_draw(self._rng_prog, mean, p.form_cv * mean,
                                                p.g_min_us, p.g_max_us, p.distribution)
                self.formed[r[virgin], c[virgin]] = True
                newly_formed = virgin
            step_mask = live & formed
            target = g_cc
        elif kind == SET:
            step_mask = live & formed
            target = g_cc
        else:
            step_mask = live & formed
            target = np.full(r.size, p.g_hrs_us)
        if step_mask.any():
            gs = g[step_mask]
            gap = target[step_mask] - gs
            if kind == SET or kind == FORM:
                gap = np.maximum(gap, 0.0)  # SET never lowers the conductance
            else:
                gap = np.minimum(gap, 0.0)  # RESET never raises it
            step = eta[step_mask] * gap
            noise = self._rng_prog.normal(0.0, 1.0, step.shape) * p.c2c_cv * np.abs(step)
            new_g[step_mask] = np.clip(gs + step + noise, p.g_min_us, p.g_max_us)
        changed = live & (formed | newly_formed)
        self.g_us[r[changed], c[changed]] = new_g[changed]
        self.t_prog_s[r[changed], c[changed]] = self.now_s
        self.pulse_count += int(r.size)

    # ------------------------------------------------------------------ reading
    def conductance(self, rows=None, cols=None) -> np.ndarray:
        """Noise-free conductance (uS) now, with drift and stuck-at faults; all cells when no
        indices are given."""
        if rows is None and cols is None:
            r, c = np.meshgrid(np.arange(self.shape[0]), np.arange(self.shape[1]),
                               indexing="ij")
        else:
            r, c = self._cells(rows, cols)
        g = self.g_us[r, c]
        d = self.device.drift
        if d.nu > 0 or d.nu_std > 0:
            age = np.maximum(self.now_s - self.t_prog_s[r, c], 0.0)
            factor = ((age + d.t0_s) / d.t0_s) ** (-self.nu[r, c])
            g = np.where(self.formed[r, c], g * factor, g)
        st = self.stuck[r, c]
        if st.any():
            g = np.where(st == STUCK_HRS, self.device.programming.g_hrs_us, g)
            g = np.where(st == STUCK_LRS, self.device.faults.g_stuck_lrs_us, g)
        return g

    def _read_noise(self, shape) -> np.ndarray:
        rp = self.device.read
        if rp.read_noise_rel == 0:
            return np.zeros(shape)
        eps = self._rng_read.normal(0.0, rp.read_noise_rel, shape)
        if rp.read_noise_clip is not None:
            lim = rp.read_noise_clip * rp.read_noise_rel
            np.clip(eps, -lim, lim, out=eps)
        return eps

    def read(self, rows, cols, v_read: float = 0.2) -> np.ndarray:
        """Read the listed cells: apparent conductance ``I / V`` in uS, with fresh read noise,
        drift and the I-V nonlinearity at ``v_read`` volts."""
        if not (math.isfinite(v_read) and 0 < v_read <= 2.0):
            raise ValueError(f"v_read must be in (0, 2] V, got {v_read}")
        g = self.conductance(rows, cols)
        g = g * (1.0 + self._read_noise(g.shape))
        return self.device.read.current_ua(g, v_read) / v_read

    def read_region(self, region: Region, v_read: float = 0.2) -> np.ndarray:
        self.check_region(region)
        r, c = region.cells()
        return self.read(r, c, v_read).reshape(region.shape)

    # ------------------------------------------------------------------ multiply mode
    def vmm(self, rows, cols, spikes: np.ndarray, dac: InputDAC | None = None,
            adc: ADC | None = None, ir_drop: IRDrop | None = None,
            return_currents: bool = False) -> np.ndarray:
        """Matrix-vector products in the array: binary ``spikes`` (batch, len(rows)) drive the
        listed rows at the DAC read voltage; each listed column's current (with fresh per-cell
        read noise for every input vector) is digitised. Returns ADC codes (batch, len(cols))
        int32, or the analog currents in uA with ``return_currents=True``."""
        dac = dac if dac is not None else InputDAC()
        adc = adc if adc is not None else ADC()
        ir_drop = ir_drop if ir_drop is not None else IRDrop()
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        self._cells(rows, np.zeros_like(rows))
        self._cells(np.zeros_like(cols), cols)
        x = np.asarray(spikes)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(rows):
            raise ValueError(f"spikes must have shape (batch, {len(rows)}), got {x.shape}")
        v = dac.voltages(x)                                    # (batch, R) volts
        g = self.conductance(rows[:, None], cols[None, :])     # (R, C) uS
        att = ir_drop.attenuation(rows, cols, *self.shape)     # (R, C)
        out = np.empty((x.shape[0], len(cols)))
        chunk = max(1, 4_000_000 // max(g.size, 1))
        rp = self.device.read
        for lo in range(0, x.shape[0], chunk):
            vb = v[lo:lo + chunk]
            noisy = g[None] * (1.0 + self._read_noise((len(vb),) + g.shape))
            cell_v = vb[:, :, None] * att[None]
            out[lo:lo + chunk] = rp.current_ua(noisy, cell_v).sum(axis=1)
        return out if return_currents else adc.codes(out)
