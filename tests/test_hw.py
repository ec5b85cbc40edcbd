"""The lab: driver over real TCP through pyvisa-py to the emulator on 127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import InstrumentError, Journal, LimitError, Limits, LinkError, Macro, export_map
from hw.emulator import EmulatedMacro, EmulatorServer, FaultConfig
from hw.protocol import BlockError, encode_block, parse_block
from lsm.crossbar import Pulse


@pytest.fixture
def emulator():
    srv = EmulatorServer(0, EmulatedMacro(seed=1)).start()
    yield srv
    srv.stop()


def faulty(**faults):
    return EmulatorServer(0, EmulatedMacro(seed=2), FaultConfig(**faults), seed=5).start()


# ---------------------------------------------------------------- happy paths
def test_identify_program_read_vmm(emulator, tmp_path):
    with Macro(emulator.resource, journal=tmp_path / "j.sqlite") as m:
        assert m.idn["model"] == "IMC40-512" and m.idn["protocol"] == "1.1" and m.has_counter
        assert m.geometry == (512, 512)
        job = m.program_random((0, 32, 0, 40), progress=False)
        g = m.read_map((0, 32, 0, 40), repeats=3)
        assert g.shape == (32, 40) and 20 < g.mean() < 35 and 5 < g.std() < 9
        x = (np.random.default_rng(0).random((9, 32)) < 0.3).astype(np.uint8)
        codes = m.vmm((0, 32), (0, 40), x)
        ro = m.adc()
        ideal = 0.2 * x @ emulator.macro.array.conductance()[:32, :40]
        assert np.abs(ro.currents(codes) - ideal).max() < 0.02 * ideal.max() + ro.lsb_ua
    np.testing.assert_array_equal(emulator.macro.pulse_counts[:32, :40], 1)
    j = Journal(tmp_path / "j.sqlite")
    ops = j.ops(job_id=job)
    assert len(ops) == 32 and {o["command"] for o in ops} == {"PULS:FORM"}
    assert json.loads(ops[0]["params"])["region"] == [0, 1, 0, 40]
    assert j.job(job)["status"] == "done"
    assert j._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_export_maps(tmp_path):
    import h5py

    g = np.arange(12, dtype=np.float32).reshape(3, 4)
    export_map(tmp_path / "m.npz", g, {"v_read": 0.2})
    with np.load(tmp_path / "m.npz") as f:
        np.testing.assert_array_equal(f["g_us"], g)
        assert json.loads(str(f["settings"]))["v_read"] == 0.2
    export_map(tmp_path / "m.h5", g, {"repeats": 3})
    with h5py.File(tmp_path / "m.h5") as f:
        np.testing.assert_array_equal(f["g_us"][()], g)
        assert json.loads(f.attrs["settings"])["repeats"] == 3


# ---------------------------------------------------------------- safety limits
@pytest.mark.parametrize("action, message", [
    (lambda m: m.pulse((0, 1, 0, 1), Pulse.form(amplitude_v=4.0)), "max_abs_v"),
    (lambda m: m.pulse((0, 1, 0, 1), Pulse.form(width_ns=5e4)), "width_ns"),
    (lambda m: m.pulse((0, 1, 0, 1), Pulse.form(compliance_ua=500.0)), "compliance_ua"),
    (lambda m: m.pulse((0, 1, 100, 101), Pulse.form()), "outside the allowed regions"),
    (lambda m: m.program_random((0, 4, 0, 4), Pulse.form(amplitude_v=3.6)), "max_abs_v"),
    (lambda m: m.read_map((0, 2, 0, 2), v_read=0.45), "v_read"),
    (lambda m: m.vmm((0, 70), (0, 4), np.ones((3, 70), np.uint8)), "outside the allowed"),
])
def test_limit_violations_are_refused_before_sending(emulator, tmp_path, action, message):
    path = tmp_path / "limits.toml"
    path.write_text("[limits]\nmax_abs_v = 3.5\nmax_width_ns = 2000.0\nmax_compliance_ua = 200.0"
                    "\nmax_v_read = 0.3\nmax_vectors = 64\nallowed_regions = [[0, 64, 0, 64]]\n")
    with Macro(emulator.resource, limits=path) as m:
        before = emulator.macro.rx
        with pytest.raises(LimitError, match=message) as exc:
            action(m)
        assert "limits.toml" in str(exc.value)
        assert emulator.macro.rx == before  # not a byte went out
    assert emulator.macro.pulse_counts.sum() == 0


def test_limits_file_errors(tmp_path):
    p = tmp_path / "l.toml"
    p.write_text("[limits]\nmax_volts = 3\n")
    with pytest.raises(LimitError, match=r"unknown limit\(s\) \['max_volts'\]"):
        Limits.load(p)
    p.write_text("[limits]\nmax_abs_v = -1\n")
    with pytest.raises(LimitError, match="max_abs_v must be a positive number"):
        Limits.load(p)
    with pytest.raises(LimitError, match="limits file not found"):
        Limits.load(tmp_path / "none.toml")
    Limits.load(Path(__file__).parents[1] / "hw" / "limits.example.toml")


# ---------------------------------------------------------------- faults
def test_latency_below_timeout_is_fine_above_is_a_clear_error():
    srv = faulty(latency_s=0.05)
    try:
        with Macro(srv.resource, timeout_ms=2000) as m:
            assert m.read_map((0, 2, 0, 2)).shape == (2, 2)
    finally:
        srv.stop()
    srv = faulty(latency_s=0.6)
    try:
        with pytest.raises(LinkError, match=r"\*IDN\?: no valid reply after 2 attempts"):
            Macro(srv.resource, timeout_ms=200, retries=1).open()
    finally:
        srv.stop()


@pytest.mark.parametrize("fault", ["drop_rate", "garble_rate",
                                   # about 12 s (drop and garble: 1-3 s)
                                   pytest.param("disconnect_rate", marks=pytest.mark.slow)])
def test_read_faults_are_recovered_and_journal_consistent(tmp_path, fault):
    srv = faulty(**{fault: 0.25})
    try:
        with Macro(srv.resource, journal=tmp_path / "j.sqlite", timeout_ms=300, retries=6) as m:
            maps = [m.read_map((0, 3, 0, 3)) for _ in range(12)]
            assert all(mp.shape == (3, 3) and np.isfinite(mp).all() for mp in maps)
    finally:
        srv.stop()
    ops = Journal(tmp_path / "j.sqlite").ops()
    assert sum(o["command"] == "READ:BLOCK?" and o["status"] == "ok" for o in ops) == 12


def test_instrument_errors_are_reported_not_retried(tmp_path):
    srv = faulty(error_rate=1.0)
    try:
        with Macro(srv.resource, journal=tmp_path / "j.sqlite") as m:
            with pytest.raises(InstrumentError, match=r"instrument error -300"):
                m.pulse((0, 1, 0, 2), Pulse.form())
        assert srv.macro.pulse_counts.sum() == 0
        assert sum(line.startswith("PULS:FORM") for line in srv.macro.log) == 1  # sent once
    finally:
        srv.stop()
    ops = Journal(tmp_path / "j.sqlite").ops()
    assert [o["status"] for o in ops if o["command"] == "PULS:FORM"] == ["failed"]


def test_out_of_range_command_reports_the_instrument_error(emulator):
    with Macro(emulator.resource) as m:
        m.limits = Limits(max_abs_v=9.0)  # lab limits wider than the instrument's own
        with pytest.raises(InstrumentError, match=r"-222 \(Data out of range\)"):
            m.pulse((0, 1, 0, 1), Pulse.form(amplitude_v=6.0))


def test_protocol_version_is_checked(monkeypatch, emulator):
    import hw.emulator

    monkeypatch.setattr(hw.emulator, "PROTOCOL_VERSION", "2.0")
    with pytest.raises(ValueError, match="instrument speaks protocol 2.0"):
        Macro(emulator.resource).open()


# ---------------------------------------------------------------- safe state
def test_exception_and_ctrl_c_leave_the_instrument_safe(emulator, tmp_path):
    def interrupt(k):
        if k == 3:
            raise KeyboardInterrupt

    j = tmp_path / "j.sqlite"
    with pytest.raises(KeyboardInterrupt), Macro(emulator.resource, journal=j) as m:
        m.program_random((0, 10, 0, 8), job_id="ctrl-c", progress=False, on_chunk=interrupt)
    assert "ABOR" in emulator.macro.log[-3:]
    assert emulator.macro.vout == 0.0
    journal = Journal(j)
    assert journal.job("ctrl-c")["status"] == "interrupted"
    abort = [o for o in journal.ops() if o["command"] == "ABOR"][-1]
    assert json.loads(abort["params"])["reason"] == "KeyboardInterrupt"
    with Macro(emulator.resource, journal=j) as m:  # resume
        m.program_random((0, 10, 0, 8), job_id="ctrl-c", progress=False)
    np.testing.assert_array_equal(emulator.macro.pulse_counts[:10, :8], 1)


# ---------------------------------------------------------------- resumable jobs
def _mark_pending(journal, job_id, rows):
    """Rewrite the journal as if the process had died with these rows' pulses in flight."""
    for k in rows:
        journal._conn.execute("UPDATE ops SET status = 'pending', result = NULL WHERE id = ?",
                              (journal.last_op(job_id, k)["id"],))
        journal.set_chunk(job_id, k, "pending")


@pytest.mark.parametrize("use_counter", [True, False])
def test_pending_row_is_resolved_before_pulsing(emulator, tmp_path, use_counter):
    """Rows left 'pending' (the process died with the pulse in flight) are resolved on the
    instrument, by the pulse counter or by reading the cells back, never pulsed blindly."""
    j = Journal(tmp_path / "j.sqlite")
    with Macro(emulator.resource, journal=j, use_counter=use_counter) as m:
        assert m.has_counter is use_counter
        m.program_random((0, 6, 0, 8), job_id="p", progress=False)
        _mark_pending(j, "p", [2, 4])            # both ran, but the records say pending
        m.program_random((0, 6, 0, 8), job_id="p", progress=False)
        np.testing.assert_array_equal(emulator.macro.pulse_counts[:6, :8], 1)
        checks = [json.loads(o["params"]) for o in j.ops(job_id="p")
                  if o["command"] == "RESUME-CHECK"]
        # row 2 has a later pending record (row 4): its counter cannot be accounted for
        assert [(c["row"], c["applied"]) for c in checks] == [(2, True), (4, True)]
        assert [c["how"] for c in checks] == ["read-back", "read-back"]  # FORM: cells decide
        assert {o["status"] for o in j.ops(job_id="p") if o["command"] == "PULS:FORM"} \
            == {"ok", "verified-applied"}


def test_pending_row_that_never_ran_is_pulsed_once(emulator, tmp_path):
    """A pending record whose pulse never reached the instrument: the counter has not moved,
    so the row is pulsed (once)."""
    j = Journal(tmp_path / "j.sqlite")
    with Macro(emulator.resource, journal=j) as m:
        j.start_job("q", "program_random", {"region": [0, 3, 0, 8],
                                           "pulse": [3.0, 1000.0, 100.0],
                                           "instrument": m.instrument})
        n0 = m.pulse_counter()
        j.begin("PULS:FORM", {"region": [0, 1, 0, 8], "counter_before": n0}, m.instrument,
                "q", 0)                           # recorded, then the process died
        m.program_random((0, 3, 0, 8), job_id="q", progress=False)
    np.testing.assert_array_equal(emulator.macro.pulse_counts[:3, :8], 1)
    check = [json.loads(o["params"]) for o in j.ops(job_id="q")
             if o["command"] == "RESUME-CHECK"]
    assert check == [{"row": 0, "op": 1, "how": "read-back", "applied": False,
                      "unformed": 0}]


def test_partly_formed_row_pulses_only_its_virgin_cells(emulator, tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    with Macro(emulator.resource, journal=j, use_counter=False) as m:
        m.program_random((0, 6, 0, 8), job_id="p", progress=False)
        _mark_pending(j, "p", [4])
        emulator.macro.array.formed[4, 3:6] = False   # pretend cells 3-5 never formed
        emulator.macro.array.g_us[4, 3:6] = 0.01
        emulator.macro.pulse_counts[4, 3:6] = 0
        m.program_random((0, 6, 0, 8), job_id="p", progress=False)
    np.testing.assert_array_equal(emulator.macro.pulse_counts[:6, :8], 1)
    ops = [o for o in j.ops(job_id="p") if o["command"] == "PULS:FORM"]
    assert json.loads(ops[-1]["params"])["region"] == [4, 5, 3, 6]


def test_stuck_cells_are_told_from_cells_never_pulsed_by_the_counter(tmp_path):
    """A row whose pulse is in doubt and reads partly formed: with the counter, the virgin
    cells are known stuck (the pulse ran) and are not pulsed again."""
    from lsm.crossbar import DeviceParams, FaultParams

    macro = EmulatedMacro(seed=4, device=DeviceParams(faults=FaultParams(p_stuck_hrs=0.1)))
    srv = EmulatorServer(0, macro).start()
    j = Journal(tmp_path / "j.sqlite")
    limits = Limits(formed_threshold_us=2.0)  # cells stuck at g_hrs (1 uS) read as virgin
    try:
        with Macro(srv.resource, journal=j, limits=limits) as m:
            m.program_random((0, 6, 0, 16), job_id="s", progress=False)
            rows = [k for k in range(6) if macro.array.stuck[k, :16].any()]
            assert rows  # the seed puts stuck cells in some of these rows
            _mark_pending(j, "s", rows[-1:])
            m.program_random((0, 6, 0, 16), job_id="s", progress=False)
    finally:
        srv.stop()
    np.testing.assert_array_equal(macro.pulse_counts[:6, :16], 1)
    last = j.last_op("s", rows[-1], command="PULS:%")
    assert json.loads(last["result"])["stuck"] == [int(c) for c in
                                                   np.flatnonzero(macro.array.stuck[rows[-1],
                                                                                    :16])]


def test_a_new_job_does_not_form_cells_already_formed(emulator, tmp_path):
    """A fresh journal or another job id on a formed block: rows are read first, nothing is
    formed twice (the README's lab snippet: CLI job, then MacroWeights with its own job)."""
    with Macro(emulator.resource, journal=tmp_path / "a.sqlite") as m:
        m.program_random((0, 4, 0, 8), job_id="a", progress=False)
    emulator.macro.array.formed[2, 5:] = False          # three cells never formed
    emulator.macro.array.g_us[2, 5:] = 0.01
    emulator.macro.pulse_counts[2, 5:] = 0
    with Macro(emulator.resource, journal=tmp_path / "b.sqlite") as m:
        m.program_random((0, 4, 0, 8), job_id="b", progress=False)
    np.testing.assert_array_equal(emulator.macro.pulse_counts[:4, :8], 1)
    ops = Journal(tmp_path / "b.sqlite").ops(job_id="b")
    assert [json.loads(o["params"])["region"] for o in ops if o["command"] == "PULS:FORM"] \
        == [[2, 3, 5, 8]]
    assert sum(o["command"] == "ALREADY-FORMED" for o in ops) == 4


def test_the_same_job_in_two_processes_at_once_is_refused(emulator, tmp_path):
    from hw.journal import JobBusy

    j = tmp_path / "j.sqlite"
    with Journal(j) as other, other.job_lock("twice"), Macro(emulator.resource, journal=j) as m:
        with pytest.raises(JobBusy, match="'twice' is running in another process"):
            m.program_random((0, 2, 0, 2), job_id="twice", progress=False)
    assert emulator.macro.pulse_counts.sum() == 0


def test_a_restarted_instrument_has_its_done_rows_read_again(tmp_path):
    """The pulse counter went back (an emulator restarted with a fresh array): a resumed job
    checks the rows it had done instead of trusting them."""
    j = tmp_path / "j.sqlite"
    srv = EmulatorServer(0, EmulatedMacro(seed=1)).start()
    try:
        with Macro(srv.resource, journal=j) as m:
            m.program_random((0, 3, 0, 4), job_id="r", progress=False, on_chunk=lambda k: (
                _ for _ in ()).throw(KeyboardInterrupt) if k == 1 else None)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    srv = EmulatorServer(0, EmulatedMacro(seed=1)).start()   # a new array, counter at 0
    try:
        with Macro(srv.resource, journal=j) as m:
            m.program_random((0, 3, 0, 4), job_id="r", progress=False)
        np.testing.assert_array_equal(srv.macro.pulse_counts[:3, :4], 1)
    finally:
        srv.stop()
    assert any(o["command"] == "COUNTER-RESET" for o in Journal(j).ops(job_id="r"))


def test_job_without_a_journal_is_refused(emulator):
    with Macro(emulator.resource) as m, pytest.raises(ValueError, match="without a journal"):
        m.program_random((0, 2, 0, 2), job_id="no-journal", progress=False)
    assert emulator.macro.pulse_counts.sum() == 0


def test_resume_after_a_killed_process(emulator, tmp_path):
    journal = tmp_path / "lab.sqlite"
    script = tmp_path / "job.py"
    script.write_text(
        "import sys, time\n"
        "from hw import Macro\n"
        "with Macro(sys.argv[1], journal=sys.argv[2]) as m:\n"
        "    m.program_random((0, 200, 0, 64), job_id='kill-me', progress=False,\n"
        "                     on_chunk=lambda k: time.sleep(0.01))\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, str(script), emulator.resource, str(journal)],
                            env=env)
    j = Journal(journal)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            done = sum(s == "done" for s in j.chunk_status("kill-me").values())
        except Exception:  # noqa: BLE001 - the job row may not exist yet
            done = 0
        if done >= 20:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    rows_done = sum(s == "done" for s in j.chunk_status("kill-me").values())
    assert 20 <= rows_done < 200
    assert emulator.macro.pulse_counts[:200, :64].sum() < 200 * 64
    with Macro(emulator.resource, journal=j) as m:
        m.program_random((0, 200, 0, 64), job_id="kill-me", progress=False)
    np.testing.assert_array_equal(emulator.macro.pulse_counts[:200, :64], 1)
    assert j.job("kill-me")["status"] == "done"


def test_job_id_with_other_parameters_is_refused(emulator, tmp_path):
    from hw.journal import JobMismatch

    with Macro(emulator.resource, journal=tmp_path / "j.sqlite") as m:
        m.program_random((0, 2, 0, 2), job_id="x", progress=False)
        with pytest.raises(JobMismatch, match="exists with other parameters"):
            m.program_random((0, 3, 0, 2), job_id="x", progress=False)


# ---------------------------------------------------------------- binary blocks
@given(st.binary(max_size=3000))
def test_block_round_trip(payload):
    assert parse_block(encode_block(payload) + b"\n") == payload
    assert parse_block(encode_block(payload), terminated=False) == payload


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(0, 400))
def test_truncated_or_random_blocks_raise_block_error_only(payload, cut):
    good = encode_block(payload) + b"\n"
    if cut < len(good) - 1:
        with pytest.raises(BlockError):
            parse_block(good[:cut])
    try:
        parse_block(payload)  # arbitrary bytes: a payload, or a BlockError, nothing else
    except BlockError:
        pass


def test_block_garbage_after_payload():
    with pytest.raises(BlockError, match="unexpected byte"):
        parse_block(encode_block(b"abc") + b"xyz")


# ---------------------------------------------------------------- LSM on the chip
def test_macro_weights_read_mode_reproduces_crossbar_weights(tmp_path):
    from hw.weights import MacroWeights
    from lsm import LSM, LSMConfig
    from lsm.weights import CrossbarWeights

    cfg = LSMConfig(n_inputs=40, n_neurons=30, n_bins=20, seed=6)
    srv = EmulatorServer(0, EmulatedMacro(seed=6)).start()
    try:
        chip = LSM(cfg, weights=MacroWeights(srv.resource, journal=tmp_path / "j.sqlite"))
        again = LSM(cfg, weights=MacroWeights(srv.resource, journal=tmp_path / "j.sqlite"))
        assert srv.macro.pulse_counts.max() == 1  # the second build resumed the done job
        # without a journal the block is read first: formed already, so not formed again
        LSM(cfg, weights=MacroWeights(srv.resource))
        assert srv.macro.pulse_counts.max() == 1
        assert again.provenance["job_id"] == chip.provenance["job_id"]
    finally:
        srv.stop()
    sim = LSM(cfg, weights=CrossbarWeights())
    # the same formed conductances; the read that made the weights has its own read noise
    # (the job reads every row before and after forming it): 0.15 % of G, clipped at 2 sigma
    g_max = srv.macro.array.conductance().max()
    tol = cfg.w_in_const * 2 * (2 * 0.0015 * g_max)
    assert 0 < np.abs(chip.w_in - sim.w_in).max() < tol
    assert 0 < np.abs(chip.w_rec - sim.w_rec).max() < tol
    x = (np.random.default_rng(0).random((30, 20, 40)) < 0.15).astype(np.uint8)
    agree = (chip.encode(x, features="binned", progress=False)
             == sim.encode(x, features="binned", progress=False)).mean()
    assert agree > 0.99
    assert chip.provenance["source"] == "macro"


def test_macro_weights_in_loop_runs_on_the_emulator():
    from hw.weights import MacroWeights
    from lsm import LSM, LSMConfig

    cfg = LSMConfig(n_inputs=16, n_neurons=12, n_bins=15, seed=2, w_in_const=0.1,
                    w_rec_const=0.05)
    srv = EmulatorServer(0, EmulatedMacro(seed=2)).start()
    try:
        chip = LSM(cfg, weights=MacroWeights(srv.resource, mode="in_loop"))
        x = (np.random.default_rng(3).random((12, 15, 16)) < 0.3).astype(np.uint8)
        vmm_before = sum(line.startswith("VMM?") for line in srv.macro.log)
        loop = chip.encode(x, features="binned", progress=False)
        vmm_calls = sum(line.startswith("VMM?") for line in srv.macro.log) - vmm_before
    finally:
        srv.stop()
    static = LSM(cfg, weights=(chip.w_in, chip.w_rec)).encode(x, features="binned",
                                                              progress=False)
    assert vmm_calls >= 15  # every bin went through the array (two multiplies: consts differ)
    assert loop.sum() > 0 and (loop == static).mean() > 0.95


def test_macro_in_loop_counts_time_windows_of_its_own_spikes():
    """One in-loop pass records the rasters and the window counts together: the counts are the
    rasters summed per window (the chip draws fresh noise each pass, so one pass it must be)."""
    from test_features import windows_of_raster

    from hw.weights import MacroWeights
    from lsm import LSM, EventBatch, LSMConfig

    cfg = LSMConfig(n_inputs=16, n_neurons=12, n_bins=15, seed=2, w_in_const=0.1,
                    w_rec_const=0.1)
    srv = EmulatorServer(0, EmulatedMacro(seed=2)).start()
    try:
        chip = LSM(cfg, weights=MacroWeights(srv.resource, mode="in_loop"))
        x = EventBatch.from_raster((np.random.default_rng(3).random((9, 15, 16)) < 0.3)
                                   .astype(np.uint8))
        counts = np.zeros((9, 4, 12), np.int32)
        spikes = np.zeros((9, 15, 12), np.uint8)
        chip.weight_set.in_loop.encode(events=x, decay=0.9, v_th=5.0, reset="zero",
                                       counts=counts, spikes=spikes, sample_offset=0)
    finally:
        srv.stop()
    assert spikes.sum() > 0
    np.testing.assert_array_equal(counts.reshape(9, -1), windows_of_raster(spikes, 4))


def test_the_chip_weight_source_is_a_fresh_emulated_die_per_seed():
    import hw.weights  # noqa: F401  (registers "chip")
    from hw.weights import EmulatedChipWeights, MacroWeights
    from lsm import LSM, LSMConfig
    from lsm.experiments.common import make_weights

    cfg = LSMConfig(n_inputs=16, n_neurons=12, n_bins=5, seed=4)
    a = LSM(cfg, weights=make_weights("chip"))
    b = LSM(cfg, weights=EmulatedChipWeights())
    assert isinstance(make_weights("chip"), EmulatedChipWeights)
    # the same die: the same weights and the same provenance (the feature cache's key)
    np.testing.assert_array_equal(a.w_in, b.w_in)
    assert a.provenance == b.provenance and a.provenance["source"] == "macro"
    assert a.provenance["die_seed"] == 4 and "4" in a.provenance["resource"]
    # what the lab path gives on that die, served by hand
    srv = EmulatorServer(0, EmulatedMacro(seed=4)).start()
    try:
        lab = LSM(cfg, weights=MacroWeights(srv.resource))
    finally:
        srv.stop()
    np.testing.assert_array_equal(a.w_rec, lab.w_rec)
    other = LSM(cfg.replace(seed=5), weights=make_weights("chip"))
    assert not np.array_equal(other.w_in, a.w_in)


# ---------------------------------------------------------------- CLI and the real chip
def test_cli_hw_commands(emulator, tmp_path, capsys):
    from lsm.cli import main

    r = ["--resource", emulator.resource, "--journal", str(tmp_path / "j.sqlite")]
    assert main(["hw", "idn", *r]) == 0
    assert json.loads(capsys.readouterr().out)["geometry"] == [512, 512]
    assert main(["hw", "program-random", "--region", "0,8,0,8", "--job", "c", "--no-progress",
                 *r]) == 0
    capsys.readouterr()
    out = tmp_path / "map.npz"
    assert main(["hw", "read-map", "--region", "0,8,0,8", "--out", str(out), *r]) == 0
    info = json.loads(capsys.readouterr().out)
    assert Path(info["png"]).exists() and out.exists()
    np.savez(tmp_path / "x.npz", inputs=np.eye(8, dtype=np.uint8))
    assert main(["hw", "vmm", str(tmp_path / "x.npz"), "--region", "0,8,0,8", "--out",
                 str(tmp_path / "codes.npz"), *r]) == 0
    capsys.readouterr()
    assert main(["hw", "journal", "--job", "c", *r[2:]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["job"]["status"] == "done"
    rx = emulator.macro.rx
    assert main(["hw", "program-random", "--amplitude-v", "9", *r]) == 2
    assert "max_abs_v" in capsys.readouterr().err
    assert main(["hw", "read-map", "--region", "0,600,0,8", "--limits", str(tmp_path / "l.toml"),
                 *r]) == 2   # no such file
    assert main(["hw", "read-map", "--region", "0,8,8,0", *r]) == 2
    assert "0 <= c0 < c1" in capsys.readouterr().err
    assert emulator.macro.rx == rx   # refused before connecting: not a byte went out


@pytest.mark.chip
def test_real_chip_identifies(chip_resource):
    with Macro(chip_resource) as m:
        assert m.idn["protocol"].split(".")[0] == "1"


def test_hardware_walkthrough_example(tmp_path):
    from conftest import load_script

    mod = load_script("examples/hardware_walkthrough.py")
    s = mod.main(["--out", str(tmp_path), "--samples", "6"])
    assert 20 < s["map_mean_us"] < 35 and s["journal_ops"] > 114
    assert s["spike_agreement"] > 0.9
    assert (tmp_path / "map.h5").exists() and (tmp_path / "cal.h5").exists()
    # the twin's forming statistics are those of the map formed on the same chip
    assert s["twin_mean_us"] == pytest.approx(s["map_mean_us"], rel=0.05)
    assert 0.2 * s["read_mode_rate"] < s["twin_rate"] < 5 * s["read_mode_rate"]
    ops = Journal(tmp_path / "lab.sqlite").ops()
    # formed once, one row each: the LSM block's 114 rows and the calibrated region's 64
    assert sum(o["command"] == "PULS:FORM" for o in ops) == 114 + 64


def test_ascii_dialogue_on_pyvisa_sim():
    """The same driver over pyvisa-sim's simulated resource (no socket at all)."""
    yaml = Path(__file__).parents[1] / "hw" / "imc40.sim.yaml"
    with Macro("TCPIP0::127.0.0.1::5025::SOCKET", backend=f"{yaml}@sim") as m:
        assert m.idn["serial"] == "SIM-0" and m.geometry == (512, 512)
        assert m.status() == {"state": "IDLE", "vout": 0.0, "pulses": 0}
        assert m.adc().bits == 14
        with pytest.raises(LimitError):
            m.pulse((0, 1, 0, 1), Pulse.form(amplitude_v=5.0))


def test_measured_map_file_gives_the_chip_weights(emulator, tmp_path):
    """A map read on the (emulated) chip and exported, then simulated from the file."""
    from lsm import LSM, LSMConfig
    from lsm.crossbar import DifferentialMapping
    from lsm.weights import MeasuredWeights

    cfg = LSMConfig(n_inputs=20, n_neurons=10, n_bins=10)
    with Macro(emulator.resource) as m:
        m.program_random((0, 64, 0, 64), progress=False)
        g = m.read_map((0, 64, 0, 64))
    for name in ("map.npz", "map.h5"):
        export_map(tmp_path / name, g, {"repeats": 1})
        lsm = LSM(cfg, weights=MeasuredWeights(tmp_path / name, offset=(5, 7)))
        block = g.astype(np.float32).astype(np.float64)[5:35, 7:27]
        w_in, w_rec = DifferentialMapping(20, 10).weights(block, 0.07, 0.07)
        np.testing.assert_array_equal(lsm.w_in, w_in)
        np.testing.assert_array_equal(lsm.w_rec, w_rec)
        assert lsm.provenance["source"] == "measured"
    with pytest.raises(ValueError, match="need 30 rows x 20 columns"):
        LSM(cfg, weights=MeasuredWeights(tmp_path / "map.npz", offset=(50, 50)))
    with pytest.raises(FileNotFoundError, match="measured map not found"):
        LSM(cfg, weights=MeasuredWeights(tmp_path / "none.npz"))


# ---------------------------------------------------------------- long multiplies, safe state
def test_long_vmm_gets_a_timeout_scaled_to_its_work(emulator):
    """A multiply that takes longer than the reply timeout is not cut off (and then retried
    while the instrument is still busy): each VMM? call's timeout grows with its work."""
    x = (np.random.default_rng(0).random((600, 456)) < 0.05).astype(np.uint8)
    with Macro(emulator.resource, timeout_ms=200, vmm_batch=600) as m:
        codes = m.vmm((0, 456), (0, 400), x)
    assert codes.shape == (600, 400)
    assert sum(line.startswith("VMM?") for line in emulator.macro.log) == 1  # not retried
    with pytest.raises(LinkError, match=r"VMM\?: no valid reply after 1 attempts"), \
            Macro(emulator.resource, timeout_ms=200, retries=0, vmm_batch=600,
                  vmm_us_per_cell=0.0) as m:
        m.vmm((0, 456), (0, 400), x)   # the same call with a flat 200 ms timeout ...
    assert emulator.macro.vout == 0.0  # ... and the safe state waited for the busy instrument


def test_a_failed_safe_state_is_reported_after_the_first_error():
    from hw.macro import SafeStateError

    srv = EmulatorServer(0, EmulatedMacro(seed=1)).start()
    with pytest.raises(SafeStateError) as exc, \
            Macro(srv.resource, timeout_ms=200, retries=0) as m:
        m.read_map((0, 2, 0, 2))
        srv.stop()                         # the instrument goes away ...
        raise RuntimeError("the first problem")   # ... and then something else fails
    message = str(exc.value)
    assert message.startswith("RuntimeError: the first problem; and then could not bring the "
                              "instrument to a safe state")
    assert isinstance(exc.value.__cause__, RuntimeError)


# ---------------------------------------------------------------- bad input to the lab
LIMITS_CASES = {
    "negative max_vectors": ("max_vectors = -5", "max_vectors must be an integer in [1, 4096]"),
    "zero max_vectors": ("max_vectors = 0", "max_vectors must be an integer in [1, 4096]"),
    "float max_vectors": ("max_vectors = 64.0", "max_vectors must be an integer"),
    "bool voltage": ("max_abs_v = true", "max_abs_v must be a positive number, got True"),
    "string voltage": ('max_abs_v = "3"', "max_abs_v must be a positive number, got '3'"),
    "nan width": ("max_width_ns = nan", "max_width_ns must be a positive number"),
    "infinite compliance": ("max_compliance_ua = inf", "max_compliance_ua must be a positive"),
    "flat regions": ("allowed_regions = [0, 512, 0, 512]", "allowed region 0 must be"),
    "empty regions": ("allowed_regions = []", "allowed_regions must be a non-empty list"),
    "float region": ("allowed_regions = [[0, 512.5, 0, 512]]", "allowed region"),
    "reversed region": ("allowed_regions = [[10, 5, 0, 512]]", "allowed region"),
    "bool region": ("allowed_regions = [[0, true, 0, 512]]", "allowed region"),
    "unknown key": ("max_volts = 3", "unknown limit(s) ['max_volts']"),
    "not toml": ("max_abs_v = = 3", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(LIMITS_CASES))
def test_bad_limits_files_are_refused_before_connecting(tmp_path, capsys, case):
    from lsm.cli import main

    body, message = LIMITS_CASES[case]
    path = tmp_path / "limits.toml"
    path.write_text(f"[limits]\n{body}\n")
    with pytest.raises(LimitError) as exc:
        Limits.load(path)
    assert message in str(exc.value) and str(path) in str(exc.value)
    np.savez(tmp_path / "x.npz", inputs=np.eye(4, dtype=np.uint8))
    code = main(["hw", "vmm", str(tmp_path / "x.npz"), "--region", "0,4,0,4", "--limits",
                 str(path), "--resource", "TCPIP0::127.0.0.1::1::SOCKET",
                 "--out", str(tmp_path / "codes.npz")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "codes.npz").exists()


def test_limits_file_that_is_a_folder_or_not_utf8(tmp_path):
    with pytest.raises(LimitError, match="is a directory"):
        Limits.load(tmp_path)
    (tmp_path / "l.toml").write_bytes(b"[limits]\nmax_abs_v = 3 # \xff\n")
    with pytest.raises(LimitError, match="not UTF-8"):
        Limits.load(tmp_path / "l.toml")


def _hw_cli_cases(tmp_path):
    """(name, argv, text the error must contain) for bad input to `lsm hw ...`."""
    np.savez(tmp_path / "ok.npz", inputs=np.eye(4, dtype=np.uint8))
    np.savez(tmp_path / "float.npz", inputs=np.eye(4) * 0.5)
    np.savez(tmp_path / "wide.npz", inputs=np.ones((2, 7), np.uint8))
    np.savez(tmp_path / "two.npz", inputs=np.full((2, 4), 2, np.uint8))
    np.savez(tmp_path / "nokey.npz", x=np.eye(4, dtype=np.uint8))
    np.savez(tmp_path / "obj.npz", inputs=np.array([None, 1], dtype=object))
    np.save(tmp_path / "bare.npy", np.eye(4, dtype=np.uint8))
    (tmp_path / "bare.npy").rename(tmp_path / "bare.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "notdb.sqlite").write_text("not a database, just text" * 100)
    out = ["--out", str(tmp_path / "codes.npz")]
    reg = ["--region", "0,4,0,4"]
    return [
        ("vmm float inputs", ["vmm", str(tmp_path / "float.npz"), *reg, *out], "float64"),
        ("vmm wrong width", ["vmm", str(tmp_path / "wide.npz"), *reg, *out], "(n_vectors, 4)"),
        ("vmm non-binary", ["vmm", str(tmp_path / "two.npz"), *reg, *out], "0/1"),
        ("vmm no inputs", ["vmm", str(tmp_path / "nokey.npz"), *reg, *out], "no array 'inputs'"),
        ("vmm object array", ["vmm", str(tmp_path / "obj.npz"), *reg, *out], "object"),
        ("vmm bare npy", ["vmm", str(tmp_path / "bare.npz"), *reg, *out], "bare.npz"),
        ("vmm not a zip", ["vmm", str(tmp_path / "text.npz"), *reg, *out], "text.npz"),
        ("vmm folder", ["vmm", str(tmp_path / "folder.npz"), *reg, *out], "folder.npz"),
        ("vmm missing", ["vmm", str(tmp_path / "none.npz"), *reg, *out], "none.npz"),
        ("vmm out folder", ["vmm", str(tmp_path / "ok.npz"), *reg, "--out", str(tmp_path)],
         "is a directory"),
        ("vmm out suffix", ["vmm", str(tmp_path / "ok.npz"), *reg, "--out",
                            str(tmp_path / "codes.txt")], "must end in"),
        ("read-map out folder", ["read-map", *reg, "--out", str(tmp_path / "folder.npz")],
         "is a directory"),
        ("read-map under a file", ["read-map", *reg, "--out", str(tmp_path / "ok.npz" / "m.h5")],
         "is a file, not a folder"),
        ("bad region", ["read-map", "--region", "0,4,x,4", *out[:0]], "--region"),
        ("program without journal", ["program-random", *reg], "needs --journal"),
        ("journal not a database", ["journal", "--journal", str(tmp_path / "notdb.sqlite")],
         "notdb.sqlite"),
        ("journal is a folder", ["idn", "--journal", str(tmp_path / "folder.npz")],
         "folder.npz"),
    ]


def test_bad_input_to_lsm_hw_is_an_error_not_a_traceback(tmp_path, capsys, emulator):
    from lsm.cli import main

    for name, argv, text in _hw_cli_cases(tmp_path):
        before = sorted(p.name for p in tmp_path.rglob("*"))
        extra = [] if argv[0] == "journal" else ["--resource", emulator.resource]
        code = main(["hw", *argv, *extra])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        argparse_refused = err.startswith("usage: lsm hw") and ": error: argument --" in err
        assert (err.startswith("lsm: error: ") or argparse_refused) and text in err, (name, err)
        assert sorted(p.name for p in tmp_path.rglob("*")) == before, name  # nothing written
    assert emulator.macro.pulse_counts.sum() == 0


def test_an_instrument_without_the_pulse_counter(monkeypatch, tmp_path):
    """A protocol 1.0 instrument (no PULS:COUN?): the driver never asks for the counter and
    resolves FORM pulses by reading the cells back."""
    import hw.emulator

    monkeypatch.setattr(hw.emulator, "PROTOCOL_VERSION", "1.0")
    srv = EmulatorServer(0, EmulatedMacro(seed=1)).start()
    try:
        with Macro(srv.resource, journal=tmp_path / "j.sqlite") as m:
            assert m.idn["protocol"] == "1.0" and not m.has_counter
            m.program_random((0, 4, 0, 6), job_id="old", progress=False)
        assert not any(line.startswith("PULS:COUN?") for line in srv.macro.log)
        np.testing.assert_array_equal(srv.macro.pulse_counts[:4, :6], 1)
    finally:
        srv.stop()
