"""The digital twin of a calibrated macro: crossbar parameters and conductance blocks built from a
calibration file (:mod:`lsm.crossbar.calfile`).

- :func:`twin_device` -> :class:`~lsm.crossbar.DeviceParams` (forming law, read noise, drift,
  stuck cells) and :func:`twin_adc` -> :class:`~lsm.crossbar.ADC`: a
  :class:`~lsm.crossbar.CrossbarArray` (or the emulator) that behaves like the chip measured.
- :func:`forming_distribution`: the fitted family the calibration chose (any of
  :mod:`lsm.crossbar.distributions`, the two-component mixture included).
- :func:`draw_block`: the conductances a freshly formed block of "a chip like this one" reads,
  drawn from the fitted statistics; :func:`map_block`: the measured map itself, optionally with
  fresh read noise.

What the calibration did not measure keeps the model's default and is listed by
:func:`twin_report` (never silently presented as measured).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lsm.crossbar.calfile import Calibration
from lsm.crossbar.device import DeviceParams, DriftParams, FaultParams, Pulse, ReadParams
from lsm.crossbar.distributions import family_from_dict
from lsm.crossbar.peripherals import ADC

__all__ = ["twin_device", "twin_adc", "forming_distribution", "draw_block", "map_block",
           "twin_report", "read_noise_draw"]

#: a clip at this many sigmas or more is no clip at all (for the twin's read noise)
_NO_CLIP_SIGMA = 6.0


def forming_distribution(cal: Calibration):
    """The family the calibration chose for the formed conductances (by AIC), as read."""
    sec = cal.section("forming")
    chosen = sec["chosen"]
    families = sec["families"]
    if chosen not in families:
        raise ValueError(f"{cal.name}: forming.chosen {chosen!r} is not among the fitted "
                         f"families {sorted(families)}")
    return family_from_dict(families[chosen], f"{cal.name}: forming.families.{chosen}")


def _clip(sec: dict) -> float | None:
    c = float(sec["clip_sigma"])
    return None if c <= 0 or c >= _NO_CLIP_SIGMA else c


def twin_device(cal: Calibration, base: DeviceParams | None = None) -> DeviceParams:
    """Crossbar cell parameters of the calibrated chip.

    Forming: ``form_cv`` and the mean for the calibration's FORM pulse (``g_per_ua`` is set so
    that the model's forming mean at that pulse is the fitted one, corrected back to the time of
    forming with the fitted drift); a lognormal fit gives the lognormal law, any other family a
    Gaussian of the same mean and spread. Read noise, drift and stuck rates as fitted. Fields the
    calibration did not measure keep ``base`` (default: the model's defaults).
    """
    base = base if base is not None else DeviceParams()
    prog, read, drift, faults = base.programming, base.read, base.drift, base.faults
    if cal.has("forming"):
        sec = cal.section("forming")
        fam = forming_distribution(cal)
        mean, std = fam.mean_std()
        mean *= _drift_back_factor(cal, float(sec.get("read_age_s", 0.0)))
        pulse = Pulse(**{k: sec["pulse"][k] for k in ("kind", "amplitude_v", "width_ns",
                                                      "compliance_ua")})
        eta = prog.efficiency(pulse)
        if eta <= 0:
            raise ValueError(f"{cal.name}: the calibration's FORM pulse {sec['pulse']} has no "
                             "effect in the model (below its threshold)")
        prog = dataclasses.replace(
            prog, form_cv=float(std / mean), g_per_ua=float(mean / (eta * pulse.compliance_ua)),
            distribution="lognormal" if fam.name == "lognormal" else "gaussian")
    if cal.has("read_noise"):
        sec = cal.section("read_noise")
        read = ReadParams(read_noise_rel=float(sec["rel"]), read_noise_clip=_clip(sec),
                          iv_v0=read.iv_v0)
    if cal.has("drift"):
        sec = cal.section("drift")
        drift = DriftParams(nu=float(sec["nu"]), nu_std=float(sec["nu_std"]),
                            t0_s=float(sec["t0_s"]))
    if cal.has("stuck"):
        sec = cal.section("stuck")
        n = max(int(sec["n_cells"]), 1)
        high = float(sec.get("g_high_us", faults.g_stuck_lrs_us))
        faults = FaultParams(p_stuck_hrs=int(sec["n_low"]) / n,
                             p_stuck_lrs=int(sec["n_high"]) / n,
                             g_stuck_lrs_us=high if high > 0 else faults.g_stuck_lrs_us)
        low = float(sec.get("g_low_us", prog.g_hrs_us))
        if prog.g_min_us <= low <= prog.g_max_us:
            prog = dataclasses.replace(prog, g_hrs_us=low)
    return DeviceParams(prog, read, drift, faults)


def twin_adc(cal: Calibration, base: ADC | None = None) -> ADC:
    """The readout chain as measured: ``code = round(gain * i_ua + offset)`` clipped to
    ``[0, 2**bits - 1]``, written as an :class:`ADC` (the nominal LSB kept, the TIA gain and
    the range's origin from the fitted gain and offset). ``base`` (default the macro's ADC)
    when the calibration has no ADC section."""
    base = base if base is not None else ADC()
    if not cal.has("adc"):
        return base
    sec = cal.section("adc")
    bits = int(sec["bits"])
    gain = float(sec["gain_codes_per_ua"])
    if gain <= 0:
        raise ValueError(f"{cal.name}: adc.gain_codes_per_ua must be > 0, got {gain}")
    lsb_v = base.lsb_v
    v_min = -float(sec["offset_codes"]) * lsb_v
    return ADC(bits=bits, r_tia_kohm=1000.0 * gain * lsb_v, v_min=v_min,
               v_max=v_min + ((1 << bits) - 1) * lsb_v)


def _drift_back_factor(cal: Calibration, age_s: float) -> float:
    """Multiply a conductance read at ``age_s`` after programming by this to get it at the
    time of programming (1 without a drift calibration)."""
    if not cal.has("drift") or age_s <= 0:
        return 1.0
    d = cal.section("drift")
    return ((age_s + float(d["t0_s"])) / float(d["t0_s"])) ** float(d["nu"])


def read_noise_draw(cal: Calibration, rng: np.random.Generator, shape) -> np.ndarray:
    """Relative read-noise factors ``1 + eps`` as calibrated (ones without a read-noise
    calibration)."""
    if not cal.has("read_noise"):
        return np.ones(shape)
    sec = cal.section("read_noise")
    eps = rng.normal(0.0, float(sec["rel"]), shape)
    clip = _clip(sec)
    if clip is not None:
        lim = clip * float(sec["rel"])
        np.clip(eps, -lim, lim, out=eps)
    return 1.0 + eps


def map_block(cal: Calibration, rows: int, cols: int, offset=(0, 0),
              read_noise: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
    """The measured map's ``rows x cols`` block at ``offset`` (uS), optionally times fresh
    calibrated read noise."""
    r0, c0 = int(offset[0]), int(offset[1])
    R, C = cal.shape
    if r0 < 0 or c0 < 0 or r0 + rows > R or c0 + cols > C:
        raise ValueError(f"{cal.name}: a {rows} x {cols} block at offset ({r0}, {c0}) does not "
                         f"fit in the calibrated region of {R} x {C} cells")
    g = cal.g_us[r0:r0 + rows, c0:c0 + cols].copy()
    if read_noise:
        g *= read_noise_draw(cal, rng if rng is not None else np.random.default_rng(), g.shape)
    return g


def draw_block(cal: Calibration, rows: int, cols: int, rng: np.random.Generator,
               read_time_s: float | None = None) -> np.ndarray:
    """A freshly formed ``rows x cols`` block of a chip like the calibrated one, read once (uS).

    Healthy cells are drawn from the chosen forming family (as read ``read_age_s`` after
    forming), clipped to the model's conductance range; stuck cells (at the calibrated rates)
    read the calibrated stuck levels; every cell drifts from the calibration's read age to
    ``read_time_s`` (default: the same age) with a per-cell exponent ``N(nu, nu_std)``; one
    read adds the calibrated read noise.
    """
    fam = forming_distribution(cal)
    sec = cal.section("forming")
    prog = DeviceParams().programming
    g = np.clip(fam.sample(rng, (rows, cols)), prog.g_min_us, prog.g_max_us)
    age = float(sec.get("read_age_s", 0.0))
    if read_time_s is not None and cal.has("drift") and read_time_s != age:
        if not (math.isfinite(read_time_s) and read_time_s >= 0):
            raise ValueError(f"read_time_s must be finite and >= 0, got {read_time_s}")
        d = cal.section("drift")
        t0 = float(d["t0_s"])
        nu = np.maximum(rng.normal(float(d["nu"]), float(d["nu_std"]), g.shape), 0.0)
        g = g * ((read_time_s + t0) / (age + t0)) ** (-nu)
    if cal.has("stuck"):
        st = cal.section("stuck")
        n = max(int(st["n_cells"]), 1)
        u = rng.random(g.shape)
        p_low, p_high = int(st["n_low"]) / n, int(st["n_high"]) / n
        g = np.where(u < p_low, float(st.get("g_low_us", prog.g_hrs_us)), g)
        g = np.where((u >= p_low) & (u < p_low + p_high),
                     float(st.get("g_high_us", prog.g_max_us)), g)
    return g * read_noise_draw(cal, rng, g.shape)


def twin_report(cal: Calibration) -> dict:
    """What the twin takes from the calibration, and what it leaves at the model's default."""
    from lsm.crossbar.calfile import SECTIONS

    measured = [s for s in SECTIONS if cal.has(s)]
    return {"calibration": cal.name, "sha256": cal.sha256, "measured": measured,
            "model_defaults": [s for s in SECTIONS if s not in measured and s != "write_verify"],
            "instrument": cal.identity.get("instrument"), "region": list(cal.region)}
