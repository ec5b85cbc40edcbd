"""One-transistor-one-resistor (1T1R) RRAM cell model, in physical units.

Conductances are in microsiemens (uS), voltages in volts, pulse widths in nanoseconds, compliance
currents in microamperes, times in seconds. Every field has a documented default; the defaults
model the TaN/TaOx/Ta/TiN cells of the paper's 40 nm macro: a forming pulse leaves a cell at a
random conductance with a spread of about 6.8 uS (the paper reports 6.6-6.9 uS).

Programming (per cell, per pulse):

* pulse efficiency, increasing with amplitude above a threshold and with width::

      eta(V, w) = (1 - exp(-max(|V| - v_threshold, 0) / v_scale)) * (1 - exp(-w / tau_ns))

* FORM (on a virgin cell) is abrupt and stochastic: the filament is limited by the compliance
  current set by the word-line voltage, ``g_cc = g_per_ua * I_cc``, and the cell lands at
  ``G ~ D(mean = eta * g_cc, std = form_cv * mean)`` truncated to ``[g_min, g_max]``, with D
  Gaussian or lognormal (same mean and std).
* SET (positive amplitude, formed cell) moves the conductance towards the compliance limit, and
  RESET (negative amplitude) towards the high-resistance state ``g_hrs``::

      SET:   G' = G + eta * (g_cc - G) + N(0, (c2c_cv * eta * |g_cc - G|)^2)
      RESET: G' = G - eta * (G - g_hrs) + N(0, (c2c_cv * eta * |G - g_hrs|)^2)

  clipped to ``[g_min, g_max]``: small pulses make small, proportionally noisy steps, which is what
  write-verify uses. A SET or RESET on a virgin cell does nothing; a FORM on a formed cell acts as a
  SET.

Reading: ``G_read = G_drift * (1 + eps)``, ``eps ~ N(0, read_noise_rel^2)`` clipped at
``read_noise_clip`` sigmas, fresh on every read. Drift (relaxation) after programming at time
``t_p``: ``G_drift(t) = G * ((t - t_p + t0) / t0) ** (-nu)`` with a per-cell exponent
``nu ~ N(drift_nu, drift_nu_std^2)`` (>= 0), ``t0 = drift_t0_s``. Optional I-V nonlinearity:
``I = G * v0 * sinh(V / v0)`` (``iv_v0 = None`` is the linear ``I = G * V``). Stuck-at faults:
a fraction of cells, drawn once per array, is stuck at ``g_hrs`` or ``g_stuck_lrs`` and ignores
every pulse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lsm.validation import check_number

__all__ = ["Pulse", "FORM", "SET", "RESET", "DeviceParams", "ProgrammingParams", "ReadParams",
           "DriftParams", "FaultParams", "PULSE_KINDS"]

FORM = "form"
SET = "set"
RESET = "reset"
PULSE_KINDS = (FORM, SET, RESET)


@dataclass(frozen=True)
class Pulse:
    """A programming pulse.

    Parameters
    ----------
    kind : {"form", "set", "reset"}
    amplitude_v : float
        Pulse amplitude on the bit line, volts; positive for FORM/SET, negative for RESET.
    width_ns : float
        Pulse width, ns (> 0).
    compliance_ua : float
        Compliance current set through the word-line (gate) voltage, uA (> 0); limits the
        filament that FORM and SET can grow.
    """

    kind: str
    amplitude_v: float
    width_ns: float
    compliance_ua: float = 100.0

    def __post_init__(self) -> None:
        if self.kind not in PULSE_KINDS:
            raise ValueError(f"Pulse.kind must be one of {PULSE_KINDS}, got {self.kind!r}")
        check_number("Pulse", "amplitude_v", self.amplitude_v, -10.0, 10.0)
        check_number("Pulse", "width_ns", self.width_ns, 0.0, 1e9, low_open=True)
        check_number("Pulse", "compliance_ua", self.compliance_ua, 0.0, 1e4, low_open=True)
        if self.kind == RESET and self.amplitude_v > 0:
            raise ValueError(f"a RESET pulse needs amplitude_v <= 0, got {self.amplitude_v}")
        if self.kind in (FORM, SET) and self.amplitude_v < 0:
            raise ValueError(f"a {self.kind.upper()} pulse needs amplitude_v >= 0, "
                             f"got {self.amplitude_v}")

    @classmethod
    def form(cls, amplitude_v: float = 3.0, width_ns: float = 1000.0,
             compliance_ua: float = 100.0) -> Pulse:
        """The default forming pulse: 3.0 V, 1 us, 100 uA compliance."""
        return cls(FORM, amplitude_v, width_ns, compliance_ua)

    @classmethod
    def set(cls, amplitude_v: float = 1.5, width_ns: float = 100.0,
            compliance_ua: float = 100.0) -> Pulse:
        return cls(SET, amplitude_v, width_ns, compliance_ua)

    @classmethod
    def reset(cls, amplitude_v: float = -1.5, width_ns: float = 100.0) -> Pulse:
        return cls(RESET, amplitude_v, width_ns, 100.0)


@dataclass(frozen=True)
class ProgrammingParams:
    """How pulses change a cell's conductance (see the module docstring for the equations).

    Parameters
    ----------
    g_min_us, g_max_us : float
        Physical conductance range of a formed cell, uS (default 0.5 and 100).
    g_hrs_us : float
        High-resistance-state conductance that RESET approaches, uS (default 1.0).
    g_virgin_us : float
        Conductance of an unformed cell, uS (default 0.01).
    g_per_ua : float
        Filament conductance per uA of compliance current, uS/uA (default 0.3: 100 uA -> 30 uS).
    form_cv : float
        Relative spread (std / mean) of the conductance after FORM (default 0.25, which gives
        6.8 uS at the default forming pulse).
    distribution : {"gaussian", "lognormal"}
        Shape of the post-FORM distribution (same mean and std either way).
    c2c_cv : float
        Cycle-to-cycle noise of SET/RESET steps, relative to the step (default 0.1).
    v_form_threshold, v_set_threshold, v_reset_threshold : float
        Amplitude below which a pulse of that kind has no effect, V (defaults 2.0, 0.6, 0.6).
    v_scale : float
        Voltage scale of the pulse efficiency above threshold, V (default 0.4).
    tau_ns : float
        Width scale of the pulse efficiency, ns (default 200).
    """

    g_min_us: float = 0.5
    g_max_us: float = 100.0
    g_hrs_us: float = 1.0
    g_virgin_us: float = 0.01
    g_per_ua: float = 0.3
    form_cv: float = 0.25
    distribution: str = "gaussian"
    c2c_cv: float = 0.1
    v_form_threshold: float = 2.0
    v_set_threshold: float = 0.6
    v_reset_threshold: float = 0.6
    v_scale: float = 0.4
    tau_ns: float = 200.0

    def __post_init__(self) -> None:
        o = "ProgrammingParams"
        check_number(o, "g_min_us", self.g_min_us, 0.0, low_open=True)
        check_number(o, "g_max_us", self.g_max_us, 0.0, low_open=True)
        if self.g_max_us <= self.g_min_us:
            raise ValueError(f"{o}.g_max_us ({self.g_max_us}) must exceed g_min_us "
                             f"({self.g_min_us})")
        check_number(o, "g_hrs_us", self.g_hrs_us, self.g_min_us, self.g_max_us)
        check_number(o, "g_virgin_us", self.g_virgin_us, 0.0)
        check_number(o, "g_per_ua", self.g_per_ua, 0.0, low_open=True)
        check_number(o, "form_cv", self.form_cv, 0.0, 5.0)
        check_number(o, "c2c_cv", self.c2c_cv, 0.0, 5.0)
        for name in ("v_form_threshold", "v_set_threshold", "v_reset_threshold"):
            check_number(o, name, getattr(self, name), 0.0, 10.0)
        check_number(o, "v_scale", self.v_scale, 0.0, 10.0, low_open=True)
        check_number(o, "tau_ns", self.tau_ns, 0.0, low_open=True)
        if self.distribution not in ("gaussian", "lognormal"):
            raise ValueError(f"{o}.distribution must be 'gaussian' or 'lognormal', got "
                             f"{self.distribution!r}")

    def threshold_v(self, kind: str) -> float:
        return {FORM: self.v_form_threshold, SET: self.v_set_threshold,
                RESET: self.v_reset_threshold}[kind]

    def efficiency(self, pulse: Pulse) -> float:
        """``eta`` in [0, 1) of a pulse."""
        over = max(abs(pulse.amplitude_v) - self.threshold_v(pulse.kind), 0.0)
        return (1.0 - math.exp(-over / self.v_scale)) * (1.0 - math.exp(-pulse.width_ns
                                                                          / self.tau_ns))

    def amplitude_for(self, kind: str, eta: float, width_ns: float) -> float | None:
        """The amplitude (V, signed) that gives efficiency ``eta`` at ``width_ns``, or None when
        no amplitude can (``eta`` at or above the width's ceiling)."""
        ceiling = 1.0 - math.exp(-width_ns / self.tau_ns)
        if not 0.0 < eta < ceiling:
            return None
        v = self.threshold_v(kind) - self.v_scale * math.log(1.0 - eta / ceiling)
        return -v if kind == RESET else v

    def form_stats(self, pulse: Pulse) -> tuple[float, float]:
        """(mean, std) in uS of the untruncated post-FORM distribution for ``pulse``."""
        mean = self.efficiency(pulse) * self.g_per_ua * pulse.compliance_ua
        return mean, self.form_cv * mean


@dataclass(frozen=True)
class ReadParams:
    """Read non-idealities.

    Parameters
    ----------
    read_noise_rel : float
        Relative std of the cycle-to-cycle read noise (default 0.0015 = 0.15 %, the group's
        model).
    read_noise_clip : float or None
        Clip the noise at this many sigmas (default 2.0); None: no clipping.
    iv_v0 : float or None
        I-V nonlinearity voltage, V: ``I = G * v0 * sinh(V / v0)``; None (default): linear.
    """

    read_noise_rel: float = 0.0015
    read_noise_clip: float | None = 2.0
    iv_v0: float | None = None

    def __post_init__(self) -> None:
        check_number("ReadParams", "read_noise_rel", self.read_noise_rel, 0.0, 1.0)
        if self.read_noise_clip is not None:
            check_number("ReadParams", "read_noise_clip", self.read_noise_clip, 0.0, low_open=True)
        if self.iv_v0 is not None:
            check_number("ReadParams", "iv_v0", self.iv_v0, 0.0, low_open=True)

    def current_ua(self, g_us, v):
        """Cell current (uA) at read voltage ``v`` (V) for conductance ``g_us`` (uS)."""
        import numpy as np

        if self.iv_v0 is None:
            return g_us * v
        return g_us * self.iv_v0 * np.sinh(np.asarray(v) / self.iv_v0)


@dataclass(frozen=True)
class DriftParams:
    """Conductance relaxation after programming (power law in time).

    Parameters
    ----------
    nu : float
        Mean drift exponent (default 0.01: -8.8 % from 1 s to 1e4 s).
    nu_std : float
        Cell-to-cell spread of the exponent (default 0.002).
    t0_s : float
        Reference time of the power law, s (default 1.0).
    """

    nu: float = 0.01
    nu_std: float = 0.002
    t0_s: float = 1.0

    def __post_init__(self) -> None:
        check_number("DriftParams", "nu", self.nu, 0.0, 1.0)
        check_number("DriftParams", "nu_std", self.nu_std, 0.0, 1.0)
        check_number("DriftParams", "t0_s", self.t0_s, 0.0, low_open=True)


@dataclass(frozen=True)
class FaultParams:
    """Stuck-at faults, drawn once per array.

    Parameters
    ----------
    p_stuck_hrs, p_stuck_lrs : float
        Fraction of cells stuck at ``g_hrs_us`` / ``g_stuck_lrs_us`` (default 0 and 0).
    g_stuck_lrs_us : float
        Conductance of a stuck-at-LRS cell, uS (default 100).
    """

    p_stuck_hrs: float = 0.0
    p_stuck_lrs: float = 0.0
    g_stuck_lrs_us: float = 100.0

    def __post_init__(self) -> None:
        check_number("FaultParams", "p_stuck_hrs", self.p_stuck_hrs, 0.0, 1.0)
        check_number("FaultParams", "p_stuck_lrs", self.p_stuck_lrs, 0.0, 1.0)
        if self.p_stuck_hrs + self.p_stuck_lrs > 1.0:
            raise ValueError("FaultParams: p_stuck_hrs + p_stuck_lrs must be <= 1")
        check_number("FaultParams", "g_stuck_lrs_us", self.g_stuck_lrs_us, 0.0, low_open=True)


@dataclass(frozen=True)
class DeviceParams:
    """Everything about one RRAM cell type, as nested groups of physical parameters."""

    programming: ProgrammingParams = field(default_factory=ProgrammingParams)
    read: ReadParams = field(default_factory=ReadParams)
    drift: DriftParams = field(default_factory=DriftParams)
    faults: FaultParams = field(default_factory=FaultParams)

    @classmethod
    def ideal(cls, **programming: Any) -> DeviceParams:
        """No read noise, no drift, no faults, linear I-V (programming is still stochastic)."""
        return cls(ProgrammingParams(**programming),
                   ReadParams(read_noise_rel=0.0, read_noise_clip=None, iv_v0=None),
                   DriftParams(nu=0.0, nu_std=0.0), FaultParams())

    def to_dict(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "DeviceParams") -> DeviceParams:
        """The inverse of :meth:`to_dict`: tables ``programming``, ``read``, ``drift`` and
        ``faults`` (each optional, missing fields keep their defaults). Unknown tables or
        fields are refused, naming them and ``where`` (a file name, say)."""
        groups = {"programming": ProgrammingParams, "read": ReadParams, "drift": DriftParams,
                  "faults": FaultParams}
        if not isinstance(data, dict):
            raise ValueError(f"{where}: device parameters must be a table, got "
                             f"{type(data).__name__}")
        unknown = sorted(set(data) - set(groups))
        if unknown:
            raise ValueError(f"{where}: unknown device table(s) {unknown}; known: "
                             f"{sorted(groups)}")
        parts = {}
        for name, typ in groups.items():
            table = data.get(name, {})
            if not isinstance(table, dict):
                raise ValueError(f"{where}: [{name}] must be a table, got {table!r}")
            bad = sorted(set(table) - set(typ.__dataclass_fields__))
            if bad:
                raise ValueError(f"{where}: unknown field(s) {bad} in [{name}]; known: "
                                 f"{sorted(typ.__dataclass_fields__)}")
            try:
                parts[name] = typ(**table)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}: [{name}]: {exc}") from None
        return cls(**parts)
