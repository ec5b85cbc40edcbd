"""Calibration files (lsm.crossbar.calfile), the digital twin built from one (lsm.crossbar.twin)
and the reservoir weights it gives (lsm.weights.TwinWeights).

The calibrations here are fitted by the real fit functions (calibration.fits) from synthetic
measurements, as in tests/test_calibration_report.py, on a region large enough for a small LSM.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re

import h5py
import numpy as np
import pytest
from scipy import stats

from calibration.fits import classify_stuck, fit_adc, fit_drift, fit_forming, fit_read_noise
from lsm.config import LSMConfig
from lsm.crossbar import (
    ADC,
    STUCK_NONE,
    CrossbarArray,
    DeviceParams,
    DifferentialMapping,
    DriftParams,
    FaultParams,
    ProgrammingParams,
    Pulse,
    ReadParams,
    Region,
)
from lsm.crossbar.calfile import (
    CALIBRATION_FORMAT_VERSION,
    SECTIONS,
    STUCK_HIGH,
    STUCK_LOW,
    Calibration,
    file_sha256,
    read_calibration,
    write_calibration,
)
from lsm.crossbar.inloop import clipped_normal_variance
from lsm.crossbar.twin import (
    draw_block,
    forming_distribution,
    map_block,
    twin_adc,
    twin_device,
    twin_report,
)
from lsm.weights import TwinWeights

SHAPE = (32, 40)                       # >= the 32 x 32 block of LSMConfig(16 inputs, 16 neurons)
REGION = (2, 2 + SHAPE[0], 5, 5 + SHAPE[1])
PULSE = {"kind": "form", "amplitude_v": 3.0, "width_ns": 1000, "compliance_ua": 100}
CONFIG = LSMConfig(n_inputs=16, n_neurons=16)
# stuck cells planted in the synthetic measurements: (row, col, level uS)
STUCK_CELLS = ((1, 2, 2.0), (5, 7, 1.5), (9, 20, 1.8), (12, 3, 2.2), (20, 30, 1.6),
               (25, 11, 1.9), (30, 38, 95.0), (17, 17, 96.0), (3, 33, 94.0))


def make_calibration(seed: int = 3) -> Calibration:
    """Every procedure, fitted by calibration.fits from synthetic measurements of SHAPE cells."""
    rng = np.random.default_rng(seed)
    g = np.clip(rng.normal(40.0, 8.0, SHAPE), 1.0, None)
    forming, forming_curves = fit_forming(g, None, PULSE)
    forming["notes"] = {"operator": "Zoë", "bins": [1, 2.5, "three", None], "ok": True}

    reads = g * (1 + 0.02 * rng.standard_normal((8, *SHAPE)))
    noise, noise_curves, mean_us, std_us = fit_read_noise(reads)

    reset, set_ = mean_us * 0.5, mean_us * 1.5
    for r, c, level in STUCK_CELLS:
        mean_us[r, c] = reset[r, c] = set_[r, c] = level
    stuck, stuck_sec = classify_stuck(mean_us, reset, set_, std_us)

    ages = np.array([0.0, 1.0, 10.0, 100.0, 1000.0, 1e4])
    nu_cells = rng.normal(0.02, 0.003, SHAPE)
    drift_reads = g * ((ages[:, None, None] + 1.0) / 1.0) ** -nu_cells
    drift_reads *= 1 + 0.002 * rng.standard_normal(drift_reads.shape)
    drift, drift_curves = fit_drift(ages, drift_reads)

    currents = np.linspace(0.0, 60.0, 200)
    codes = np.clip(np.round(6.0 * currents + 10.0 + rng.normal(0, 0.3, currents.size)), 0, 255)
    adc, adc_curves = fit_adc(currents, codes, np.full(8, 10), bits=8, v_read=0.2)

    wv = {"converged_fraction": 0.97, "iterations": 12, "tol_us": 0.5, "n_cells": g.size,
          "mean_pulses": 3.25}
    wv_curves = {"converged_by_round": np.linspace(0.2, 0.97, 12),
                 "rounds_to_converge": rng.integers(1, 13, SHAPE).astype(np.int32)}
    cal = Calibration(
        region=REGION, g_us=mean_us, read_std_us=std_us, stuck=stuck,
        identity={"instrument": {"vendor": "ACME", "model": "IMC40", "serial": "0042"},
                  "resource": "TCPIP::10.0.0.7::INSTR", "protocol": 1},
        settings={"limits": {"v_max": 3.5, "i_max_ua": 200.0},
                  "pulses": {"form": PULSE}, "options": {"procedures": list(SECTIONS)},
                  "versions": {"rram-lsm": "test", "numpy": np.__version__}},
        sections={"forming": forming, "read_noise": noise, "drift": drift, "stuck": stuck_sec,
                  "adc": adc, "write_verify": wv},
        curves={"forming": forming_curves, "read_noise": noise_curves, "drift": drift_curves,
                "adc": adc_curves, "write_verify": wv_curves},
        measured_at={s: f"2024-05-0{i + 1}T10:00:00+00:00" for i, s in enumerate(SECTIONS)},
        created="2024-05-07T12:00:00+00:00")
    return cal.validate()


@functools.cache
def _fitted(seed: int) -> Calibration:
    return make_calibration(seed)


@pytest.fixture
def cal() -> Calibration:
    return copy.deepcopy(_fitted(3))


@pytest.fixture
def cal_file(tmp_path, cal):
    return write_calibration(tmp_path / "cal.h5", cal)


def edit(path, change) -> None:
    """Change a written file in place with h5py (what a damaged or hand-edited file holds)."""
    with h5py.File(path, "r+") as f:
        change(f)


def names_file(path, message: str) -> str:
    """A ``match`` pattern: the file's name, then ``message`` (a regular expression)."""
    return rf"(?s){re.escape(str(path))}: .*{message}"


def assert_same_calibration(back: Calibration, cal: Calibration) -> None:
    assert back.region == tuple(cal.region)
    assert back.identity == cal.identity
    assert back.settings == cal.settings
    assert back.created == cal.created
    assert back.measured_at == cal.measured_at
    for name in ("g_us", "read_std_us", "stuck"):
        a, b = getattr(cal, name), getattr(back, name)
        assert b.dtype == a.dtype, name
        np.testing.assert_array_equal(b, a, err_msg=name)
    assert back.sections == cal.sections
    assert set(back.sections) == set(cal.sections)
    for sec in back.sections:
        got, want = back.curves.get(sec, {}), cal.curves.get(sec, {})
        assert set(got) == set(want), sec
        for key, a in want.items():
            a = np.asarray(a)
            assert got[key].dtype == a.dtype, (sec, key)
            np.testing.assert_array_equal(got[key], a, err_msg=f"{sec}/{key}")


# ---------------------------------------------------------------------- round trip
def test_round_trip_keeps_everything(tmp_path, cal):
    path = write_calibration(tmp_path / "cal.h5", cal)
    assert path == tmp_path / "cal.h5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.h5"]   # no temporary left
    back = read_calibration(path)
    assert_same_calibration(back, cal)
    # nested tables, text (non-ASCII included), lists, booleans and None survive as themselves
    notes = back.sections["forming"]["notes"]
    assert notes == {"operator": "Zoë", "bins": [1, 2.5, "three", None], "ok": True}
    assert isinstance(back.sections["forming"]["chosen"], str)
    assert isinstance(back.sections["adc"]["bits"], int)
    assert isinstance(back.sections["drift"]["nu"], float)
    assert back.path == path
    assert back.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    assert back.name == str(path)


def test_write_fills_created_and_measured_at(tmp_path, cal):
    cal.created, cal.measured_at = "", {"drift": "2024-01-01T00:00:00+00:00"}
    back = read_calibration(write_calibration(tmp_path / "c.h5", cal))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", back.created)
    assert back.measured_at["drift"] == "2024-01-01T00:00:00+00:00"
    assert back.measured_at["adc"] == back.created


def test_a_bare_map_round_trips(tmp_path):
    bare = Calibration(region=(0, 3, 0, 4), g_us=np.arange(12.0).reshape(3, 4))
    back = read_calibration(write_calibration(tmp_path / "bare.h5", bare))
    np.testing.assert_array_equal(back.g_us, bare.g_us)
    assert back.read_std_us is None and back.stuck is None
    assert back.sections == {} and back.curves == {}


def test_failed_write_leaves_the_earlier_file(tmp_path, cal, monkeypatch):
    path = write_calibration(tmp_path / "cal.h5", cal)
    before = path.read_bytes()
    other = copy.deepcopy(cal)
    other.g_us = other.g_us * 1.01

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(h5py.File, "create_group", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_calibration(path, other)
    with pytest.raises(RuntimeError, match="disk full"):
        write_calibration(tmp_path / "new.h5", other)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.h5"]
    assert_same_calibration(read_calibration(path), cal)


def test_an_invalid_calibration_is_not_written(tmp_path, cal):
    cal.g_us[4, 5] = np.nan
    with pytest.raises(ValueError, match=r"maps/g_us has 1 invalid cell\(s\) \(first \[4, 5\]"):
        write_calibration(tmp_path / "cal.h5", cal)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- bad files
R, C = SHAPE


def _set_cells(name, cells, value):
    def change(f):
        a = f["maps"][name][()]
        for r, c in cells:
            a[r, c] = value
        f["maps"][name][...] = a
    return change


def _replace_map(name, data):
    def change(f):
        del f["maps"][name]
        f["maps"].create_dataset(name, data=data)
    return change


def _set_attr(group, key, value):
    def change(f):
        (f if group == "/" else f[group]).attrs[key] = value
    return change


def _del_attr(group, key):
    def change(f):
        del (f if group == "/" else f[group]).attrs[key]
    return change


BAD = {
    "newer version": (_set_attr("/", "format_version", CALIBRATION_FORMAT_VERSION + 1),
                      rf"format version {CALIBRATION_FORMAT_VERSION + 1} is newer than this "
                      rf"reader's \({CALIBRATION_FORMAT_VERSION}\)"),
    "version zero": (_set_attr("/", "format_version", 0),
                     r"format_version must be a positive integer, got 0"),
    "version as text": (_set_attr("/", "format_version", "1"),
                        r"format_version must be a positive integer"),
    "format removed": (_del_attr("/", "format"), r"format attribute None"),
    "another format": (_set_attr("/", "format", "rram-lsm map"),
                       r"not an rram-lsm calibration file \(format attribute 'rram-lsm map'\)"),
    "read std shape": (_replace_map("read_std_us", np.ones((R, C + 1))),
                       rf"maps/read_std_us has shape \({R}, {C + 1}\), the region "
                       rf"\[2, {2 + R}, 5, {5 + C}\] has \({R}, {C}\)"),
    "stuck shape": (_replace_map("stuck", np.zeros((R - 1, C), np.int8)),
                    rf"maps/stuck has shape \({R - 1}, {C}\)"),
    "NaN cells": (_set_cells("g_us", [(7, 1), (3, 4), (30, 39)], np.nan),
                  r"maps/g_us has 3 invalid cell\(s\) \(first \[3, 4\] = nan\)"),
    "infinite read std": (_set_cells("read_std_us", [(0, 9)], np.inf),
                          r"maps/read_std_us has 1 invalid cell\(s\) \(first \[0, 9\] = inf\)"),
    "negative conductance": (_set_cells("g_us", [(2, 2)], -1.0),
                             r"maps/g_us has 1 invalid cell\(s\) \(first \[2, 2\] = -1\.0\)"),
    "stuck code 7": (_set_cells("stuck", [(4, 6)], 7),
                     r"maps/stuck has 1 invalid cell\(s\) \(first \[4, 6\] = 7\)"),
    "stuck as floats": (_replace_map("stuck", np.zeros(SHAPE)),
                        r"maps/stuck must hold integer codes"),
    "no conductance map": (lambda f: f["maps"].__delitem__("g_us"),
                           r"no conductance map \(maps/g_us\)"),
    "NaN drift nu": (_set_attr("drift", "nu", np.nan),
                     r"drift\.nu is nan \(not a finite number\)"),
    "infinite ADC gain": (_set_attr("adc", "gain_codes_per_ua", np.inf),
                          r"adc\.gain_codes_per_ua is inf"),
    "text for a number": (_set_attr("stuck", "n_low", "two"),
                          r"stuck\.n_low must be a number, got 'two'"),
    "number for text": (_set_attr("forming", "chosen", 3), r"forming\.chosen must be text"),
    "missing parameter": (_del_attr("adc", "gain_se"), r"section 'adc' lacks \['gain_se'\]"),
    "unknown section": (lambda f: f.create_group("calibrate_moon"),
                        r"unknown procedure section\(s\) \['calibrate_moon'\]"),
    "stray dataset": (lambda f: f.create_dataset("stray", data=[1, 2]),
                      r"unexpected object 'stray' at the top level"),
    "non-JSON table": (_set_attr("forming", "families", "{not json"),
                       r"forming\.families is not valid JSON"),
    "non-JSON identity": (_set_attr("/", "identity", "{oops"),
                          r"identity or settings are not valid JSON"),
    "bad region": (_set_attr("/", "region", np.array([5, 2, 0, 4])),
                   r"region must be r0, r1, c0, c1"),
    "NaN curve": (lambda f: f["drift"]["log_ratio"].__setitem__(0, np.nan),
                  r"drift/log_ratio must hold finite numbers"),
}


@pytest.mark.parametrize("change, message", list(BAD.values()), ids=list(BAD))
def test_a_bad_file_is_refused_naming_file_and_field(cal_file, change, message):
    edit(cal_file, change)
    with pytest.raises(ValueError, match=names_file(cal_file, message)):
        read_calibration(cal_file)


def test_a_truncated_file(cal_file):
    data = cal_file.read_bytes()
    cal_file.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=names_file(
            cal_file, r"(not a readable calibration file \(not HDF5, truncated|damaged)")):
        read_calibration(cal_file)


@pytest.mark.parametrize("content", [b"g_us,1,2\n3,4\n", b"", b"\x89HDF\r\n\x1a\n" + bytes(64)],
                         ids=["text", "empty", "bad superblock"])
def test_a_file_that_is_not_hdf5(tmp_path, content):
    path = tmp_path / "cal.h5"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=names_file(path, r"not a readable calibration file")):
        read_calibration(path)


def test_an_hdf5_file_without_the_format_attribute(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("maps/g_us", data=np.ones(SHAPE))
        f.attrs["format_version"] = 1
    with pytest.raises(ValueError, match=names_file(
            path, r"not an rram-lsm calibration file \(format attribute None\)")):
        read_calibration(path)


def test_a_missing_path_or_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.h5"))):
        read_calibration(tmp_path / "none.h5")
    with pytest.raises(IsADirectoryError, match=re.escape(str(tmp_path))):
        read_calibration(tmp_path)


# ---------------------------------------------------------------------- the twin
def test_twin_device_recovers_the_fitted_parameters(cal):
    dev = twin_device(cal)
    rn, dr, st = cal.sections["read_noise"], cal.sections["drift"], cal.sections["stuck"]
    assert dev.read.read_noise_rel == rn["rel"]
    clip = rn["clip_sigma"]
    assert dev.read.read_noise_clip == (clip if 0 < clip < 6 else None)
    assert (dev.drift.nu, dev.drift.nu_std, dev.drift.t0_s) == (dr["nu"], dr["nu_std"],
                                                                 dr["t0_s"])
    assert st["n_low"] == 6 and st["n_high"] == 3 and st["n_cells"] == R * C
    assert dev.faults.p_stuck_hrs == st["n_low"] / st["n_cells"]
    assert dev.faults.p_stuck_lrs == st["n_high"] / st["n_cells"]
    assert dev.faults.g_stuck_lrs_us == st["g_high_us"]
    assert dev.programming.g_hrs_us == st["g_low_us"]
    mean, std = forming_distribution(cal).mean_std()
    assert dev.programming.form_cv == pytest.approx(std / mean, rel=1e-12)
    chosen = cal.sections["forming"]["chosen"]
    assert forming_distribution(cal).name == chosen
    assert dev.programming.distribution == ("lognormal" if chosen == "lognormal" else "gaussian")
    # the model's forming mean at the calibration's pulse is the fitted one
    pulse = Pulse(**PULSE)
    assert dev.programming.form_stats(pulse)[0] == pytest.approx(mean, rel=1e-12)


@pytest.mark.parametrize("clip, expected", [(3.0, 3.0), (0.0, None), (6.0, None), (7.5, None)])
def test_twin_read_noise_clip(cal, clip, expected):
    cal.sections["read_noise"]["clip_sigma"] = clip
    assert twin_device(cal).read.read_noise_clip == expected


def test_a_crossbar_formed_by_the_twin_reads_the_fitted_mean(cal):
    # 200 x 200 cells, seed 7: the healthy cells' mean is within 2 % of the fitted mean (its
    # standard error is 0.1 %), and the stuck cells read the calibrated levels
    mean, std = forming_distribution(cal).mean_std()
    arr = CrossbarArray(200, 200, device=twin_device(cal), seed=7)
    arr.program_random(Region(0, 200, 0, 200), Pulse(**cal.sections["forming"]["pulse"]))
    g = arr.conductance()
    healthy = arr.stuck == STUCK_NONE
    assert abs(g[healthy].mean() / mean - 1) < 0.02
    assert abs(g[healthy].std() / std - 1) < 0.02
    st = cal.sections["stuck"]
    np.testing.assert_array_equal(g[arr.stuck == 1], st["g_low_us"])
    np.testing.assert_array_equal(g[arr.stuck == 2], st["g_high_us"])


def test_the_twin_corrects_the_forming_mean_for_the_read_age(cal):
    # the fit was of reads 100 s after forming: the twin forms higher, and drifts down to the
    # fitted mean when read at that age (within 2 %; seed 7, 100 x 100 cells)
    cal.sections["forming"]["read_age_s"] = 100.0
    d = cal.sections["drift"]
    mean = forming_distribution(cal).mean_std()[0]
    dev = twin_device(cal)
    factor = ((100.0 + d["t0_s"]) / d["t0_s"]) ** d["nu"]
    assert dev.programming.form_stats(Pulse(**PULSE))[0] == pytest.approx(mean * factor)
    arr = CrossbarArray(100, 100, device=dev, seed=7)
    arr.program_random(Region(0, 100, 0, 100), Pulse(**PULSE))
    arr.advance(100.0)
    g = arr.conductance()[arr.stuck == STUCK_NONE]
    assert abs(g.mean() / mean - 1) < 0.02


def test_twin_adc_reproduces_the_fitted_transfer(cal):
    sec = cal.sections["adc"]
    gain, offset, bits = sec["gain_codes_per_ua"], sec["offset_codes"], sec["bits"]
    adc = twin_adc(cal)
    assert adc.bits == bits == 8
    rng = np.random.default_rng(0)
    # below zero code, across the range and past saturation
    i = np.concatenate([rng.uniform(-5.0, 1.2 * sec["saturation_ua"], 20000),
                        np.linspace(-5.0, 50.0, 5501), [0.0, sec["saturation_ua"]]])
    expected = np.clip(np.round(gain * i + offset), 0, (1 << bits) - 1)
    np.testing.assert_array_equal(adc.codes(i), expected)
    assert adc.codes(np.array([-100.0, 1e4])).tolist() == [0, 255]


def test_a_missing_section_keeps_the_model_default(cal):
    only = Calibration(region=cal.region, g_us=cal.g_us,
                       sections={"forming": cal.sections["forming"]}).validate()
    dev = twin_device(only)
    assert dev.read == ReadParams() and dev.drift == DriftParams()
    assert dev.faults == FaultParams()
    assert twin_adc(only) == ADC()
    custom = ADC(bits=10)
    assert twin_adc(only, custom) is custom
    report = twin_report(only)
    assert report["measured"] == ["forming"]
    assert report["model_defaults"] == ["read_noise", "drift", "stuck", "adc"]
    # and no forming section: the model's forming law, and a pointer to the procedure
    bare = Calibration(region=(0, 4, 0, 4), g_us=np.full((4, 4), 10.0)).validate()
    assert twin_device(bare) == DeviceParams()
    assert twin_device(bare).programming == ProgrammingParams()
    assert "forming" in twin_report(bare)["model_defaults"]
    with pytest.raises(ValueError, match=r"no 'forming' calibration.*--procedures forming"):
        draw_block(bare, 4, 4, np.random.default_rng(0))


def test_twin_report_of_a_full_calibration(cal_file):
    cal = read_calibration(cal_file)
    report = twin_report(cal)
    assert report["measured"] == list(SECTIONS)
    assert report["model_defaults"] == []
    assert report["sha256"] == cal.sha256 and report["calibration"] == str(cal_file)
    assert report["instrument"] == cal.identity["instrument"]
    assert report["region"] == list(REGION)


# ---------------------------------------------------------------------- blocks
def _stuck_levels(cal, g):
    """Cells reading within 15 % of the calibrated stuck-low / stuck-high levels (a healthy
    cell of the fitted family is more than 5 sigma away from both)."""
    st = cal.sections["stuck"]
    return (np.abs(g / st["g_low_us"] - 1) < 0.15, np.abs(g / st["g_high_us"] - 1) < 0.15)


def test_draw_block_follows_the_fitted_statistics(cal):
    # seed 11, 200 x 400 cells: healthy mean and std within 2 % of the chosen family's (the
    # range clip [0.5, 100] uS is > 4.9 sigma away; read noise adds < 0.1 % to the std)
    rows, cols = 200, 400
    g = draw_block(cal, rows, cols, np.random.default_rng(11))
    assert g.shape == (rows, cols) and np.isfinite(g).all()
    mean, std = forming_distribution(cal).mean_std()
    low, high = _stuck_levels(cal, g)
    healthy = ~(low | high)
    assert abs(g[healthy].mean() / mean - 1) < 0.02
    assert abs(g[healthy].std() / std - 1) < 0.02
    st = cal.sections["stuck"]
    n = rows * cols
    for k, p in ((int((low | high).sum()), (st["n_low"] + st["n_high"]) / st["n_cells"]),
                 (int(low.sum()), st["n_low"] / st["n_cells"]),
                 (int(high.sum()), st["n_high"] / st["n_cells"])):
        lo, hi = stats.binom.interval(0.999, n, p)
        assert lo <= k <= hi, (k, lo, hi)
    # the same seed draws the same block, another seed another
    np.testing.assert_array_equal(draw_block(cal, rows, cols, np.random.default_rng(11)), g)
    assert not np.array_equal(draw_block(cal, rows, cols, np.random.default_rng(12)), g)


def test_draw_block_drifts_to_the_read_time(cal):
    d = cal.sections["drift"]
    g0 = draw_block(cal, 100, 100, np.random.default_rng(5))
    g1 = draw_block(cal, 100, 100, np.random.default_rng(5), read_time_s=1e4)
    healthy = ~np.logical_or(*_stuck_levels(cal, g0))
    expected = ((1e4 + d["t0_s"]) / d["t0_s"]) ** -d["nu"]
    assert abs(g1[healthy].mean() / g0[healthy].mean() / expected - 1) < 0.02
    with pytest.raises(ValueError, match="read_time_s must be finite and >= 0"):
        draw_block(cal, 4, 4, np.random.default_rng(0), read_time_s=-1.0)


def test_map_block_is_the_measured_map(cal):
    g = map_block(cal, *SHAPE)
    np.testing.assert_array_equal(g, cal.g_us)
    g[0, 0] = -1.0                                          # a copy, not a view
    assert cal.g_us[0, 0] != -1.0
    np.testing.assert_array_equal(map_block(cal, 10, 12, offset=(3, 5)), cal.g_us[3:13, 5:17])
    np.testing.assert_array_equal(map_block(cal, 2, 3, offset=(R - 2, C - 3)),
                                  cal.g_us[R - 2:, C - 3:])


@pytest.mark.parametrize("clip", [0.0, 3.0])
def test_map_block_with_read_noise(cal, clip):
    # relative std of 1280 cells' fresh read noise within 10 % of the calibrated rel (seed 2)
    cal.sections["read_noise"]["clip_sigma"] = clip
    rel = cal.sections["read_noise"]["rel"]
    g = map_block(cal, *SHAPE, read_noise=True, rng=np.random.default_rng(2))
    ratio = g / cal.g_us - 1
    assert abs(ratio.std() / rel - 1) < 0.10
    if clip:
        assert np.abs(ratio).max() <= clip * rel * (1 + 1e-12)
        expected = rel * np.sqrt(clipped_normal_variance(clip))
        assert abs(ratio.std() / expected - 1) < 0.10
    again = map_block(cal, *SHAPE, read_noise=True, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(again, g)


@pytest.mark.parametrize("rows, cols, offset", [(R + 1, C, (0, 0)), (R, C, (1, 0)),
                                                 (4, 4, (0, C - 3)), (2, 2, (-1, 0))])
def test_a_block_that_does_not_fit(cal, rows, cols, offset):
    message = (rf"a {rows} x {cols} block at offset \({offset[0]}, {offset[1]}\) does not fit "
               rf"in the calibrated region of {R} x {C} cells")
    with pytest.raises(ValueError, match=message):
        map_block(cal, rows, cols, offset)


# ---------------------------------------------------------------------- TwinWeights
def test_twin_weights_from_the_map(cal_file, cal):
    ws = TwinWeights(cal_file).build(CONFIG)
    assert ws.w_in.shape == (16, 16) and ws.w_rec.shape == (16, 16)
    for w in (ws.w_in, ws.w_rec):
        assert w.dtype == np.float32 and w.flags.c_contiguous and np.isfinite(w).all()
    prov = ws.provenance
    assert prov["source"] == "twin" and prov["mode"] == "map"
    assert prov["sha256"] == file_sha256(cal_file)
    assert prov["calibration"] == str(cal_file)
    assert prov["twin"]["measured"] == list(SECTIONS)
    # the block's weights: const (G+ - G-) of the measured map's top-left 32 x 32 cells
    mapping = DifferentialMapping(16, 16)
    w_in, w_rec = mapping.weights(cal.g_us[:32, :32], CONFIG.w_in_const, CONFIG.w_rec_const)
    np.testing.assert_array_equal(ws.w_in, w_in)
    np.testing.assert_array_equal(ws.w_rec, w_rec)
    # deterministic
    again = TwinWeights(cal_file).build(CONFIG)
    assert again.fingerprint() == ws.fingerprint() and again.provenance == prov
    # fresh read noise: another read of the same chip
    noisy = TwinWeights(cal_file, read_noise=True).build(CONFIG)
    assert noisy.fingerprint() != ws.fingerprint()
    assert noisy.fingerprint() == TwinWeights(cal_file, read_noise=True).build(CONFIG) \
        .fingerprint()


def test_twin_weights_key_on_the_file_content(tmp_path, cal):
    other = copy.deepcopy(cal)
    other.g_us = other.g_us * 1.05
    a = write_calibration(tmp_path / "a.h5", cal)
    b = write_calibration(tmp_path / "b.h5", other)
    wa, wb = TwinWeights(a).build(CONFIG), TwinWeights(b).build(CONFIG)
    assert wa.fingerprint() != wb.fingerprint()
    assert wa.provenance != wb.provenance
    # the same path rewritten with other content: the provenance (the cache key) changes
    path = tmp_path / "same.h5"
    write_calibration(path, cal)
    first = TwinWeights(path).build(CONFIG)
    write_calibration(path, other)
    second = TwinWeights(path).build(CONFIG)
    assert first.provenance["sha256"] != second.provenance["sha256"]
    assert first.provenance != second.provenance
    assert first.fingerprint() != second.fingerprint()
    # draw mode too: the draw does not read the map, but the file's hash still keys it
    d1 = TwinWeights(a, mode="draw", seed=1).build(CONFIG)
    d2 = TwinWeights(b, mode="draw", seed=1).build(CONFIG)
    assert d1.provenance["sha256"] != d2.provenance["sha256"]


def test_twin_weights_draw_mode(cal_file):
    first = TwinWeights(cal_file, mode="draw", seed=4).build(CONFIG)
    second = TwinWeights(cal_file, mode="draw", seed=4).build(CONFIG)
    assert first.provenance["mode"] == "draw" and first.provenance["seed"] == 4
    assert first.fingerprint() == second.fingerprint()
    np.testing.assert_array_equal(first.w_in, second.w_in)
    np.testing.assert_array_equal(first.w_rec, second.w_rec)
    other = TwinWeights(cal_file, mode="draw", seed=5).build(CONFIG)
    assert other.fingerprint() != first.fingerprint()
    assert other.provenance != first.provenance
    # no seed: the config's
    by_config = TwinWeights(cal_file, mode="draw").build(CONFIG)
    assert by_config.provenance["seed"] == CONFIG.seed
    assert by_config.fingerprint() == TwinWeights(cal_file, mode="draw", seed=CONFIG.seed) \
        .build(CONFIG).fingerprint()
    for w in (first.w_in, first.w_rec):
        assert w.dtype == np.float32 and np.isfinite(w).all()
    assert first.w_in.shape == (16, 16) and first.w_rec.shape == (16, 16)


def test_twin_weights_refusals(cal_file, tmp_path):
    with pytest.raises(ValueError, match=r"TwinWeights\.mode must be 'map' or 'draw', got "
                                         r"'bogus'"):
        TwinWeights(cal_file, mode="bogus")
    with pytest.raises(ValueError, match=r"TwinWeights\.g_unit_us"):
        TwinWeights(cal_file, g_unit_us=0.0)
    # the LSM's block (16 inputs + 32 neurons rows, 64 columns) is larger than the region
    with pytest.raises(ValueError, match=rf"a 48 x 64 block .* region of {R} x {C} cells"):
        TwinWeights(cal_file).build(LSMConfig(n_inputs=16, n_neurons=32))
    with pytest.raises(FileNotFoundError):
        TwinWeights(tmp_path / "none.h5").build(CONFIG)
    # a bad file is refused before any weight is made
    edit(cal_file, _set_cells("g_us", [(0, 1)], np.nan))
    with pytest.raises(ValueError, match=names_file(cal_file, r"maps/g_us has 1 invalid")):
        TwinWeights(cal_file).build(CONFIG)


def test_stuck_codes_in_the_map_match_the_section(cal):
    # the fitted stuck section counts what the map marks
    st = cal.sections["stuck"]
    assert int((cal.stuck == STUCK_LOW).sum()) == st["n_low"]
    assert int((cal.stuck == STUCK_HIGH).sum()) == st["n_high"]
