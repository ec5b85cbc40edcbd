"""`lsm calibrate run`: characterise a region of the macro and write its calibration file.

:func:`plan_calibration` says, before any pulse, what will be done (steps, pulses per cell,
reads, the time drift needs); :func:`run_calibration` does it, resumably (the work folder
``<out>.work/`` keeps every finished step and the journal every pulse), fits the measurements
(:mod:`calibration.fits`) and writes the file (:func:`lsm.crossbar.calfile.write_calibration`),
atomically.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration import fits, procedures
from calibration.writeverify import WriteVerifyConfig
from lsm.crossbar import Pulse
from lsm.crossbar.calfile import SECTIONS, Calibration, read_calibration, write_calibration
from lsm.validation import check_int, check_number

__all__ = ["MIN_CELLS", "MAX_FORMED_BEFORE", "CalibrationConfig", "plan_calibration",
           "format_plan", "run_calibration", "fit_calibration", "PROCEDURES", "work_folder_for"]

#: the smallest region a calibration accepts (the fits need tens of healthy cells)
MIN_CELLS = 64

#: a region with more cells than this reading formed before forming is not a virgin region
MAX_FORMED_BEFORE = 0.10

#: procedure names as the command line spells them -> calibration-file sections
PROCEDURES = {name.replace("_", "-"): name for name in SECTIONS}


@dataclass(frozen=True)
class CalibrationConfig:
    """What a calibration measures, and how.

    Parameters
    ----------
    region : (r0, r1, c0, c1)
        The cells (half-open rows and columns).
    procedures : tuple of str
        Sections of :data:`lsm.crossbar.calfile.SECTIONS` to measure (default all); run in that
        order whatever the order given.
    form_pulse : Pulse
        FORM pulse (default 3 V, 1 us, 100 uA).
    v_read : float
        Read voltage, V.
    n_reads : int
        Reads of the region for the map, the read noise and the forming fit (>= 4).
    adc_levels : int
        Input vectors of the ADC transfer (rows on: 1 ... all).
    drift_ages_s : tuple of float
        Ages after forming at which drift re-reads the region, s (>= 3 ages). On a chip these
        are real waits.
    drift_repeats : int
        Reads averaged at each age.
    stuck_reset, stuck_set : Pulse
        The pulses of the stuck-cell test.
    stuck_repeats : int
        Reads averaged before and after each of them.
    verify_shape : (rows, cols)
        Block (at the region's top-left corner) that write-verify programs.
    verify_range_us : (low, high)
        Targets drawn uniformly in this range, uS.
    verify : WriteVerifyConfig
    seed : int
        Seed of the ADC inputs and the write-verify targets.
    """

    region: tuple
    procedures: tuple = SECTIONS
    form_pulse: Pulse = field(default_factory=Pulse.form)
    v_read: float = 0.2
    n_reads: int = 32
    adc_levels: int = 64
    drift_ages_s: tuple = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
    drift_repeats: int = 2
    stuck_reset: Pulse = field(default_factory=lambda: Pulse.reset(-1.5, 100.0))
    stuck_set: Pulse = field(default_factory=lambda: Pulse.set(1.5, 100.0, 100.0))
    stuck_repeats: int = 4
    verify_shape: tuple = (8, 16)
    verify_range_us: tuple = (10.0, 40.0)
    verify: WriteVerifyConfig = field(default_factory=WriteVerifyConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        o = "CalibrationConfig"
        region = tuple(self.region)
        if len(region) != 4 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                   for v in region) \
                or not (0 <= region[0] < region[1] and 0 <= region[2] < region[3]):
            raise ValueError(f"{o}.region must be four integers r0 < r1, c0 < c1, got "
                             f"{self.region!r}")
        object.__setattr__(self, "region", tuple(int(v) for v in region))
        unknown = [p for p in self.procedures if p not in SECTIONS]
        if unknown or not self.procedures:
            raise ValueError(f"{o}.procedures: unknown {unknown}; choose from "
                             f"{[p.replace('_', '-') for p in SECTIONS]}")
        object.__setattr__(self, "procedures",
                           tuple(p for p in SECTIONS if p in self.procedures))
        check_number(o, "v_read", self.v_read, 0.0, 2.0, low_open=True)
        check_int(o, "n_reads", self.n_reads, 4, 100000)
        check_int(o, "adc_levels", self.adc_levels, 3, 4096)
        check_int(o, "drift_repeats", self.drift_repeats, 1, 10000)
        check_int(o, "stuck_repeats", self.stuck_repeats, 1, 10000)
        ages = tuple(float(a) for a in self.drift_ages_s)
        if len(set(ages)) < 3 or any(not (a >= 0 and np.isfinite(a)) for a in ages):
            raise ValueError(f"{o}.drift_ages_s needs 3 or more distinct finite ages >= 0, got "
                             f"{self.drift_ages_s!r}")
        object.__setattr__(self, "drift_ages_s", tuple(sorted(set(ages))))
        for name, kind in (("form_pulse", "form"), ("stuck_reset", "reset"),
                           ("stuck_set", "set")):
            p = getattr(self, name)
            if not isinstance(p, Pulse) or p.kind != kind:
                raise ValueError(f"{o}.{name} must be a {kind.upper()} Pulse, got {p!r}")
        vr, vc = self.verify_shape
        check_int(o, "verify_shape[0]", vr, 1, 512)
        check_int(o, "verify_shape[1]", vc, 1, 512)
        lo, hi = self.verify_range_us
        if not (0 < lo < hi < 1e4):
            raise ValueError(f"{o}.verify_range_us needs 0 < low < high, got "
                             f"{self.verify_range_us!r}")
        if not isinstance(self.verify, WriteVerifyConfig):
            raise TypeError(f"{o}.verify must be a WriteVerifyConfig")
        rows, cols = self.shape
        if rows * cols < MIN_CELLS:
            raise ValueError(f"{o}.region {list(self.region)} holds {rows * cols} cells; the fits "
                             f"need at least {MIN_CELLS}")

    @property
    def shape(self) -> tuple[int, int]:
        r0, r1, c0, c1 = self.region
        return r1 - r0, c1 - c0

    @property
    def verify_box(self) -> tuple[int, int, int, int]:
        r0, r1, c0, c1 = self.region
        return r0, min(r1, r0 + self.verify_shape[0]), c0, min(c1, c0 + self.verify_shape[1])

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["verify"] = self.verify.to_dict()
        return d


def work_folder_for(out: str | Path) -> Path:
    """The work folder of a calibration written to ``out``: ``<out>.work`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".work")


def plan_calibration(config: CalibrationConfig, limits=None) -> dict:
    """What :func:`run_calibration` will do, before it does anything: steps, pulses per cell,
    reads, the instrument time drift needs. ``limits`` (:class:`hw.Limits`) are checked here
    for every pulse and read of the plan, so nothing is refused half-way."""
    rows, cols = config.shape
    steps = [{"step": "read", "what": f"{config.n_reads} reads of {rows} x {cols} cells",
              "pulses_per_cell": 0}]
    if "forming" in config.procedures:
        p = config.form_pulse
        steps.insert(0, {"step": "form", "what": f"FORM {p.amplitude_v} V, {p.width_ns} ns, "
                         f"{p.compliance_ua} uA, one row per command (cells formed already "
                         "are skipped)", "pulses_per_cell": 1})
    if "adc" in config.procedures:
        steps.append({"step": "adc", "what": f"4 reads, then {config.adc_levels} + 4 input "
                      "vectors through VMM?", "pulses_per_cell": 0})
    if "drift" in config.procedures:
        steps.append({"step": "drift", "what": f"{config.drift_repeats} read(s) at each of "
                      f"{len(config.drift_ages_s)} ages up to {max(config.drift_ages_s):g} s "
                      "after forming (emulator: simulated clock; chip: real waits)",
                      "pulses_per_cell": 0})
    if "stuck" in config.procedures:
        r, s = config.stuck_reset, config.stuck_set
        steps.append({"step": "stuck", "what": f"RESET {r.amplitude_v} V / {r.width_ns} ns, "
                      f"then SET {s.amplitude_v} V / {s.width_ns} ns / {s.compliance_ua} uA on "
                      f"the region, {config.stuck_repeats} read(s) around each",
                      "pulses_per_cell": 2})
    if "write_verify" in config.procedures:
        b = config.verify_box
        v = config.verify
        steps.append({"step": "write-verify", "what": f"targets {config.verify_range_us[0]:g}-"
                      f"{config.verify_range_us[1]:g} uS into rows {b[0]}:{b[1]}, cols "
                      f"{b[2]}:{b[3]}, {v.step.name} steps, tolerance {v.tol_us} uS",
                      "pulses_per_cell": f"<= {v.max_iter} (block only)"})
    if limits is not None:
        limits.check_region(*config.region)
        limits.check_read(config.v_read)
        for name, pulse in (("forming", config.form_pulse), ("stuck", config.stuck_reset),
                            ("stuck", config.stuck_set)):
            if name in config.procedures:
                limits.check_pulse(pulse.amplitude_v, pulse.width_ns, pulse.compliance_ua)
        if "write_verify" in config.procedures:
            step = config.verify.step
            comp = getattr(step, "compliance_ua", getattr(step, "max_compliance_ua", 100.0))
            limits.check_pulse(step.v_max, config.verify.width_ns, comp)
    return {"region": list(config.region), "cells": rows * cols,
            "procedures": [p.replace("_", "-") for p in config.procedures], "steps": steps}


def format_plan(plan: dict) -> str:
    lines = [f"calibration plan: region {plan['region']} ({plan['cells']} cells), procedures "
             f"{', '.join(plan['procedures'])}"]
    for i, s in enumerate(plan["steps"], 1):
        lines.append(f"  {i}. {s['step']:<13} {s['what']}  [pulses per cell: "
                     f"{s['pulses_per_cell']}]")
    return "\n".join(lines)


def run_calibration(macro, config: CalibrationConfig, out: str | Path, job: str | None = None,
                    progress: bool = True) -> Calibration:
    """Measure, fit and write the calibration of ``config.region`` to ``out`` (HDF5).

    Parameters
    ----------
    macro : hw.Macro
        Open, with a journal (the pulses are journaled; a re-run resumes).
    config : CalibrationConfig
    out : path
        The calibration file; its work folder is ``<out>.work``.
    job : str, optional
        Journal job-id prefix (default from the instrument's serial and the region).
    progress : bool

    Returns
    -------
    Calibration
        As read back from ``out`` (``path`` and ``sha256`` set).
    """
    if macro.journal is None:
        raise ValueError("a calibration pulses the macro: it needs a journal to resume without "
                         "pulsing twice")
    plan = plan_calibration(config, macro.limits)
    job = job or "cal-{}-{}-{}-{}-{}".format(macro.idn["serial"], *config.region)
    work = procedures.WorkFolder(work_folder_for(out),
                                 {"config": config.to_dict(), "job": job,
                                  "instrument": macro.instrument})
    region = config.region
    procs = config.procedures
    t_form = None
    if "forming" in procs and not work.has("form") and macro.journal.job(f"{job}-form") is None:
        formed = float(macro.formed_mask(region).mean())  # a first run: the cells must be virgin
        if formed > MAX_FORMED_BEFORE:
            raise ValueError(f"{100 * formed:.0f} % of region {list(region)} reads formed "
                             "already: the forming fit needs virgin cells (and drift a known "
                             "forming time); calibrate a fresh region, or leave forming and "
                             "drift out of --procedures")
    if "drift" in procs and work.has("form"):
        elapsed = macro.clock_s() - float(work.load("form")["t_form_s"])
        late = [a for k, a in enumerate(config.drift_ages_s)
                if not work.has(f"drift-{k:02d}") and a < elapsed]
        if len(late) > 1:
            raise ValueError(f"the drift schedule has passed: {elapsed:.0f} s since forming, "
                             f"ages {late} s not read yet; start a fresh calibration (a new "
                             "--out on a fresh region)")
    if "forming" in procs:
        form = procedures.form_region(macro, region, config.form_pulse, work, f"{job}-form",
                                      progress)
        t_form = float(form["t_form_s"])
    reads = procedures.repeated_reads(macro, region, config.n_reads, config.v_read, work,
                                      progress=progress)
    if t_form is None:
        t_form = float(reads["t_s"][0])  # formed before this calibration: ages from now
    data = {"reads": reads}
    if "adc" in procs:
        data["adc"] = procedures.adc_transfer(macro, region, config.adc_levels, config.v_read,
                                              work, config.seed, progress)
    if "drift" in procs:
        data["drift"] = procedures.drift_reads(macro, region, config.drift_ages_s,
                                               config.drift_repeats, config.v_read, t_form,
                                               work, progress)
    if "stuck" in procs:
        data["stuck"] = procedures.stuck_test(macro, region, config.stuck_reset,
                                              config.stuck_set, config.stuck_repeats,
                                              config.v_read, work, f"{job}-stuck", progress)
    if "write_verify" in procs:
        b = config.verify_box
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 11]))
        targets = rng.uniform(*config.verify_range_us, (b[1] - b[0], b[3] - b[2]))
        data["verify"] = procedures.verify_block(macro, b, targets, config.verify, work,
                                                 f"{job}-verify", progress)
    cal = fit_calibration(config, data, t_form)
    cal.identity = {"instrument": macro.idn, "resource": macro.resource_name,
                    "protocol": macro.idn.get("protocol"), "geometry": list(macro.geometry),
                    "emulated": macro.emulated, "pulse_counter": macro.has_counter}
    from lsm.experiments.common import package_versions

    cal.settings = {"config": config.to_dict(), "plan": plan, "job": job,
                    "limits": {k: v for k, v in dataclasses.asdict(macro.limits).items()},
                    "limits_source": macro.limits.source, "work_folder": str(work.path),
                    "versions": package_versions()}
    write_calibration(out, cal)
    return read_calibration(out)  # what is on disk, with its path and hash


def fit_calibration(config: CalibrationConfig, data: dict, t_form_s: float) -> Calibration:
    """Fit the measurements of :func:`run_calibration` into a :class:`Calibration` (no
    instrument needed: a saved work folder can be fitted again)."""
    procs = config.procedures
    reads = np.asarray(data["reads"]["reads"], dtype=np.float64)
    sections, curves = {}, {}
    stuck_map = None
    noise_std = None
    if "stuck" in procs:
        st = data["stuck"]
        # the noise of one read, from the repeated reads (mean of `repeats` reads: / sqrt)
        std0 = reads.std(axis=0, ddof=1) / np.sqrt(config.stuck_repeats)
        stuck_map, sections["stuck"] = fits.classify_stuck(st["before"], st["reset"], st["set"],
                                                           std0)
    healthy = None if stuck_map is None else stuck_map == 0
    if "drift" in procs:
        d = data["drift"]
        ages = np.concatenate([[float(np.mean(data["reads"]["t_s"]) - t_form_s)], d["age_s"]])
        stack = np.concatenate([reads.mean(axis=0)[None], d["g_us"]])
        sections["drift"], curves["drift"] = fits.fit_drift(np.maximum(ages, 0.0), stack,
                                                            healthy)
    noise, ncurves, mean_us, noise_std = fits.fit_read_noise(reads, healthy)
    if "read_noise" in procs:
        sections["read_noise"], curves["read_noise"] = noise, ncurves
    if "forming" in procs:
        age = float(np.mean(data["reads"]["t_s"]) - t_form_s)
        sections["forming"], curves["forming"] = fits.fit_forming(
            mean_us, healthy, dataclasses.asdict(config.form_pulse), max(age, 0.0))
    if "adc" in procs:
        a = data["adc"]
        sections["adc"], curves["adc"] = fits.fit_adc(a["currents_ua"], a["codes"],
                                                      a["zero_codes"], int(a["bits"]),
                                                      float(a["v_read"]))
    if "write_verify" in procs:
        v = data["verify"]
        conv = np.asarray(v["converged"], bool)
        rounds = np.asarray(v["rounds_to_converge"])
        err = np.asarray(v["final_us"]) - np.asarray(v["targets_us"])
        sections["write_verify"] = {
            "converged_fraction": float(conv.mean()), "iterations": int(v["iterations"]),
            "tol_us": float(v["tol_us"]), "n_cells": int(conv.size),
            "mean_pulses": float(np.mean(v["pulses"])), "max_pulses": int(np.max(v["pulses"])),
            "median_rounds": float(np.median(rounds[conv])) if conv.any() else 0.0,
            "rms_error_us": float(np.sqrt(np.mean(err[conv] ** 2))) if conv.any() else 0.0,
            "given_up": int(np.sum(v["given_up"])), "box": list(config.verify_box),
            "settings": config.verify.to_dict()}
        curves["write_verify"] = {k: np.asarray(v[k]) for k in (
            "converged_by_round", "pulses", "rounds_to_converge", "targets_us", "final_us")}
    return Calibration(region=config.region, g_us=mean_us, read_std_us=noise_std,
                       stuck=stuck_map, sections=sections, curves=curves)
