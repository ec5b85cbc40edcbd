"""Write-verify: program cells to target conductances by read-verify-pulse rounds. One
algorithm, one result type, for the simulated array and for the chip.

Each round reads every cell still to do; a cell within ``tol_us`` of its target is done (and
left alone from then on). Any other cell gets a SET (below its target) or a RESET (above). The
amplitude comes from a *step rule*:

- :class:`IsppStep` (incremental step pulse programming, model-free, the chip's default): the
  amplitude starts at ``v_start`` and grows by ``v_step`` every round the cell stays on the same
  side of its target, back to ``v_start`` when it crosses over; a cell whose next amplitude would
  exceed ``v_max`` is given up (reported, never pulsed harder). The SET compliance is fixed.
- :class:`ModelStep` (needs a device model, e.g. the twin of a calibration): the amplitude that
  covers ``aim`` of the gap by inverting the model's pulse efficiency, capped at ``v_max``; the
  SET compliance puts the compliance-limited conductance at 1.25x the target.

The array being programmed is a :class:`VerifyTarget`: :class:`ArrayTarget` (a
:class:`lsm.crossbar.CrossbarArray`, vectorised) or :class:`MacroTarget` (a :class:`hw.Macro`, one
journaled, verified pulse per cell; with a journal and a job id it resumes after a kill: every
pulse of an earlier run is read back from the journal, one whose outcome was in doubt is
resolved on the instrument first, and the rounds continue from the cells' fresh reads, so no
pulse is ever sent twice).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from lsm.crossbar import CrossbarArray, ProgrammingParams, Pulse, Region
from lsm.validation import check_int, check_number

__all__ = ["WriteVerifyConfig", "IsppStep", "ModelStep", "VerifyResult", "VerifyTarget",
           "ArrayTarget", "MacroTarget", "write_verify", "verify_random_targets",
           "VerifyIncomplete"]

SET, RESET = "set", "reset"


@dataclass(frozen=True)
class IsppStep:
    """Incremental step pulse programming (model-free).

    Parameters
    ----------
    v_start : float
        First amplitude on a side, V (magnitude; RESET pulses are negative).
    v_step : float
        Amplitude added each further round on the same side, V.
    v_max : float
        Largest amplitude, V; a cell that would need more is given up.
    compliance_ua : float
        SET compliance current, uA.
    """

    v_start: float = 0.62
    v_step: float = 0.02
    v_max: float = 3.0
    compliance_ua: float = 200.0
    name = "ispp"

    def __post_init__(self) -> None:
        check_number("IsppStep", "v_start", self.v_start, 0.0, 10.0, low_open=True)
        check_number("IsppStep", "v_step", self.v_step, 0.0, 10.0)
        check_number("IsppStep", "v_max", self.v_max, self.v_start, 10.0)
        check_number("IsppStep", "compliance_ua", self.compliance_ua, 0.0, 1e4, low_open=True)

    def amplitudes(self, side, same_side, last_amp_v, g_us, target_us, width_ns):
        """(amplitude magnitude V, SET compliance uA, give up) per cell."""
        amp = np.where(same_side, last_amp_v + self.v_step, self.v_start)
        return amp, np.full(amp.shape, self.compliance_ua), amp > self.v_max + 1e-12


@dataclass(frozen=True)
class ModelStep:
    """Amplitudes from a device model: cover ``aim`` of the gap in one pulse.

    Parameters
    ----------
    programming : ProgrammingParams
        The model (thresholds, voltage and width scales, ``g_per_ua``, ``g_hrs_us``); a
        calibrated twin's (:func:`lsm.crossbar.twin.twin_device`) for a chip.
    aim : float
        Fraction of the gap a pulse is meant to cover (< 1 to avoid overshoot).
    v_max : float
        Amplitude cap, V.
    max_compliance_ua : float
        SET compliance cap, uA.
    """

    programming: ProgrammingParams = field(default_factory=ProgrammingParams)
    aim: float = 0.8
    v_max: float = 3.0
    max_compliance_ua: float = 300.0
    name = "model"

    def __post_init__(self) -> None:
        if not isinstance(self.programming, ProgrammingParams):
            raise TypeError("ModelStep.programming must be a ProgrammingParams")
        check_number("ModelStep", "aim", self.aim, 0.0, 1.0, low_open=True)
        check_number("ModelStep", "v_max", self.v_max, 0.0, 10.0, low_open=True)
        check_number("ModelStep", "max_compliance_ua", self.max_compliance_ua, 0.0, 1e4,
                     low_open=True)

    def amplitudes(self, side, same_side, last_amp_v, g_us, target_us, width_ns):
        p = self.programming
        ceiling = 1.0 - math.exp(-width_ns / p.tau_ns)
        up = side < 0
        comp = np.where(up, np.clip(1.25 * target_us / p.g_per_ua, 1.0, self.max_compliance_ua),
                        100.0)
        gap = np.where(up, comp * p.g_per_ua - g_us, g_us - p.g_hrs_us)
        need = self.aim * np.abs(target_us - g_us) / np.maximum(gap, 1e-9)
        thr = np.where(up, p.v_set_threshold, p.v_reset_threshold)
        cap = (1.0 - np.exp(-np.maximum(self.v_max - thr, 0.0) / p.v_scale)) * ceiling
        eta = np.clip(need, 1e-6, cap * 0.999)
        amp = np.minimum(thr - p.v_scale * np.log1p(-eta / ceiling), self.v_max)
        return amp, comp, np.zeros(amp.shape, bool)


@dataclass(frozen=True)
class WriteVerifyConfig:
    """Settings of :func:`write_verify`.

    Parameters
    ----------
    tol_us : float
        Acceptance band around the target, uS.
    max_iter : int
        Verify rounds at most.
    width_ns : float
        Width of every SET / RESET pulse, ns.
    v_read : float
        Read voltage of the verify reads, V.
    step : IsppStep or ModelStep
        How a pulse's amplitude is chosen.
    """

    tol_us: float = 0.5
    max_iter: int = 60
    width_ns: float = 200.0
    v_read: float = 0.2
    step: IsppStep | ModelStep = field(default_factory=IsppStep)

    def __post_init__(self) -> None:
        check_number("WriteVerifyConfig", "tol_us", self.tol_us, 0.0, low_open=True)
        check_int("WriteVerifyConfig", "max_iter", self.max_iter, 1, 100000)
        check_number("WriteVerifyConfig", "width_ns", self.width_ns, 0.0, 1e6, low_open=True)
        check_number("WriteVerifyConfig", "v_read", self.v_read, 0.0, 2.0, low_open=True)
        if not isinstance(self.step, (IsppStep, ModelStep)):
            raise TypeError("WriteVerifyConfig.step must be an IsppStep or a ModelStep")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["step"] = {"rule": self.step.name, **d["step"]}
        return d


@dataclass
class VerifyResult:
    """Outcome of :func:`write_verify`, the same for an array and a chip.

    Attributes
    ----------
    targets_us, final_us : float arrays (rows, cols)
        Targets and each cell's last read, uS.
    converged : bool array
        Within ``tol_us`` at its last read.
    pulses : int array
        SET / RESET pulses each cell received.
    rounds_to_converge : int array
        The round at which each cell was first read within tolerance (-1: never).
    given_up : bool array
        Cells the step rule stopped pulsing (ISPP: the next amplitude would exceed ``v_max``).
    iterations : int
        Verify rounds run.
    converged_by_round : float array
        Fraction of cells done after each round (the convergence curve).
    tol_us : float
    rows, cols : int arrays
        Absolute array coordinates of the cells.
    """

    targets_us: np.ndarray
    final_us: np.ndarray
    converged: np.ndarray
    pulses: np.ndarray
    rounds_to_converge: np.ndarray
    given_up: np.ndarray
    iterations: int
    converged_by_round: np.ndarray
    tol_us: float
    rows: np.ndarray = field(repr=False)
    cols: np.ndarray = field(repr=False)

    @property
    def error_us(self) -> np.ndarray:
        return self.final_us - self.targets_us

    @property
    def converged_fraction(self) -> float:
        return float(self.converged.mean()) if self.converged.size else 1.0

    @property
    def failed_cells(self) -> list[tuple[int, int]]:
        """(row, col) of every cell that did not reach the tolerance."""
        bad = ~self.converged.ravel()
        return list(zip(self.rows.ravel()[bad].tolist(), self.cols.ravel()[bad].tolist(),
                        strict=True))

    def summary(self) -> dict:
        done = self.rounds_to_converge[self.converged]
        return {"cells": int(self.converged.size), "converged_fraction": self.converged_fraction,
                "failed": int((~self.converged).sum()), "given_up": int(self.given_up.sum()),
                "iterations": self.iterations, "tol_us": self.tol_us,
                "mean_pulses": float(self.pulses.mean()) if self.pulses.size else 0.0,
                "max_pulses": int(self.pulses.max()) if self.pulses.size else 0,
                "median_rounds": float(np.median(done)) if done.size else 0.0,
                "rms_error_us": float(np.sqrt(np.mean(self.error_us[self.converged] ** 2)))
                if self.converged.any() else 0.0}


class VerifyTarget(Protocol):
    """What write-verify needs of an array: a block of cells it can read and pulse."""

    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray

    def read(self, v_read: float) -> np.ndarray:
        """One read of every cell of the block, uS (rows, cols)."""

    def pulse(self, cells: np.ndarray, kind: str, amplitude_v: np.ndarray, width_ns: float,
              compliance_ua: np.ndarray, round_: int) -> np.ndarray:
        """Apply one pulse to each listed cell (flat indices into the block); whether each
        ran (bool array)."""

    def restore(self) -> dict:
        """State of an earlier, interrupted run: per-cell pulses, last side and amplitude,
        rounds done (empty for a fresh run)."""


class ArrayTarget:
    """A block of a simulated :class:`~lsm.crossbar.CrossbarArray` (pulses are vectorised; a
    virgin cell is formed first by :func:`write_verify`'s caller)."""

    def __init__(self, array: CrossbarArray, region: Region) -> None:
        self.array = array
        self.region = array.check_region(region)
        self.shape = region.shape
        r, c = region.cells()
        self.rows, self.cols = r.reshape(self.shape), c.reshape(self.shape)

    def read(self, v_read: float) -> np.ndarray:
        return self.array.read_region(self.region, v_read)

    def pulse(self, cells, kind, amplitude_v, width_ns, compliance_ua, round_):
        r, c = self.rows.ravel()[cells], self.cols.ravel()[cells]
        signed = -np.abs(amplitude_v) if kind == RESET else np.abs(amplitude_v)
        self.array.program_cells(r, c, kind, signed, width_ns, compliance_ua)
        return np.ones(len(cells), bool)

    def restore(self) -> dict:
        return {}


class VerifyIncomplete(RuntimeError):
    """A write-verify on the chip stopped with a pulse whose outcome could not be resolved;
    run it again with the same job id to continue (nothing is pulsed twice)."""


class MacroTarget:
    """A region of the macro (:class:`hw.Macro`): one verified pulse per cell per round,
    recorded write-ahead in the macro's journal under ``job_id`` (chunk = the cell's flat
    index), so a killed run resumes (:meth:`restore`)."""

    def __init__(self, macro, region, job_id: str | None = None) -> None:
        self.macro = macro
        self.box = macro._region(region)
        r0, r1, c0, c1 = self.box
        self.shape = (r1 - r0, c1 - c0)
        self.rows, self.cols = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
        if job_id is not None and macro.journal is None:
            raise ValueError(f"job id {job_id!r} given without a journal: a write-verify can "
                             "only resume from its journal")
        self.job_id = job_id or uuid.uuid4().hex[:12]

    def read(self, v_read: float) -> np.ndarray:
        return self.macro.read_map(self.box, v_read=v_read)

    def pulse(self, cells, kind, amplitude_v, width_ns, compliance_ua, round_):
        r0, _, c0, _ = self.box
        applied = np.zeros(len(cells), bool)
        for k, (cell, a, comp) in enumerate(zip(cells, amplitude_v, compliance_ua,
                                                strict=True)):
            i, j = divmod(int(cell), self.shape[1])
            p = (Pulse.set(float(a), width_ns, float(comp)) if kind == SET
                 else Pulse.reset(-float(a), width_ns))
            out = self.macro.send_pulse((r0 + i, r0 + i + 1, c0 + j, c0 + j + 1), p,
                                        self.job_id, int(cell), extra={"round": round_})
            if out.applied is None:
                raise VerifyIncomplete(
                    f"write-verify job {self.job_id!r}: the pulse on cell ({r0 + i}, {c0 + j}) "
                    "could not be resolved (the link failed); run it again with the same job "
                    "id to continue: no pulse is sent twice")
            applied[k] = bool(out.applied)
        return applied

    def restore(self) -> dict:
        """Pulses of earlier runs of this job, from the journal (pending ones resolved on the
        instrument and settled first)."""
        journal = self.macro.journal
        if journal is None:
            return {}
        ops = [o for o in journal.ops(job_id=self.job_id) if o["command"] in
               ("PULS:SET", "PULS:RES")]
        if not ops:
            return {}
        n = self.shape[0] * self.shape[1]
        pulses = np.zeros(n, np.int64)
        side = np.zeros(n, np.int8)
        last_amp = np.zeros(n)
        rounds = -1
        for o in ops:
            params = json.loads(o["params"] or "{}")
            status = o["status"]
            if status in ("pending", "unresolved"):
                status = self._settle(o)
            if status not in ("ok", "verified-applied"):
                continue
            cell = int(o["chunk"])
            pulses[cell] += 1
            side[cell] = -1 if params["kind"] == SET else 1
            last_amp[cell] = abs(float(params["amplitude_v"]))
            rounds = max(rounds, int(params.get("round", 0)))
        return {"pulses": pulses, "side": side, "last_amp": last_amp, "rounds": rounds + 1}

    def _settle(self, op: dict) -> str:
        from hw.jobs import settle_pending

        out = settle_pending(self.macro, op)
        if out.applied is None:
            raise VerifyIncomplete(f"write-verify job {self.job_id!r}: a pulse of the last run "
                                   f"(journal record {op['id']}) cannot be resolved on the "
                                   "instrument (it has no pulse counter, or it was reset); "
                                   "check the cell by hand before going on")
        return "verified-applied" if out.applied else "verified-not-applied"


def write_verify(target: VerifyTarget, targets_us, config: WriteVerifyConfig | None = None,
                 progress: bool = True) -> VerifyResult:
    """Program the target's cells to ``targets_us`` (see the module docstring).

    Parameters
    ----------
    target : VerifyTarget
        :class:`ArrayTarget` or :class:`MacroTarget`.
    targets_us : array (rows, cols)
        Target conductances, uS, finite and > 0.
    config : WriteVerifyConfig
    progress : bool
        A progress bar over the rounds (plain lines when not on a terminal).

    Returns
    -------
    VerifyResult
    """
    from lsm.progress import progress_bar

    config = config if config is not None else WriteVerifyConfig()
    t = np.asarray(targets_us, dtype=np.float64)
    if t.shape != tuple(target.shape):
        raise ValueError(f"targets_us has shape {t.shape}, the cells have shape "
                         f"{tuple(target.shape)}")
    if not np.isfinite(t).all() or (t <= 0).any():
        raise ValueError("targets_us must be finite and > 0 (uS)")
    tf = t.ravel()
    n = tf.size
    state = target.restore()
    pulses = state.get("pulses", np.zeros(n, np.int64)).copy()
    side = state.get("side", np.zeros(n, np.int8)).copy()
    last_amp = state.get("last_amp", np.zeros(n)).copy()
    start = int(state.get("rounds", 0))
    done = np.zeros(n, bool)
    given_up = np.zeros(n, bool)
    rounds_to = np.full(n, -1, np.int64)
    final = np.zeros(n)
    history = []
    step = config.step
    it = start
    bar = progress_bar(total=config.max_iter, initial=min(start, config.max_iter),
                       desc="write-verify", unit="round", disable=not progress)
    try:
        for it in range(start, config.max_iter + 1):
            g = target.read(config.v_read).ravel()
            todo = ~done
            final[todo] = g[todo]
            err = g - tf
            newly = todo & (np.abs(err) <= config.tol_us)
            done |= newly
            rounds_to[newly] = it
            history.append(done.mean())
            active = ~done & ~given_up
            if not active.any() or it == config.max_iter:
                break
            cells = np.flatnonzero(active)
            s = np.where(err[cells] < 0, -1, 1).astype(np.int8)
            same = side[cells] == s
            amp, comp, give = step.amplitudes(s, same, last_amp[cells], g[cells], tf[cells],
                                               config.width_ns)
            given_up[cells[give]] = True
            for kind, sel in ((SET, (s < 0) & ~give), (RESET, (s > 0) & ~give)):
                if not sel.any():
                    continue
                ran = target.pulse(cells[sel], kind, amp[sel], config.width_ns, comp[sel], it)
                hit = cells[sel][ran]
                pulses[hit] += 1
                side[hit] = s[sel][ran]
                last_amp[hit] = amp[sel][ran]
            bar.update(1)
    finally:
        bar.close()
    shape = target.shape
    return VerifyResult(t, final.reshape(shape), done.reshape(shape), pulses.reshape(shape),
                        rounds_to.reshape(shape), given_up.reshape(shape), it,
                        np.asarray(history), float(config.tol_us), np.asarray(target.rows),
                        np.asarray(target.cols))


def targets_digest(targets_us: np.ndarray) -> str:
    """A short hash of a target map (a resumed job must program the same targets)."""
    return hashlib.sha256(np.ascontiguousarray(targets_us, dtype=np.float64).tobytes()
                          ).hexdigest()[:16]


def verify_random_targets(rows: int, cols: int, device, low_us: float, high_us: float,
                          config: WriteVerifyConfig | None = None, seed: int = 0,
                          progress: bool = False) -> dict:
    """Write-verify targets drawn uniformly in [low_us, high_us) into a freshly formed simulated
    array (``lsm crossbar verify``): the convergence summary and the first failed cells."""
    arr = CrossbarArray(rows, cols, device, seed=seed)
    region = Region(0, rows, 0, cols)
    arr.program_random(region)
    targets = np.random.default_rng(seed).uniform(low_us, high_us, region.shape)
    res = write_verify(ArrayTarget(arr, region), targets, config, progress=progress)
    out = res.summary()
    out["failed_cells_first"] = res.failed_cells[:10]
    out["step"] = (config or WriteVerifyConfig()).step.name
    return out
