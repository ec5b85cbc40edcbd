"""Resumable, verified jobs on the macro.

:func:`program_random` forms a region one row per command. With a journal, each row is a
*chunk* of the job: recorded pending before its pulse goes out (write-ahead), settled after the
pulse's outcome is resolved on the instrument (:meth:`hw.Macro.send_pulse`). A job is *done*
only when every row is known to have been pulsed exactly once; otherwise it raises
:class:`JobIncomplete` naming the cells it could not resolve or could not pulse, and running it
again with the same job id continues: rows done are skipped, rows whose pulse is known not to
have run are pulsed, and a row left pending (the process died with its pulse in flight) is
resolved first, by the pulse counter recorded before it was sent, or by reading its cells back.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable

import numpy as np

from hw.journal import APPLIED, NOT_APPLIED
from hw.macro import PULSE_HEADERS, Macro, PulseOutcome, column_offsets
from hw.transport import LinkError

__all__ = ["program_random", "JobIncomplete", "settle_pending"]


class JobIncomplete(RuntimeError):
    """A job that could not pulse, or could not verify, every cell of its region.

    Attributes
    ----------
    job_id : str
    unresolved : list of (row, c0, c1)
        Cells whose pulse may or may not have run (resolved on the next run).
    failed : list of (row, c0, c1)
        Cells known not to have been pulsed (the instrument refused, or the pulse was lost).
    not_started : list of (row, c0, c1)
        Rows the job did not reach.
    cause : Exception or None
        The error that stopped the job early (a broken link), if any.
    """

    def __init__(self, job_id, unresolved, failed, not_started, cause=None) -> None:
        self.job_id, self.unresolved, self.failed = job_id, unresolved, failed
        self.not_started, self.cause = not_started, cause
        parts = [f"job {job_id!r} is not done"]
        if cause is not None:
            parts.append(f"stopped by: {cause}")
        for name, cells in (("unresolved (may or may not have been pulsed)", unresolved),
                            ("not pulsed (refused or lost)", failed),
                            ("not started", not_started)):
            if cells:
                parts.append(f"{name}: {_describe(cells)}")
        parts.append("run it again with the same job id to resume; no cell is pulsed twice")
        super().__init__("; ".join(parts))


def _describe(cells: list, limit: int = 8) -> str:
    text = ", ".join(f"row {r} cols {a}:{b}" for r, a, b in cells[:limit])
    more = len(cells) - limit
    return f"{len(cells)} row(s): {text}" + (f" and {more} more" if more > 0 else "")


def program_random(macro: Macro, region, pulse=None, job_id: str | None = None,
                   progress: bool = True, on_chunk: Callable[[int], None] | None = None,
                   max_attempts: int = 3) -> str:
    """Form ``region`` into the random state, one row per FORM command, verified and resumable.

    Parameters
    ----------
    macro : hw.Macro
        An open macro.
    region : (r0, r1, c0, c1)
    pulse : lsm.crossbar.Pulse, optional
        A FORM pulse (default ``Pulse.form()``).
    job_id : str, optional
        Journal id; running again with the same id resumes. Needs the macro's journal (a job
        id without a journal could not resume, and re-running would pulse every cell again).
    progress : bool
        Show a progress bar (plain lines when not on a terminal).
    on_chunk : callable, optional
        Called with the row offset after each row is done.
    max_attempts : int
        Sends of one row's pulse when it is verified not to have run (>= 1).

    Returns
    -------
    str
        The job id.

    Raises
    ------
    JobIncomplete
        When any row is left unresolved or unpulsed (the job is recorded ``incomplete``).
    """

    from lsm.crossbar import Pulse

    pulse = Pulse.form() if pulse is None else pulse
    if pulse.kind != "form":
        raise ValueError("program_random needs a FORM pulse")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    journal = macro.journal
    if job_id is not None and journal is None:
        raise ValueError(f"job id {job_id!r} given without a journal: a job can only resume "
                         "from its journal (without one, a re-run would pulse every cell again)")
    r0, r1, c0, c1 = macro.check_pulse(region, pulse)
    job_id = job_id or uuid.uuid4().hex[:12]
    params = {"region": [r0, r1, c0, c1], "pulse": [pulse.amplitude_v, pulse.width_ns,
                                                    pulse.compliance_ua],
              "instrument": macro.instrument}
    with contextlib.ExitStack() as stack:
        status: dict[int, str] = {}
        if journal is not None:
            stack.enter_context(journal.job_lock(job_id))
            if journal.start_job(job_id, "program_random", params):
                _check_counter_since_last_run(macro, job_id)
            status = journal.chunk_status(job_id)
        return _run_rows(macro, (r0, r1, c0, c1), pulse, job_id, status, progress, on_chunk,
                         max_attempts)


def _run_rows(macro, region, pulse, job_id, status, progress, on_chunk, max_attempts) -> str:
    from lsm.progress import progress_bar

    journal = macro.journal
    r0, r1, c0, c1 = region
    unresolved, failed = [], []
    k = 0
    try:
        for k in progress_bar(range(r1 - r0), desc=f"program_random {job_id}", unit="row",
                      disable=not progress, mininterval=1.0):
            st = status.get(k)
            if st == "done":
                continue
            row = r0 + k
            box = (row, row + 1, c0, c1)
            if st in ("pending", "failed", "recheck"):
                outcome = _resolve_pending(macro, box, pulse, job_id, k, st == "recheck")
            else:
                outcome = _fresh_row(macro, box, job_id, k)
            result = _complete_row(macro, box, pulse, job_id, k, outcome, max_attempts)
            if result == "done":
                if journal is not None:
                    journal.set_chunk(job_id, k, "done")
                if on_chunk is not None:
                    on_chunk(k)
            else:
                if journal is not None and result == "failed":
                    journal.set_chunk(job_id, k, "failed")
                (unresolved if result == "unresolved" else failed).append((row, c0, c1))
    except LinkError as exc:
        _stop(journal, job_id, "incomplete")
        done = journal.chunk_status(job_id) if journal is not None else {}
        not_started = [(r0 + j, c0, c1) for j in range(k + 1, r1 - r0)
                       if done.get(j) != "done"]
        here = (r0 + k, c0, c1)
        if here not in unresolved and here not in failed and done.get(k) != "done":
            (unresolved if done.get(k) == "pending" else not_started).insert(0, here)
        raise JobIncomplete(job_id, unresolved, failed, sorted(not_started), exc) from exc
    except BaseException:
        _stop(journal, job_id, "interrupted")
        raise
    if unresolved or failed:
        _stop(journal, job_id, "incomplete")
        raise JobIncomplete(job_id, unresolved, failed, [])
    _stop(journal, job_id, "done")
    return job_id


def _check_counter_since_last_run(macro: Macro, job_id: str) -> None:
    """A resumed job on an instrument whose pulse counter went back (power-cycled, or an
    emulator restarted with a fresh array): the rows it did before are read again, and any
    found virgin are done again, instead of being trusted."""
    journal = macro.journal
    last = journal.last_counter(macro.instrument, job_id)
    now = macro.pulse_counter()
    if last is None or now is None or now >= last:
        return
    journal.record("COUNTER-RESET", {"last": last, "now": now}, None, "ok", macro.instrument,
                   job_id)
    for k, st in journal.chunk_status(job_id).items():
        if st == "done":
            journal.set_chunk(job_id, k, "recheck")


def _fresh_row(macro: Macro, box, job_id: str, k: int) -> PulseOutcome:
    """A row this job never pulsed is read first: cells found formed already (by another
    job, a lost journal, an earlier run) are not formed again."""
    outcome = _read_row(macro, box, "ok")
    if outcome.applied and macro.journal is not None:
        macro.journal.record("ALREADY-FORMED", {"row": box[0], "cells": int(
            (box[3] - box[2]) - len(outcome.unformed))}, None, "ok", macro.instrument, job_id, k)
    return outcome


def _read_row(macro: Macro, box, status: str) -> PulseOutcome:
    """What a row needs, from its cells: nothing formed (applied False: pulse the row), or
    formed in part (applied True: pulse only the cells listed as unformed)."""
    formed = macro.formed_mask(box)
    if not formed.any():
        return PulseOutcome(status, False, "read-back")
    return PulseOutcome(status, True, "read-back", unformed=column_offsets(~formed))


def _stop(journal, job_id: str, status: str) -> None:
    if journal is not None:
        journal.finish_job(job_id, status)


def settle_pending(macro: Macro, op: dict) -> PulseOutcome:
    """Resolve, on the instrument, a journal record of a pulse left ``pending`` or
    ``unresolved`` (the process died, or the link failed, with the pulse in flight), and settle
    the record with what was found.

    The pulse counter read before it was sent decides, net of the pulses recorded after it;
    when those cannot be accounted for (one of them is in doubt too, or the record is another
    instrument's), the cells are read back. Used by every resumable job (rows here, the
    calibration's steps, write-verify's cells).

    Returns
    -------
    PulseOutcome
        ``applied`` True / False, or None when nothing can tell (the record stays
        ``unresolved``).
    """
    journal = macro.journal
    params = json.loads(op["params"] or "{}")
    n0 = params.get("counter_before")
    later_applied, later_unknown = journal.pulses_after(op["id"], op["instrument"])
    if later_unknown or op["instrument"] != macro.instrument:
        n0 = None  # the counter cannot be accounted for: read back
    kind = params.get("kind") or {h: k for k, h in PULSE_HEADERS.items()}[op["command"]]
    outcome = macro.resolve_pulse(kind, tuple(params["region"]), n0,
                                  pulses_since=later_applied)
    journal.settle(op["id"], "unresolved" if outcome.applied is None else
                   ("verified-applied" if outcome.applied else "verified-not-applied"),
                   outcome.as_dict())
    return outcome


def _resolve_pending(macro: Macro, box, pulse, job_id: str, k: int,
                     recheck: bool = False) -> PulseOutcome:
    """A row not done on resume: its last pulse may be in doubt (the process died, or the
    link failed, with the pulse in flight), or only part of the row was pulsed. Ask the
    instrument what happened; the outcome is relative to the whole row."""
    journal = macro.journal
    op = journal.last_op(job_id, k, command="PULS:%")
    outcome = None
    if op is not None:
        params = json.loads(op["params"] or "{}")
        region = tuple(params.get("region", ()))
        if op["status"] in APPLIED + NOT_APPLIED:
            result = json.loads(op["result"] or "{}")
            outcome = PulseOutcome(op["status"], op["status"] in APPLIED,
                                   result.get("how", "journal"),
                                   unformed=tuple(result.get("unformed", ())),
                                   stuck=tuple(result.get("stuck", ())))
        else:  # pending or unresolved: settle it first
            outcome = settle_pending(macro, op)
        if (region != tuple(box) or recheck) and outcome.applied is not None:
            outcome = None  # the record covered part of the row, or the instrument was reset
    if outcome is None:  # no record of the whole row: its cells say what it needs
        outcome = _read_row(macro, box, "verified-applied")
    journal.record("RESUME-CHECK", {"row": box[0], "op": None if op is None else op["id"],
                                    "how": outcome.how, "applied": outcome.applied,
                                    "unformed": len(outcome.unformed)},
                   None, "ok", macro.instrument, job_id, k)
    return outcome


def _complete_row(macro: Macro, box, pulse, job_id, k, outcome, max_attempts) -> str:
    """Pulse what the row still needs; returns ``done``, ``unresolved`` or ``failed``."""
    row, _, c0, c1 = box
    if outcome.applied is None:
        return "unresolved"
    # a row found formed in part, or whose pulse ran: only the cells still virgin (none once
    # the pulse ran and the rest are stuck)
    todo = ([(row, row + 1, c0 + a, c0 + b) for a, b in _runs(outcome.unformed)]
            if outcome.applied else [box])
    for part in todo:
        for _ in range(max_attempts):
            out = macro.send_pulse(part, pulse, job_id, k)
            if out.applied is None:
                return "unresolved"
            if out.applied:
                if out.unformed:  # read-back: some cells of this part still virgin
                    pr0, pr1, pc0, _ = part
                    todo.extend((pr0, pr1, pc0 + a, pc0 + b) for a, b in _runs(out.unformed))
                break
        else:
            return "failed"
    return "done"


def _runs(offsets) -> list[tuple[int, int]]:
    """Contiguous runs of sorted offsets, as half-open (start, stop) pairs."""
    idx = np.asarray(offsets, dtype=np.int64)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(idx, breaks)]
