"""Calibration round trip on the emulator: a macro configured with known, non-default parameters
is characterised over the real driver and TCP socket, and the fits find those parameters again;
the twin built from the file behaves like the emulated chip; a calibration killed at any point
resumes without pulsing any cell twice; the command line refuses bad input before any pulse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from calibration.run import CalibrationConfig, run_calibration, work_folder_for
from hw import Journal, Macro
from hw.emulator import EmulatedMacro, EmulatorServer
from lsm import LSM, LSMConfig
from lsm.cli import main
from lsm.config import tomllib
from lsm.crossbar import ADC, DeviceParams, Pulse, read_calibration
from lsm.crossbar.distributions import FormingLaw
from lsm.weights import TwinWeights

ROOT = Path(__file__).resolve().parents[1]
DEVICE_FILE = ROOT / "examples" / "devices" / "noisy_chip.toml"


def noisy_chip() -> tuple[DeviceParams, ADC]:
    """The non-default chip of examples/devices/noisy_chip.toml (what `lsm hw emulator
    --device` serves)."""
    doc = tomllib.loads(DEVICE_FILE.read_text())
    adc = ADC(**doc.pop("adc"))
    return DeviceParams.from_dict(doc), adc


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """One full calibration of a 128 x 64 region of the noisy chip (about 3 s)."""
    device, adc = noisy_chip()
    em = EmulatedMacro(device=device, adc=adc, seed=3)
    srv = EmulatorServer(0, em).start()
    out = tmp_path_factory.mktemp("cal") / "cal.h5"
    try:
        with Macro(srv.resource, journal=Journal(out.parent / "lab.sqlite")) as m:
            cal = run_calibration(m, CalibrationConfig(region=(0, 128, 0, 64)), out,
                                  progress=False)
        yield cal, em, device, adc, srv
    finally:
        srv.stop()


def test_the_fits_recover_the_emulators_parameters(calibrated):
    cal, em, device, adc, _ = calibrated
    again = read_calibration(cal.path)
    assert again.sha256 and set(again.sections) == {"forming", "read_noise", "drift", "stuck",
                                                    "adc", "write_verify"}
    s = again.sections
    # forming: the model's law at the calibration pulse (truncated normal), within 2 %
    prog = device.programming
    true_mean, true_std = FormingLaw(*prog.form_stats(Pulse.form())[:1],
                                     prog.form_cv).mean_std()
    assert s["forming"]["mean_us"] == pytest.approx(true_mean, rel=0.02)
    assert s["forming"]["std_us"] == pytest.approx(true_std, rel=0.02)
    assert s["forming"]["chosen"] in ("forming-law", "gaussian", "mixture")
    fam = s["forming"]["families"]
    assert fam["lognormal"]["aic"] > fam["gaussian"]["aic"]  # the wrong shape loses
    # read noise within 10 %, its clip found too
    assert s["read_noise"]["rel"] == pytest.approx(device.read.read_noise_rel, rel=0.10)
    assert s["read_noise"]["clip_sigma"] == pytest.approx(device.read.read_noise_clip, rel=0.10)
    # drift exponent within 10 %, its cell-to-cell spread within 25 %
    assert s["drift"]["nu"] == pytest.approx(device.drift.nu, rel=0.10)
    assert s["drift"]["nu_std"] == pytest.approx(device.drift.nu_std, rel=0.25)
    # stuck cells: the map is the emulator's fault map, and the configured rate lies in the
    # binomial interval of the measured one
    truth = em.array.stuck[:128, :64]
    np.testing.assert_array_equal(again.stuck > 0, truth > 0)
    np.testing.assert_array_equal(again.stuck == 1, truth == 1)
    p_true = device.faults.p_stuck_hrs + device.faults.p_stuck_lrs
    assert s["stuck"]["ci_low"] <= p_true <= s["stuck"]["ci_high"]
    # the readout chain: gain and offset of the emulator's ADC to its quantisation
    gain = adc.r_tia_kohm / 1000.0 / adc.lsb_v
    offset = -adc.v_min / adc.lsb_v
    assert s["adc"]["bits"] == adc.bits
    assert s["adc"]["gain_codes_per_ua"] == pytest.approx(gain, rel=1e-3)
    assert abs(s["adc"]["offset_codes"] - offset) < 0.25
    assert s["adc"]["saturation_ua"] == pytest.approx(adc.full_scale_ua[1], rel=1e-3)
    assert s["adc"]["saturation_seen_ua"] > 0  # 128 rows on: past the full scale
    # write-verify: every healthy cell of the block converged
    wv = s["write_verify"]
    stuck_in_block = int((truth[:8, :16] > 0).sum())
    assert wv["converged_fraction"] == pytest.approx(1 - stuck_in_block / 128)


def test_the_twin_reproduces_the_readout_chain_and_the_cells(calibrated):
    from lsm.crossbar.twin import twin_adc, twin_device

    cal, em, device, adc, _ = calibrated
    i = np.linspace(0, 500, 2001)
    # codes of the twin's ADC within one code of the chip's (the offset is known to 0.25)
    assert np.abs(twin_adc(cal).codes(i) - adc.codes(i)).max() <= 1
    twin = twin_device(cal)
    assert twin.read.read_noise_rel == pytest.approx(device.read.read_noise_rel, rel=0.1)
    assert twin.faults.p_stuck_hrs + twin.faults.p_stuck_lrs == pytest.approx(
        cal.sections["stuck"]["rate"])
    assert twin.programming.form_stats(Pulse.form())[0] == pytest.approx(
        device.programming.form_stats(Pulse.form())[0], rel=0.02)


def test_an_lsm_on_the_twin_matches_the_emulator_backed_lsm(calibrated, tmp_path):
    """Six reservoirs formed on the emulated chip against six drawn from the fitted twin:
    per-reservoir mean firing rate and weight spread (Welch t-test, p > 0.01; means within
    25 % for the rate, whose reservoir-to-reservoir spread is about 15 %, and 5 % for the
    weight spread), and the pooled weights (two-sample KS, p > 0.01).

    The blocks hold 48 x 64 cells: in much smaller ones the firing rate hangs on the two or
    three stuck-high cells (100 uS, the largest weights by far) a block happens to hold, a
    Poisson count that six blocks cannot pin down."""
    from hw.weights import MacroWeights

    cal, em, device, adc, srv = calibrated
    cfg = LSMConfig(n_inputs=16, n_neurons=32, n_bins=30, w_in_const=0.1, w_rec_const=0.02)
    x = (np.random.default_rng(0).random((40, 30, 16)) < 0.2).astype(np.uint8)
    chip, twin = {"rate": [], "w_std": [], "w": []}, {"rate": [], "w_std": [], "w": []}
    for k in range(6):
        # with a journal: stuck cells read as formed in a virgin block, which only a journaled
        # job can tell from a half-formed one
        sources = ((chip, MacroWeights(srv.resource, journal=tmp_path / "j.sqlite",
                                       offset=(160 + 48 * (k // 3), 64 * (k % 3)))),
                   (twin, TwinWeights(cal.path, mode="draw", seed=k, read_time_s=1.0)))
        for out, source in sources:
            lsm = LSM(cfg, weights=source)
            w = np.concatenate([lsm.w_in.ravel(), lsm.w_rec.ravel()])
            out["rate"].append(float(lsm.encode(x, progress=False).mean()))
            out["w_std"].append(float(w.std()))
            out["w"].append(w)
    for key, tol in (("rate", 0.25), ("w_std", 0.05)):
        assert stats.ttest_ind(chip[key], twin[key], equal_var=False).pvalue > 0.01, key
        assert np.mean(twin[key]) == pytest.approx(np.mean(chip[key]), rel=tol), key
    assert stats.ks_2samp(np.concatenate(chip["w"]), np.concatenate(twin["w"])).pvalue > 0.01


# ---------------------------------------------------------------------- kill and resume
class _Killer:
    """Raise KeyboardInterrupt (as Ctrl-C) at the n-th call of a method, before or after it
    runs."""

    def __init__(self, owner, name, n, after=False):
        self.owner, self.name, self.n, self.after, self.calls = owner, name, n, after, 0
        self.inner = getattr(owner, name)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n and not self.after:
            raise KeyboardInterrupt
        out = self.inner(*args, **kwargs)
        if self.calls == self.n:
            raise KeyboardInterrupt
        return out


def _applied_pulses_per_cell(journal: Journal, shape) -> np.ndarray:
    counts = np.zeros(shape, int)
    for o in journal.ops():
        if o["command"].startswith("PULS:") and o["status"] in ("ok", "verified-applied"):
            r0, r1, c0, c1 = json.loads(o["params"])["region"]
            counts[r0:r1, c0:c1] += 1
    return counts


@pytest.mark.slow
def test_a_killed_calibration_resumes_and_pulses_every_cell_at_most_once(tmp_path):
    device, adc = noisy_chip()
    em = EmulatedMacro(device=device, adc=adc, seed=5)
    srv = EmulatorServer(0, em).start()
    out = tmp_path / "cal.h5"
    journal = Journal(tmp_path / "lab.sqlite")
    config = CalibrationConfig(region=(0, 24, 0, 32), verify_shape=(4, 8))
    kills = [("send_pulse", 10, False),   # forming, before row 10's pulse goes out
             ("settle", 3, False),       # a pulse sent, its record left pending
             ("read_map", 45, False),    # among the drift reads
             ("send_pulse", 2, True),    # the stuck test's SET has just run
             ("send_pulse", 25, False)]  # inside write-verify
    try:
        for name, n, after in kills:
            with Macro(srv.resource, journal=journal) as m:
                owner = journal if name == "settle" else m
                killer = _Killer(owner, name, n, after)
                setattr(owner, name, killer)
                try:
                    with pytest.raises(KeyboardInterrupt):
                        run_calibration(m, config, out, progress=False)
                finally:
                    if owner is journal:
                        journal.settle = killer.inner
            assert not out.exists()  # no half-written calibration
        with Macro(srv.resource, journal=journal) as m:
            cal = run_calibration(m, config, out, progress=False)
    finally:
        srv.stop()
    pending = [o for o in journal.ops() if o["status"] in ("pending", "unresolved")]
    assert not pending
    # what the instrument counted is what the journal says ran: nothing unrecorded, nothing
    # twice; outside the write-verify block every cell got at most FORM + RESET + SET
    counted = em.pulse_counts[:24, :32].astype(int)
    np.testing.assert_array_equal(counted, _applied_pulses_per_cell(journal, (24, 32)))
    outside = np.ones((24, 32), bool)
    outside[:4, :8] = False
    assert counted[outside].max() <= 3
    healthy = em.array.stuck[:24, :32] == 0
    assert (counted[outside & healthy] == 3).all()  # and every healthy one got all three
    assert set(cal.sections) == {"forming", "read_noise", "drift", "stuck", "adc",
                                 "write_verify"}
    np.testing.assert_array_equal(cal.stuck > 0, em.array.stuck[:24, :32] > 0)


# ---------------------------------------------------------------------- command line
def test_cli_refuses_bad_requests_before_any_pulse(tmp_path, capsys):
    em = EmulatedMacro(seed=0)
    srv = EmulatorServer(0, em).start()
    try:
        base = ["calibrate", "run", "--resource", srv.resource, "--no-progress"]
        cases = [
            (["--procedures", "forming,bogus", "--out", str(tmp_path / "a.h5")], "bogus"),
            (["--out", str(tmp_path / "a.npz")], "HDF5"),
            (["--region", "0,600,0,10", "--out", str(tmp_path / "a.h5")], "region"),
            (["--amplitude-v", "9", "--out", str(tmp_path / "a.h5")], "amplitude"),
            (["--drift-ages-s", "1,1", "--out", str(tmp_path / "a.h5")], "drift_ages_s"),
            (["--region", "0,4,0,4", "--out", str(tmp_path / "a.h5")], "at least 64"),
            (["--out", str(tmp_path / "notes.h5")], "not a calibration file"),
        ]
        (tmp_path / "notes.h5").write_text("my notes")  # never replaced by a calibration
        for extra, message in cases:
            assert main(base + extra) == 2, extra
            err = capsys.readouterr().err
            assert err.startswith("lsm: error:") and message in err and "Traceback" not in err
        assert em.pulse_commands == 0
        bad = tmp_path / "bad.h5"
        bad.write_bytes(b"not a calibration")
        assert main(["calibrate", "report", str(bad)]) == 2
        assert "not a readable calibration file" in capsys.readouterr().err
        assert main(["calibrate", "compare", str(tmp_path / "missing.h5")]) == 2
    finally:
        srv.stop()


@pytest.mark.slow
def test_cli_run_report_compare_end_to_end(tmp_path, capsys):
    """`lsm calibrate run`, `report` and `compare` on the emulated noisy chip."""
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    device, adc = noisy_chip()
    srv = EmulatorServer(0, EmulatedMacro(device=device, adc=adc, seed=1)).start()
    out = tmp_path / "cal.h5"
    try:
        assert main(["calibrate", "run", "--resource", srv.resource, "--region", "0,96,0,48",
                     "--out", str(out), "--no-progress"]) == 0
        text = capsys.readouterr().out
        assert text.index("calibration plan") < text.index("read noise")  # plan first
        assert re.search(r"read noise\s+0\.(29|30)\d %", text), text
        assert out.exists() and (work_folder_for(out) / "plan.json").exists()
        # run again: everything is in the work folder, nothing is pulsed
        before = srv.macro.pulse_commands
        assert main(["calibrate", "run", "--resource", srv.resource, "--region", "0,96,0,48",
                     "--out", str(out), "--no-progress", "--json"]) == 0
        assert srv.macro.pulse_commands == before
        summary = json.loads(capsys.readouterr().out)
        assert summary["read_noise"]["rel"] == pytest.approx(0.003, rel=0.1)
        assert main(["calibrate", "report", str(out), "--out", str(tmp_path / "rep"),
                     "--json"]) == 0
        pngs = json.loads(capsys.readouterr().out)["pngs"]
        assert {"forming", "maps", "drift", "adc", "write_verify", "noise_vs_g"} <= set(pngs)
        data = tmp_path / "td.hdf5"
        make_ntidigits_twin(data, n_speakers=8, takes=1, seed=0, progress=False, workers=1)
        assert main(["calibrate", "compare", str(out), "--resource", srv.resource,
                     "--ntidigits", str(data), "--n-neurons", "20", "--n-train", "40",
                     "--n-test", "20", "--n-draws", "2", "--chip-offset", "96,0",
                     "--runs", str(tmp_path / "runs"), "--no-progress", "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
    finally:
        srv.stop()
    assert set(res["sources"]) == {"chip", "twin-draw", "twin-map", "gaussian"}
    assert res["chance"] < res["no_reservoir_accuracy"] <= 1  # printed beside the reservoirs
    assert Path(res["png"]).exists() and (Path(res["run_dir"]) / "config.toml").exists()
    assert res["sha256"] == read_calibration(out).sha256
