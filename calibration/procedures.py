"""The measurements of a calibration, on an open :class:`hw.Macro` (the chip or the emulator).

Each procedure is a resumable step of one calibration job: what it measures is saved in the
job's work folder (:class:`WorkFolder`, one ``.npz`` per step, written atomically) the moment it
is measured, and every pulse goes through the macro's journal (recorded before it is sent,
resolved on the instrument after), so a calibration killed at any point and run again skips what
is saved, resolves a pulse left in doubt, and never sends a pulse twice.

- :func:`form_region`: FORM the region (:func:`hw.jobs.program_random`, row by row; cells found
  formed are not formed again) and note the instrument's time.
- :func:`repeated_reads`: ``n`` reads of the region (read noise, the map, the forming
  distribution).
- :func:`adc_transfer`: known inputs through ``VMM?`` (rows switched on in growing random subsets,
  all-zero vectors for the offset), with the currents they should give from a fresh map.
- :func:`drift_reads`: reads at a schedule of ages after forming (the emulator's clock is
  advanced; a chip is waited for).
- :func:`stuck_test`: read, RESET the region, read, SET it, read.
- :func:`verify_block`: write-verify random targets into a block (:mod:`calibration.writeverify`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from calibration.writeverify import MacroTarget, WriteVerifyConfig, write_verify
from hw.jobs import program_random, settle_pending
from hw.journal import APPLIED, NOT_APPLIED
from lsm.io import atomic_savez, atomic_write_text, load_npz

__all__ = ["WorkFolder", "form_region", "repeated_reads", "adc_transfer", "drift_reads",
           "stuck_test", "verify_block", "StepIncomplete"]


class StepIncomplete(RuntimeError):
    """A pulse of a calibration step could not be resolved, or did not run after its retries;
    running the calibration again continues from here."""


class WorkFolder:
    """The files of one calibration job: ``plan.json`` and one ``.npz`` per finished step.

    Parameters
    ----------
    path : Path
        The folder (created).
    plan : dict
        The job's settings; a folder made for another plan is refused (its saved steps would be
        mixed into this calibration).
    """

    def __init__(self, path: str | Path, plan: dict) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        text = json.dumps(plan, sort_keys=True, default=str)
        f = self.path / "plan.json"
        if f.exists():
            old = f.read_text(encoding="utf-8")
            if json.dumps(json.loads(old), sort_keys=True, default=str) != text:
                raise ValueError(f"{self.path} holds a calibration with other settings "
                                 f"({f}); choose another --out, or delete the folder to start "
                                 "over")
        else:
            atomic_write_text(f, text)

    def has(self, name: str) -> bool:
        return (self.path / f"{name}.npz").exists()

    def load(self, name: str) -> dict:
        return load_npz(self.path / f"{name}.npz", what=f"calibration step {name!r}")

    def save(self, name: str, **arrays) -> dict:
        atomic_savez(self.path / f"{name}.npz", **arrays)
        return {k: np.asarray(v) for k, v in arrays.items()}


def _bar(total, desc, progress, unit="read"):
    from lsm.progress import progress_bar

    return progress_bar(total=total, desc=desc, unit=unit, disable=not progress)


def form_region(macro, region, pulse, work: WorkFolder, job_id: str,
                progress: bool = True) -> dict:
    """FORM every cell of ``region`` (resumable, verified) and note when: ``t_form_s`` (the
    instrument's clock right after the last row), and ``formed_before`` (cells found formed
    already, so their forming time is not known)."""
    if work.has("form"):
        return work.load("form")
    before = macro.formed_mask(region)
    program_random(macro, region, pulse, job_id=job_id, progress=progress)
    return work.save("form", t_form_s=np.float64(macro.clock_s()),
                     formed_before=np.float64(before.mean()))


def repeated_reads(macro, region, n_reads: int, v_read: float, work: WorkFolder,
                   name: str = "reads", progress: bool = True) -> dict:
    """``n_reads`` reads of the region: ``reads`` (n, rows, cols) uS and the instrument's time
    ``t_s`` of each."""
    if work.has(name):
        return work.load(name)
    r0, r1, c0, c1 = region
    reads = np.empty((n_reads, r1 - r0, c1 - c0))
    times = np.empty(n_reads)
    bar = _bar(n_reads, name, progress)
    try:
        for k in range(n_reads):
            reads[k] = macro.read_map(region, v_read=v_read)
            times[k] = macro.clock_s()
            bar.update(1)
    finally:
        bar.close()
    return work.save(name, reads=reads, t_s=times)


def adc_transfer(macro, region, n_levels: int, v_read: float, work: WorkFolder, seed: int = 0,
                 progress: bool = True) -> dict:
    """Codes of known bit-line currents through ``VMM?``.

    A fresh map (4 reads averaged) gives each cell's conductance; ``n_levels`` input vectors
    switch on 0 ... all rows of the region (random subsets, seeded), so the expected currents
    ``v_read * x @ G`` span zero to the region's largest, past the ADC's range when the region
    is large enough; 4 all-zero vectors give the offset.
    """
    if work.has("adc"):
        return work.load("adc")
    r0, r1, c0, c1 = region
    n_rows = r1 - r0
    g = np.mean([macro.read_map(region, v_read=v_read) for _ in range(4)], axis=0)
    rng = np.random.default_rng(seed)
    counts = np.unique(np.linspace(1, n_rows, n_levels).round().astype(int))
    x = np.zeros((len(counts) + 4, n_rows), np.uint8)
    for i, k in enumerate(counts):
        x[i, rng.choice(n_rows, size=k, replace=False)] = 1
    bar = _bar(1, "adc", progress, unit="call")
    try:
        codes = macro.vmm((r0, r1), (c0, c1), x, v_read=v_read)
        bar.update(1)
    finally:
        bar.close()
    currents = v_read * x.astype(np.float64) @ g
    bits = macro.adc().bits
    zero = codes[len(counts):]
    return work.save("adc", currents_ua=currents[:len(counts)], codes=codes[:len(counts)],
                     zero_codes=zero, bits=np.int64(bits), g_us=g, v_read=np.float64(v_read))


def drift_reads(macro, region, ages_s, repeats: int, v_read: float, t_form_s: float,
                work: WorkFolder, progress: bool = True) -> dict:
    """Reads at ``ages_s`` after forming (each the mean of ``repeats`` reads), one step file
    per age: a run stopped half-way keeps the ages read and continues with the next. An age
    already past is read at once (its real age is recorded)."""
    ages_s = sorted(float(a) for a in ages_s)
    bar = _bar(len(ages_s), "drift", progress, unit="age")
    try:
        for k, age in enumerate(ages_s):
            name = f"drift-{k:02d}"
            if not work.has(name):
                wait = t_form_s + age - macro.clock_s()
                if wait > 0:
                    macro.advance_time(wait)
                g = np.mean([macro.read_map(region, v_read=v_read) for _ in range(repeats)],
                            axis=0)
                work.save(name, g_us=g, age_s=np.float64(macro.clock_s() - t_form_s))
            bar.update(1)
    finally:
        bar.close()
    parts = [work.load(f"drift-{k:02d}") for k in range(len(ages_s))]
    return {"g_us": np.stack([p["g_us"] for p in parts]),
            "age_s": np.array([float(p["age_s"]) for p in parts])}


#: a settled outcome's ``applied`` -> its journal status
_STATUS = {True: "verified-applied", False: "verified-not-applied", None: "unresolved"}


def _pulse_once(macro, region, pulse, job_id: str, chunk: int, max_attempts: int = 3) -> None:
    """One journaled pulse of a step, exactly once across runs: skipped when the journal says
    it ran, resolved on the instrument when its record was left in doubt, re-sent only when it
    is known not to have run."""
    journal = macro.journal
    op = journal.last_op(job_id, chunk, command="PULS:%")
    if op is not None:
        status = op["status"]
        if status in ("pending", "unresolved"):
            status = _STATUS[settle_pending(macro, op).applied]
        if status in APPLIED:
            return
        if status not in NOT_APPLIED:
            raise StepIncomplete(f"job {job_id!r}: whether its pulse {chunk} "
                                 f"({pulse.kind.upper()} on {list(region)}) ran cannot be told "
                                 "(the instrument has no pulse counter, or was reset); check "
                                 "the cells before going on")
    for _ in range(max_attempts):
        out = macro.send_pulse(region, pulse, job_id, chunk)
        if out.applied:
            return
        if out.applied is None:
            raise StepIncomplete(f"job {job_id!r}: the link failed with pulse {chunk} in "
                                 "flight and it could not be resolved; run the calibration "
                                 "again to resolve it and go on")
    raise StepIncomplete(f"job {job_id!r}: pulse {chunk} ({pulse.kind.upper()} on "
                         f"{list(region)}) did not run after {max_attempts} attempts "
                         f"({out.status}: {out.error})")


def stuck_test(macro, region, reset_pulse, set_pulse, repeats: int, v_read: float,
               work: WorkFolder, job_id: str, progress: bool = True) -> dict:
    """Read (``before``), RESET the region, read (``after_reset``), SET it, read
    (``after_set``); each read the mean of ``repeats``. The two pulses are journaled chunks 0
    and 1 of ``job_id``."""
    if macro.journal is None:
        raise ValueError("the stuck-cell test pulses the region: it needs a journal")
    stages = (("stuck-before", None), ("stuck-reset", reset_pulse), ("stuck-set", set_pulse))
    bar = _bar(len(stages), "stuck", progress, unit="stage")
    try:
        for chunk, (name, pulse) in enumerate(stages):
            if not work.has(name):
                if pulse is not None:
                    _pulse_once(macro, region, pulse, job_id, chunk - 1)
                g = np.mean([macro.read_map(region, v_read=v_read) for _ in range(repeats)],
                            axis=0)
                work.save(name, g_us=g)
            bar.update(1)
    finally:
        bar.close()
    return {name.split("-")[1]: work.load(name)["g_us"] for name, _ in stages}


def verify_block(macro, box, targets_us, config: WriteVerifyConfig, work: WorkFolder,
                 job_id: str, progress: bool = True) -> dict:
    """Write-verify ``targets_us`` into ``box`` (journaled per cell, resumable); the result's
    arrays."""
    if work.has("verify"):
        return work.load("verify")
    res = write_verify(MacroTarget(macro, box, job_id=job_id), targets_us, config,
                       progress=progress)
    return work.save("verify", targets_us=res.targets_us, final_us=res.final_us,
                     converged=res.converged, pulses=res.pulses,
                     rounds_to_converge=res.rounds_to_converge, given_up=res.given_up,
                     converged_by_round=res.converged_by_round,
                     iterations=np.int64(res.iterations), tol_us=np.float64(res.tol_us))
