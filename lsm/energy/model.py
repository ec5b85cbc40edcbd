"""Activity counts x cost profiles -> energy and latency per inference.

An inference is one sample through the LSM encoder and its digital head(s). Per sample ``s``
(counts of :class:`~lsm.energy.activity.Activity`; ``r_in[c]``, ``r_rec[j]``: activations of
input row ``c`` and recurrent row ``j``; ``G``: conductances in S; ``N = n_neurons``)::

    macro    cell reads   v_read^2 t_read (sum_c r_in[c] sum_k G_in[c, k]
                                           + sum_j r_rec[j] sum_k G_rec[j, k])
             row drivers  e_row (input_events + recurrent_rows)
             TIA + ADC    (e_tia + FOM 2^ENOB) * multiplies * conversions per multiply
                          (2N: each column of every pair; N when pairs are sensed
                          differentially), ENOB = adc_bits - adc_enob_loss; plus, when set,
                          p_column_static * t_multiply per conversion (readout kept biased)
             neurons      e_neuron_update * steps * N                   (digital, beside it)
             head         head_macs (e_mac + weight_bits e_sram)        (digital)
             latency      multiplies (t_read + ceil(conversions / n_adcs) bits t_bit)
                          + steps t_step
             once         programming: cells * pulses_per_cell * e_pulse (not per inference)
    digital  synapses     SOPs e_add, SOPs = sum_c r_in[c] nnz_in[c] + sum_j r_rec[j] nnz_rec[j]
                          (event-driven); dense: n_bins (n_inputs N + N^2) MACs at e_mac
             weight reads SOPs * weight_bits * e_sram
             neurons      e_neuron_update * steps * N        (dense: n_bins * N)
             head         as above
             latency      SOPs / (lanes clock) + steps t_step
    gpu      board        board_power * FLOPs / (peak * utilisation),
                          FLOPs = 2 n_bins (n_inputs N + N^2) + 4 n_bins N + 2 head_macs
             latency      n_bins * t_step at batch 1 (the energy is at batched throughput;
                          at batch 1 an inference would cost board_power * latency)

plus ``e_input_event * input_events`` (off-chip data movement) where a profile sets it. Not
counted: leakage and static power (except the GPU's board power), control logic and
sequencing, clock trees, host and data movement off the chip unless ``e_input_event`` is set.

A multiply drives the input and recurrent rows of one bin together when ``w_in_const ==
w_rec_const`` (one digital scale for both), else separately (two multiplies), as the simulated
crossbar in the loop does (:func:`lsm.kernels.lif_events_crossbar`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lsm.energy.activity import Activity
from lsm.energy.profiles import (
    DEFAULT_PROFILES,
    DigitalCosts,
    DigitalProfile,
    GPUProfile,
    MacroProfile,
    shipped_profile,
)

__all__ = ["Workload", "PlatformCost", "EnergyReport", "estimate", "energy_per_inference",
           "conductance_block", "calibration_conductances", "G_BASE_US", "MAX_HEAD_WIDTH"]

#: Widest head layer :meth:`Workload.from_lsm` takes.
MAX_HEAD_WIDTH = 1 << 20

#: Conductance (uS) of the lower cell of a differential pair when weights without a measured
#: block are placed on the array (``DifferentialMapping.targets``): the model's high-resistance
#: state, ``ProgrammingParams.g_hrs_us``.
G_BASE_US = 1.0


def conductance_block(lsm, g_base_us: float = G_BASE_US) -> tuple[np.ndarray, str]:
    """The cells an LSM's weights live in, uS ((n_inputs + N) x 2N), and where they come from:
    the weight source's own block (simulated crossbar, measured map, twin, chip), else the
    weights placed as differential pairs above ``g_base_us``."""
    from lsm.crossbar import DifferentialMapping

    c = lsm.config
    if getattr(lsm, "conductance_us", None) is not None:
        return lsm.conductance_us, f"the weight source's cells ({lsm.provenance.get('source')})"
    mapping = DifferentialMapping(c.n_inputs, c.n_neurons, max(512, c.n_inputs + c.n_neurons),
                                  max(512, 2 * c.n_neurons))
    g = mapping.targets(lsm.w_in, lsm.w_rec, c.w_in_const, c.w_rec_const, g_base_us)
    return g, f"weights placed as differential pairs above {g_base_us:g} uS"


def calibration_conductances(path, n_inputs: int, n_neurons: int,
                             offset: tuple = (0, 0)) -> np.ndarray:
    """The measured map of a calibration file (``lsm calibrate run``) as an LSM's block of
    differential pairs, uS ((n_inputs + n_neurons) x 2 n_neurons at ``offset`` of the
    calibrated region), for :meth:`Workload.from_lsm`.

    Raises
    ------
    ValueError
        The file is not a valid calibration, or the block does not fit its region (naming it).
    """
    from lsm.crossbar.calfile import read_calibration
    from lsm.crossbar.twin import map_block

    return map_block(read_calibration(path), n_inputs + n_neurons, 2 * n_neurons, offset)


@dataclass(frozen=True)
class Workload:
    """What the profiles price besides the activity: the reservoir's shape, its conductances
    and nonzeros per row, and the digital head.

    Attributes
    ----------
    n_inputs, n_neurons, n_bins : int
    g_row_in_s, g_row_rec_s : ndarray of float64, (n_inputs,) and (n_neurons,)
        Sum of the conductances of each row's 2N used cells, S.
    nnz_in, nnz_rec : ndarray of int64
        Nonzero weights per row (fan-out) of ``w_in`` and ``w_rec``.
    separate_multiplies : bool
        The two blocks are multiplied (and digitised) one after the other.
    head_macs : int
        MACs of the digital head(s) per inference (``ProjectionHead.macs_per_sample``).
    conductance_source : str
        Where the conductances came from.
    """

    n_inputs: int
    n_neurons: int
    n_bins: int
    g_row_in_s: np.ndarray
    g_row_rec_s: np.ndarray
    nnz_in: np.ndarray
    nnz_rec: np.ndarray
    separate_multiplies: bool = False
    head_macs: int = 0
    conductance_source: str = ""

    def __post_init__(self) -> None:
        for name, shape in (("g_row_in_s", (self.n_inputs,)), ("nnz_in", (self.n_inputs,)),
                            ("g_row_rec_s", (self.n_neurons,)), ("nnz_rec", (self.n_neurons,))):
            a = np.asarray(getattr(self, name))
            if a.shape != shape or not np.isfinite(a).all() or (a < 0).any():
                raise ValueError(f"Workload.{name} must be {shape} finite values >= 0")
        if self.head_macs < 0:
            raise ValueError(f"Workload.head_macs must be >= 0, got {self.head_macs}")

    @property
    def cells(self) -> int:
        """Cells programmed: both cells of every nonzero weight."""
        return int(2 * (self.nnz_in.sum() + self.nnz_rec.sum()))

    @property
    def dense_macs(self) -> int:
        """MACs of one dense inference: every weight, every bin."""
        return self.n_bins * (self.n_inputs + self.n_neurons) * self.n_neurons

    @classmethod
    def from_lsm(cls, lsm, conductance_us: np.ndarray | None = None,
                 head_dims: tuple = (64,), g_base_us: float = G_BASE_US) -> Workload:
        """The workload of an :class:`~lsm.reservoir.LSM`.

        Parameters
        ----------
        lsm : LSM
        conductance_us : ndarray, optional
            The cells ((n_inputs + N) x 2N, uS), e.g. a calibration file's map; default
            :func:`conductance_block`.
        head_dims : tuple of int
            Output widths of the digital head's linear layers after the N spike features
            (default the paper's 200 -> 64 projection); ``()`` for none.
        g_base_us : float
            See :func:`conductance_block`.
        """
        c = lsm.config
        if conductance_us is None:
            g, source = conductance_block(lsm, g_base_us)
        else:
            g, source = np.asarray(conductance_us, np.float64), "given conductances"
        rows, cols = c.n_inputs + c.n_neurons, 2 * c.n_neurons
        if g.shape != (rows, cols):
            raise ValueError(f"conductances must be the LSM's block of differential pairs, "
                             f"({rows}, {cols}) uS (n_inputs + n_neurons rows, 2 n_neurons "
                             f"columns), got {g.shape}")
        if not np.isfinite(g).all() or (g < 0).any():
            raise ValueError("conductances must be finite and >= 0 uS")
        g_row = g.sum(axis=1) * 1e-6
        macs, width = 0, c.n_neurons
        for d in head_dims:
            if not 1 <= int(d) <= MAX_HEAD_WIDTH:
                raise ValueError(f"head_dims must be widths in [1, {MAX_HEAD_WIDTH}], got "
                                 f"{head_dims}")
            macs += width * int(d)
            width = int(d)
        # one multiply per bin when the two blocks share a digital scale, decided as the
        # in-loop kernel decides it (float32 gains)
        loop = getattr(lsm, "_in_loop", None)
        gains = ((loop.gain_in_per_us, loop.gain_rec_per_us) if hasattr(loop, "gain_in_per_us")
                 else (c.w_in_const, c.w_rec_const))
        return cls(c.n_inputs, c.n_neurons, c.n_bins, g_row[:c.n_inputs], g_row[c.n_inputs:],
                   np.count_nonzero(lsm.w_in, axis=1).astype(np.int64),
                   np.count_nonzero(lsm.w_rec, axis=1).astype(np.int64),
                   separate_multiplies=bool(np.float32(gains[0]) != np.float32(gains[1])),
                   head_macs=macs, conductance_source=source)


@dataclass(frozen=True)
class PlatformCost:
    """One platform's cost of the inferences.

    Attributes
    ----------
    name, kind : str
        The profile's name and kind.
    components_j : dict of str -> ndarray (n_samples,)
        Energy per inference of each component, J.
    latency_s : ndarray (n_samples,)
        Time per inference, s.
    once_j : dict of str -> float
        One-time costs (programming the weights), J.
    counts : dict of str -> float
        Mean per inference of what was priced (multiplies, conversions, SOPs, FLOPs ...).
    """

    name: str
    kind: str
    components_j: dict
    latency_s: np.ndarray
    once_j: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    @property
    def total_j(self) -> np.ndarray:
        """Energy per inference, J (n_samples,)."""
        return sum(self.components_j.values())

    def __repr__(self) -> str:
        from lsm.energy.units import format_quantity

        energy = format_quantity(float(np.mean(self.total_j)), "J")
        latency = format_quantity(float(np.mean(self.latency_s)), "s")
        return (f"PlatformCost({self.name!r}, {self.kind}, {energy} per inference (mean of "
                f"{len(self.latency_s)}), latency {latency})")

    def mean_j(self) -> dict:
        return {k: float(np.mean(v)) for k, v in self.components_j.items()}

    def summary(self) -> dict:
        t = self.total_j
        return {"name": self.name, "kind": self.kind, "energy_j": float(np.mean(t)),
                "energy_j_p10_p90": [float(np.percentile(t, 10)), float(np.percentile(t, 90))],
                "components_j": self.mean_j(), "latency_s": float(np.mean(self.latency_s)),
                "once_j": dict(self.once_j), "counts": dict(self.counts)}


@dataclass(frozen=True)
class EnergyReport:
    """Energy and latency per inference on each platform, with ratios to the first macro."""

    platforms: list
    n_samples: int
    activity_mean: dict

    def __repr__(self) -> str:
        from lsm.energy.units import format_quantity

        ratios = self.ratios()
        parts = [f"{p.name} {format_quantity(float(np.mean(p.total_j)), 'J')} "
                 f"({ratios[p.name]:.3g}x)" for p in self.platforms]
        return (f"EnergyReport({self.n_samples} inferences, mean per inference, x = / "
                f"{self.reference.name}: {'; '.join(parts)})")

    def platform(self, name: str) -> PlatformCost:
        for p in self.platforms:
            if p.name == name:
                return p
        raise KeyError(f"no platform {name!r}; have {[p.name for p in self.platforms]}")

    @property
    def reference(self) -> PlatformCost:
        """The platform the ratios are taken against: the first macro, else the first."""
        return next((p for p in self.platforms if p.kind == "macro"), self.platforms[0])

    def ratios(self) -> dict:
        """Energy per inference of each platform / the reference's (how many times more);
        None where undefined (a reference that costs nothing, against a platform that costs
        something), 1.0 for 0 / 0."""
        ref = float(np.mean(self.reference.total_j))
        out = {}
        for p in self.platforms:
            e = float(np.mean(p.total_j))
            out[p.name] = e / ref if ref > 0 else (1.0 if e == 0 else None)
        return out

    def to_dict(self) -> dict:
        return {"n_samples": self.n_samples, "reference": self.reference.name,
                "ratios": self.ratios(), "activity_mean": self.activity_mean,
                "platforms": [p.summary() for p in self.platforms]}


# ---------------------------------------------------------------------- pricing
def _row_sums(activity: Activity, per_in: np.ndarray, per_rec: np.ndarray) -> np.ndarray:
    """``sum_c r_in[c] per_in[c] + sum_j r_rec[j] per_rec[j]`` per sample, float64."""
    return (activity.input_rows.astype(np.float64) @ np.asarray(per_in, np.float64)
            + activity.drive.astype(np.float64) @ np.asarray(per_rec, np.float64))


def _head_j(d: DigitalCosts, w: Workload) -> float:
    return w.head_macs * (d.e_mac_j + d.weight_bits * d.e_sram_j_per_bit)


def _macro(p: MacroProfile, a: Activity, w: Workload) -> PlatformCost:
    n = len(a)
    v, t = p.array.v_read_v, p.array.t_read_s
    multiplies = a.multiplies(w.separate_multiplies).astype(np.float64)
    per_multiply = w.n_neurons * p.readout.conversions_per_pair
    conversions = multiplies * per_multiply
    rows = (a["input_events"] + a["recurrent_rows"]).astype(np.float64)
    steps = a["steps"].astype(np.float64)
    comps = {
        "cell reads": v * v * t * _row_sums(a, w.g_row_in_s, w.g_row_rec_s),
        "row drivers": p.drivers.e_row_j * rows,
        "TIA": p.readout.e_tia_j * conversions,
        "ADC": p.readout.e_adc_j * conversions,
        "neurons": p.digital.e_neuron_update_j * steps * w.n_neurons,
        "head": np.full(n, _head_j(p.digital, w)),
    }
    t_multiply = t + math.ceil(per_multiply / p.readout.n_adcs) * p.readout.t_conversion_s
    if p.readout.p_column_static_w:
        comps["readout static"] = p.readout.p_column_static_w * t_multiply * conversions
    if p.digital.e_input_event_j:
        comps["input I/O"] = p.digital.e_input_event_j * a["input_events"].astype(np.float64)
    latency = multiplies * t_multiply + steps * p.digital.t_step_s
    once = {"programming": w.cells * p.programming.pulses_per_cell * p.programming.e_pulse_j}
    counts = {"multiplies": float(multiplies.mean()) if n else 0.0,
              "conversions_per_multiply": per_multiply,
              "conversions": float(conversions.mean()) if n else 0.0,
              "row_activations": float(rows.mean()) if n else 0.0,
              "t_multiply_s": t_multiply, "cells": w.cells}
    return PlatformCost(p.name, p.kind, comps, latency, once, counts)


def _digital(p: DigitalProfile, a: Activity, w: Workload) -> PlatformCost:
    d = p.digital
    n = len(a)
    if p.event_driven:
        ops = _row_sums(a, w.nnz_in, w.nnz_rec)
        steps = a["steps"].astype(np.float64)
        e_op = d.e_add_j
    else:
        ops = np.full(n, float(w.dense_macs))
        steps = np.full(n, float(w.n_bins))
        e_op = d.e_mac_j
    comps = {
        "synaptic ops": e_op * ops,
        "weight reads": d.weight_bits * d.e_sram_j_per_bit * ops,
        "neurons": d.e_neuron_update_j * steps * w.n_neurons,
        "head": np.full(n, _head_j(d, w)),
    }
    if d.e_input_event_j:
        comps["input I/O"] = d.e_input_event_j * a["input_events"].astype(np.float64)
    latency = ops / (d.lanes * d.clock_hz) + steps * d.t_step_s
    counts = {"synaptic_ops": float(ops.mean()) if n else 0.0}
    return PlatformCost(p.name, p.kind, comps, latency, {}, counts)


def _gpu(p: GPUProfile, a: Activity, w: Workload) -> PlatformCost:
    n = len(a)
    flops = 2.0 * w.dense_macs + 4.0 * w.n_bins * w.n_neurons + 2.0 * w.head_macs
    energy = p.board_power_w * flops / (p.peak_flop_per_s * p.utilisation)
    latency = w.n_bins * p.t_step_s
    return PlatformCost(p.name, p.kind, {"board": np.full(n, energy)}, np.full(n, latency), {},
                        {"flops": flops, "batch1_energy_j": p.board_power_w * latency})


_PRICERS = {"macro": _macro, "digital": _digital, "gpu": _gpu}


def estimate(activity: Activity, workload: Workload, profiles) -> EnergyReport:
    """Price ``activity`` on ``workload`` with each profile.

    Parameters
    ----------
    activity : Activity
        What the inferences did (``LSM.encode(..., return_activity=True)``).
    workload : Workload
        The reservoir's conductances, nonzeros and head (:meth:`Workload.from_lsm`).
    profiles : sequence of MacroProfile, DigitalProfile, GPUProfile
        The platforms, e.g. the shipped ``imc40``, ``digital-40nm`` and ``gpu-a100``
        (:func:`lsm.energy.shipped_profile`); names must differ.

    Returns
    -------
    EnergyReport
        Per platform and component, J per inference (mean, and per sample), latency, one-time
        costs; ratios to the first macro profile.
    """
    profiles = list(profiles)
    if not profiles:
        raise ValueError("estimate needs at least one profile")
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ValueError(f"profile names must differ, got {names}")
    if (activity.n_inputs, activity.n_neurons) != (workload.n_inputs, workload.n_neurons):
        raise ValueError(f"activity is for {activity.n_inputs} inputs x {activity.n_neurons} "
                         f"neurons, the workload {workload.n_inputs} x {workload.n_neurons}")
    if len(activity) == 0:
        raise ValueError("no inferences to price (the activity holds 0 samples)")
    out = []
    for p in profiles:
        if getattr(p, "kind", None) not in _PRICERS:
            raise TypeError(f"not an energy profile: {p!r}")
        cost = _PRICERS[p.kind](p, activity, workload)
        for name, values in [*cost.components_j.items(), ("latency", cost.latency_s),
                             *((k, np.asarray(v)) for k, v in cost.once_j.items())]:
            if not np.isfinite(values).all():
                raise ValueError(f"profile {p.name!r}: the {name} is not finite (a parameter "
                                 "too large or too small for float64); check its values")
        out.append(cost)
    return EnergyReport(out, len(activity), activity.mean())


def energy_per_inference(lsm, events, profiles=None, head_dims: tuple = (64,),
                         conductance_us: np.ndarray | None = None,
                         progress: bool = False) -> EnergyReport:
    """Encode ``events`` with activity counting and price them: the one call for sweeps.

    Parameters
    ----------
    lsm : LSM
    events : raster, sequence of (bins, channels), or EventBatch
        The inputs (:meth:`lsm.reservoir.LSM.to_events`).
    profiles : sequence of profiles, optional
        Default: the shipped :data:`~lsm.energy.profiles.DEFAULT_PROFILES` (``imc40``,
        ``digital-40nm``, ``gpu-a100``).
    head_dims, conductance_us
        See :meth:`Workload.from_lsm`.

    Examples
    --------
    >>> import dataclasses
    >>> from lsm import LSM, LSMConfig
    >>> from lsm.energy import shipped_profile
    >>> lsm = LSM(LSMConfig(n_inputs=16, n_neurons=20, n_bins=10, w_in_const=0.5))
    >>> raster = (np.random.default_rng(0).random((8, 10, 16)) < 0.1).astype(np.uint8)
    >>> macro = shipped_profile("imc40")
    >>> macro8 = dataclasses.replace(macro, name="imc40-8bit",
    ...                              readout=dataclasses.replace(macro.readout, adc_bits=8))
    >>> r = energy_per_inference(lsm, raster, [macro, macro8])
    >>> round(r.ratios()["imc40-8bit"], 3)  # energy per inference, 8 / 14 ADC bits
    0.235
    """
    _, activity = lsm.encode(events, features="counts", progress=progress,
                             return_activity=True)
    if profiles is None:
        profiles = [shipped_profile(n) for n in DEFAULT_PROFILES]
    return estimate(activity, Workload.from_lsm(lsm, conductance_us, head_dims), profiles)
