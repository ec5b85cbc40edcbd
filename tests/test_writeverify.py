"""Write-verify: one algorithm (calibration.writeverify) on the simulated array and over the driver
on the emulated macro, resumable from the journal without pulsing twice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.writeverify import (
    ArrayTarget,
    IsppStep,
    MacroTarget,
    ModelStep,
    WriteVerifyConfig,
    write_verify,
)
from hw import Journal, Macro
from hw.emulator import EmulatedMacro, EmulatorServer
from lsm.crossbar import CrossbarArray, DeviceParams, FaultParams, Region


def stuck_cells(array, r1, c1) -> set:
    return {(int(a), int(b)) for a, b in zip(*np.nonzero(array.stuck[:r1, :c1]), strict=True)}


@pytest.mark.parametrize("step", [ModelStep(), IsppStep()], ids=["model", "ispp"])
def test_write_verify_on_the_array_fails_exactly_the_stuck_cells(step):
    dev = DeviceParams(faults=FaultParams(p_stuck_hrs=0.002, p_stuck_lrs=0.002))
    arr = CrossbarArray(128, 128, device=dev, seed=21)
    region = Region(0, 128, 0, 128)
    arr.program_random(region)
    targets = np.random.default_rng(2).uniform(5.0, 50.0, region.shape)
    res = write_verify(ArrayTarget(arr, region), targets, WriteVerifyConfig(step=step),
                       progress=False)
    # the failures are exactly the stuck cells, read from the fault map (not from the result's
    # own mask): the targets are far from the stuck values, and every healthy cell of this
    # seed reaches 0.5 uS within the rounds
    stuck = stuck_cells(arr, 128, 128)
    assert 40 < len(stuck) < 120  # 0.4 % of 16,384 cells: 66 expected
    assert set(res.failed_cells) == stuck
    ok = res.converged
    g = arr.conductance()
    assert np.abs(g[ok] - targets[ok]).max() < 0.5 + 4 * 0.0015 * 50  # tol plus read noise
    assert np.all(np.abs(g[~ok] - targets[~ok]) > 0.5)  # and every reported failure is off
    s = res.summary()
    assert s["cells"] == 128 * 128 and s["failed"] == len(stuck)
    # per-cell statistics agree with each other: a converged cell took a round >= 0
    assert (res.rounds_to_converge[ok] >= 0).all() and (res.rounds_to_converge[~ok] == -1).all()
    assert res.converged_by_round[-1] == pytest.approx(res.converged_fraction)
    assert np.all(np.diff(res.converged_by_round) >= 0)
    assert res.pulses[~ok].min() >= 1  # a stuck cell was tried


def test_the_model_step_converges_in_fewer_rounds_than_ispp():
    """The model's amplitudes (what a calibrated twin gives) against model-free steps, same
    cells and targets."""
    med = {}
    for step in (ModelStep(), IsppStep()):
        arr = CrossbarArray(32, 32, seed=3)
        arr.program_random(Region(0, 32, 0, 32))
        t = np.random.default_rng(1).uniform(10, 40, (32, 32))
        med[step.name] = write_verify(ArrayTarget(arr, Region(0, 32, 0, 32)), t,
                                      WriteVerifyConfig(step=step), progress=False
                                      ).summary()["median_rounds"]
    assert med["model"] < med["ispp"]


def test_ispp_gives_up_cells_that_would_need_more_than_v_max():
    arr = CrossbarArray(4, 4, seed=0)
    arr.program_random(Region(0, 4, 0, 4))
    step = IsppStep(v_start=0.62, v_step=0.02, v_max=0.66, compliance_ua=200.0)
    res = write_verify(ArrayTarget(arr, Region(0, 4, 0, 4)), np.full((4, 4), 55.0),
                       WriteVerifyConfig(step=step, max_iter=40), progress=False)
    # three amplitudes (0.62, 0.64, 0.66) are allowed, then the cell is given up
    assert res.given_up.all() and (res.pulses == 3).all() and not res.converged.any()


def test_bad_targets_are_refused():
    arr = CrossbarArray(4, 4)
    target = ArrayTarget(arr, Region(0, 2, 0, 2))
    with pytest.raises(ValueError, match="shape"):
        write_verify(target, np.ones((3, 2)), progress=False)
    with pytest.raises(ValueError, match="finite and > 0"):
        write_verify(target, np.array([[1.0, np.nan], [1.0, 1.0]]), progress=False)
    with pytest.raises(ValueError, match="tol_us"):
        WriteVerifyConfig(tol_us=0)


def test_write_verify_over_the_driver_fails_exactly_the_stuck_cells():
    macro = EmulatedMacro(seed=4, device=DeviceParams(faults=FaultParams(p_stuck_hrs=0.01)))
    srv = EmulatorServer(0, macro).start()
    try:
        with Macro(srv.resource) as m:
            m.program_random((0, 16, 0, 16), progress=False)
            formed = macro.pulse_counts[:16, :16].copy()
            targets = np.random.default_rng(0).uniform(10, 40, (16, 16))
            r = write_verify(MacroTarget(m, (0, 16, 0, 16)), targets, progress=False)
    finally:
        srv.stop()
    stuck = stuck_cells(macro.array, 16, 16)
    assert set(r.failed_cells) == stuck  # every unreachable cell is reported, and only those
    g = macro.array.conductance()[:16, :16]
    ok = r.converged
    assert np.abs(g - targets)[ok].max() < 0.5 + 4 * 0.0015 * 40
    # the instrument's own per-cell pulse counter agrees with the result
    np.testing.assert_array_equal(macro.pulse_counts[:16, :16] - formed, r.pulses)


class _StopAfter:
    """Kill the job (as Ctrl-C would) after ``n`` pulses have gone out."""

    def __init__(self, macro, n):
        self.macro, self.n, self.sent = macro, n, 0
        self._send = macro.send_pulse

    def __call__(self, *args, **kwargs):
        if self.sent == self.n:
            raise KeyboardInterrupt
        self.sent += 1
        return self._send(*args, **kwargs)


def test_a_killed_write_verify_resumes_without_pulsing_twice(tmp_path):
    """Killed mid-round, twice, and re-run with the same job id: the cells end where an
    uninterrupted run leaves them, and the instrument's per-cell counters equal the journal's
    applied pulses (no pulse sent twice, none lost)."""
    macro = EmulatedMacro(seed=7)
    srv = EmulatorServer(0, macro).start()
    box = (0, 8, 0, 8)
    targets = np.random.default_rng(5).uniform(10, 40, (8, 8))
    try:
        journal = Journal(tmp_path / "lab.sqlite")
        with Macro(srv.resource, journal=journal) as m:
            m.program_random(box, job_id="form", progress=False)
        formed = macro.pulse_counts[:8, :8].ravel().copy()
        for n in (37, 23):
            with Macro(srv.resource, journal=journal) as m:
                m.send_pulse = _StopAfter(m, n)
                with pytest.raises(KeyboardInterrupt):
                    write_verify(MacroTarget(m, box, job_id="wv"), targets, progress=False)
        # and once with a pulse in flight: sent, its record left pending (the process died
        # before it could settle it); the resumed run resolves it by the pulse counter
        settle = journal.settle
        calls = []

        def die_in_settle(*args, **kwargs):
            calls.append(args)
            if len(calls) == 5:
                raise KeyboardInterrupt
            return settle(*args, **kwargs)

        journal.settle = die_in_settle
        with Macro(srv.resource, journal=journal) as m, pytest.raises(KeyboardInterrupt):
            write_verify(MacroTarget(m, box, job_id="wv"), targets, progress=False)
        journal.settle = settle
        assert [o["status"] for o in journal.ops(job_id="wv")].count("pending") == 1
        with Macro(srv.resource, journal=journal) as m:
            r = write_verify(MacroTarget(m, box, job_id="wv"), targets, progress=False)
        assert [o["status"] for o in journal.ops(job_id="wv")].count("pending") == 0
        ops = [o for o in journal.ops(job_id="wv") if o["status"] in ("ok", "verified-applied")]
    finally:
        srv.stop()
    per_cell = np.zeros(64, int)
    for o in ops:
        per_cell[o["chunk"]] += 1
        assert json.loads(o["params"])["region"][1] - json.loads(o["params"])["region"][0] == 1
    np.testing.assert_array_equal(macro.pulse_counts[:8, :8].ravel() - formed, per_cell)
    np.testing.assert_array_equal(r.pulses.ravel(), per_cell)
    assert r.converged.all()
    assert r.pulses.sum() > 37 + 23  # the last run pulsed too: the kills were mid-job
