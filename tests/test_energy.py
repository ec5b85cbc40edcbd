"""The energy model: activity counts (kernels vs a direct count), profiles, pricing by hand."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from lsm import LSM, LSMConfig
from lsm.energy import (
    ACTIVITY_FIELDS,
    Activity,
    DigitalProfile,
    GPUProfile,
    MacroProfile,
    Workload,
    count_activity,
    estimate,
    load_profile,
    override,
    profile_to_dict,
    shipped_profile,
)
from lsm.energy.profiles import SHIPPED, CellRead, DigitalCosts, Readout
from lsm.energy.units import parse_quantity
from lsm.weights import ArrayWeights, CrossbarWeights, GaussianWeights


def _raster(rng, n, n_bins, n_in, p=0.05, stop=None):
    r = (rng.random((n, n_bins, n_in)) < p).astype(np.uint8)
    if stop is not None:
        r[::2, stop:] = 0  # half the samples end early, half have events up to the last bin
    r[0] = 0            # a sample without events
    r[1, 1:] = 0        # one that stops early
    return r


def _kernel_and_direct(lsm, raster, **kw):
    feats, act = lsm.encode(raster, progress=False, return_activity=True, **kw)
    spikes = lsm.encode(raster, features="binned", progress=False, **kw)
    return act, count_activity(lsm.to_events(raster), spikes)


def _same(a: Activity, b: Activity):
    for f in ACTIVITY_FIELDS:
        np.testing.assert_array_equal(a[f], b[f], err_msg=f)
    np.testing.assert_array_equal(a.input_rows, b.input_rows)
    np.testing.assert_array_equal(a.drive, b.drive)


# ---------------------------------------------------------------------- counts
CASES = {
    "float32 dense": dict(),
    "float32 csr": dict(p_rec=0.1, p_in=0.2),
    "int16": dict(weight_format="int16"),
    "subtract reset": dict(reset="subtract"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_counts_equal_a_direct_count(case, rng):
    cfg = LSMConfig(n_inputs=24, n_neurons=16, n_bins=30, v_th=0.6, w_in_const=0.4,
                    w_rec_const=0.25, seed=3, **CASES[case])
    lsm = LSM(cfg)
    raster = _raster(rng, 40, 30, 24, stop=18)
    # batches of 7: the counts of each batch land on its own samples
    kernel, direct = _kernel_and_direct(lsm, raster, batch_size=7)
    _same(kernel, direct)
    assert kernel["spikes"].sum() > 100 and kernel["recurrent_rows"].sum() > 0
    # some samples stopped early, some ran every bin: both paths were exercised
    assert (kernel["steps"] < 30).any() and (kernel["steps"] == 30).any()


@pytest.mark.parametrize("consts", [(0.3, 0.3), (0.4, 0.2)])
def test_crossbar_in_the_loop_counts_equal_a_direct_count(consts, rng):
    cfg = LSMConfig(n_inputs=20, n_neurons=12, n_bins=25, v_th=0.5, w_in_const=consts[0],
                    w_rec_const=consts[1], seed=1)
    lsm = LSM(cfg, CrossbarWeights(in_loop=True, array_rows=64, array_cols=64))
    raster = _raster(rng, 25, 25, 20, stop=15)
    kernel, direct = _kernel_and_direct(lsm, raster)
    _same(kernel, direct)
    assert kernel["spikes"].sum() > 0


def test_torch_backend_and_a_plain_in_loop_encoder_are_counted_from_rasters(rng):
    cfg = LSMConfig(n_inputs=16, n_neurons=10, n_bins=20, v_th=0.5, w_in_const=0.4, seed=2)
    raster = _raster(rng, 15, 20, 16)
    numba = LSM(cfg).encode(raster, progress=False, return_activity=True)[1]
    torch_ = LSM(cfg, backend="torch").encode(raster, progress=False, return_activity=True,
                                              batch_size=4)[1]
    _same(numba, torch_)

    class Plain:  # an in-loop encoder that does not count (like the chip's)
        def __init__(self, lsm):
            self.lsm = lsm

        def encode(self, *, events, decay, v_th, reset, counts, spikes, sample_offset):
            got = self.lsm.encode(events, features="binned", progress=False)
            counts[:, 0] = got.sum(1)
            if spikes.shape[0]:
                spikes[:] = got

    ref = LSM(cfg)

    class Source:
        def build(self, config):
            ws = ref.weight_set
            return dataclasses.replace(ws, in_loop=Plain(ref))

    plain = LSM(cfg, Source()).encode(raster, progress=False, return_activity=True,
                                      batch_size=6)[1]
    _same(numba, plain)


def test_counts_by_hand():
    """Input 0 pushes neuron 0 over threshold in bin 0; its spike drives (zero) recurrent row 0
    in bin 1; nothing fires again, so the kernel stops after bin 1."""
    cfg = LSMConfig(n_inputs=2, n_neurons=2, n_bins=6, v_th=5.0, decay=0.9)
    w_in = np.array([[10.0, 0.0], [0.0, 0.0]], np.float32)
    lsm = LSM(cfg, ArrayWeights(w_in, np.zeros((2, 2), np.float32)))
    raster = np.zeros((1, 6, 2), np.uint8)
    raster[0, 0, 0] = 1
    _, act = lsm.encode(raster, progress=False, return_activity=True)
    assert dict(zip(ACTIVITY_FIELDS, act.counts[0].tolist(), strict=True)) == {
        "input_events": 1, "spikes": 1, "recurrent_rows": 1, "steps": 2, "input_steps": 1,
        "recurrent_steps": 1, "active_steps": 2, "peak_rows": 1}
    assert act.input_rows.tolist() == [[1, 0]] and act.drive.tolist() == [[1, 0]]
    assert act.total()["recurrent_rows"] == 1 and act.mean()["steps"] == 2.0
    assert act.multiplies(separate=False).tolist() == [2]
    assert act.multiplies(separate=True).tolist() == [2]


def test_counting_changes_no_feature(rng):
    cfg = LSMConfig(n_inputs=16, n_neurons=10, n_bins=20, v_th=0.5, w_in_const=0.4)
    lsm = LSM(cfg)
    raster = _raster(rng, 12, 20, 16)
    for feats in ("rates", "windows", "binned"):
        plain = lsm.encode(raster, features=feats, progress=False)
        counted, _ = lsm.encode(raster, features=feats, progress=False, return_activity=True)
        np.testing.assert_array_equal(plain, counted)


def test_activity_round_trips_through_arrays(rng, tmp_path):
    lsm = LSM(LSMConfig(n_inputs=8, n_neurons=6, n_bins=10, v_th=0.4, w_in_const=0.5))
    _, act = lsm.encode(_raster(rng, 5, 10, 8), progress=False, return_activity=True)
    np.savez(tmp_path / "a.npz", **act.arrays())
    with np.load(tmp_path / "a.npz") as z:
        back = Activity.from_arrays(z)
    _same(act, back)
    _same(Activity.concatenate([act.select(slice(0, 2)), act.select(slice(2, 5))]), act)
    np.savez(tmp_path / "b.npz", x=np.zeros(2))
    with np.load(tmp_path / "b.npz") as z, pytest.raises(ValueError, match="no activity"):
        Activity.from_arrays(z, "b.npz")


# ---------------------------------------------------------------------- pricing by hand
def _one_row_workload(g_plus_us: float, g_minus_us: float = 0.0, **kw) -> Workload:
    """One input row, one neuron: the row's two cells (G+, G-)."""
    return Workload(1, 1, 4, np.array([(g_plus_us + g_minus_us) * 1e-6]), np.array([0.0]),
                    np.array([1]), np.array([1]), **kw)


def _activity(input_rows, drive=None, steps=None, n_bins=4) -> Activity:
    """Activity of samples whose events all hit input row 0 in separate bins, no spikes."""
    input_rows = np.asarray(input_rows, np.int32).reshape(-1, 1)
    n = len(input_rows)
    k = input_rows[:, 0].astype(np.int64)
    counts = np.zeros((n, len(ACTIVITY_FIELDS)), np.int64)
    for f, v in (("input_events", k), ("steps", k if steps is None else steps),
                 ("input_steps", k), ("active_steps", k), ("peak_rows", np.minimum(k, 1))):
        counts[:, ACTIVITY_FIELDS.index(f)] = v
    drive = np.zeros((n, 1), np.int32) if drive is None else drive
    return Activity(counts, input_rows, drive, n_bins)


def test_cell_read_energy_of_one_row_and_column_is_g_v2_t():
    macro = MacroProfile(array=CellRead(v_read_v=0.3, t_read_s=20e-9))
    r = estimate(_activity([1]), _one_row_workload(12.5), [macro])
    cells = r.platform("macro").components_j["cell reads"]
    assert cells[0] == pytest.approx(12.5e-6 * 0.3 ** 2 * 20e-9, rel=1e-12)  # 22.5 fJ
    # zero conductance: zero cell read energy, the rest unchanged
    r0 = estimate(_activity([1]), _one_row_workload(0.0), [macro])
    assert r0.platform("macro").components_j["cell reads"][0] == 0.0
    assert r0.platform("macro").components_j["ADC"][0] == r.platform("macro").components_j[
        "ADC"][0] > 0


def test_every_macro_component_is_linear_in_the_events():
    macro, w = MacroProfile(), _one_row_workload(8.0, 2.0)
    r = estimate(_activity([1, 2, 3]), w, [macro]).platform("macro")
    for name, per_sample in r.components_j.items():
        if name == "head":
            continue
        np.testing.assert_allclose(per_sample, per_sample[0] * np.array([1, 2, 3]), rtol=1e-12,
                                   err_msg=name)
    # one event: one multiply converts both columns of the pair, at ENOB 14 - 1.5 bits
    assert r.components_j["ADC"][0] == pytest.approx(2 * 20e-15 * 2 ** 12.5)
    assert r.components_j["TIA"][0] == pytest.approx(2 * 1e-12)
    assert r.components_j["row drivers"][0] == pytest.approx(0.25e-12)
    assert r.components_j["cell reads"][0] == pytest.approx(10e-6 * 0.2 ** 2 * 50e-9)
    assert r.latency_s[0] == pytest.approx(50e-9 + math.ceil(2 / 32) * 14 * 70e-9 + 10e-9)
    # readout kept biased through the multiply: power x time x conversions
    static = MacroProfile(readout=Readout(p_column_static_w=1e-5))
    r2 = estimate(_activity([1]), w, [static]).platform("macro")
    t_multiply = 50e-9 + 14 * 70e-9
    assert r2.components_j["readout static"][0] == pytest.approx(1e-5 * t_multiply * 2)
    # sensed differentially: one conversion per pair
    diff = MacroProfile(readout=Readout(conversions_per_pair=1))
    r1 = estimate(_activity([1]), w, [diff]).platform("macro")
    assert r1.components_j["ADC"][0] == pytest.approx(20e-15 * 2 ** 12.5)


def test_adc_energy_doubles_per_bit():
    w, a = _one_row_workload(5.0), _activity([3])
    e = [estimate(a, w, [MacroProfile(readout=Readout(adc_bits=b))]).platform("macro")
         .components_j["ADC"][0] for b in (6, 7, 8)]
    assert e[1] == pytest.approx(2 * e[0]) and e[2] == pytest.approx(4 * e[0])


def test_digital_and_gpu_by_hand():
    d = DigitalCosts(e_add_j=1e-12, e_mac_j=3e-12, e_sram_j_per_bit=0.1e-12, weight_bits=8,
                     e_neuron_update_j=2e-12, clock_hz=1e9, lanes=4, t_step_s=0.0)
    w = Workload(2, 1, 5, np.zeros(2), np.zeros(1), np.array([1, 0]), np.array([1]),
                 head_macs=10)
    a = _activity([3], steps=[4], n_bins=5)
    a = Activity(a.counts, np.array([[3, 0]], np.int32), a.drive, 5)
    event = estimate(a, w, [DigitalProfile(digital=d)]).platform("digital")
    # 3 events on a row with one nonzero weight: 3 SOPs
    assert event.components_j["synaptic ops"][0] == pytest.approx(3e-12)
    assert event.components_j["weight reads"][0] == pytest.approx(3 * 8 * 0.1e-12)
    assert event.components_j["neurons"][0] == pytest.approx(4 * 1 * 2e-12)
    assert event.components_j["head"][0] == pytest.approx(10 * (3e-12 + 0.8e-12))
    dense = estimate(a, w, [DigitalProfile(event_driven=False, digital=d)]).platform("digital")
    assert dense.components_j["synaptic ops"][0] == pytest.approx(5 * 3 * 1 * 3e-12)
    gpu = estimate(a, w, [GPUProfile(board_power_w=100, peak_flop_per_s=1e9, utilisation=0.5)])
    flops = 2 * 15 + 4 * 5 * 1 + 2 * 10
    assert gpu.platform("gpu").total_j[0] == pytest.approx(100 * flops / 0.5e9)


def test_the_report_on_a_real_reservoir(rng):
    cfg = LSMConfig(n_inputs=32, n_neurons=20, n_bins=20, v_th=0.5, w_in_const=0.3,
                    w_rec_const=0.3)
    lsm = LSM(cfg, CrossbarWeights(array_rows=64, array_cols=64))
    _, act = lsm.encode(_raster(rng, 10, 20, 32), progress=False, return_activity=True)
    w = Workload.from_lsm(lsm)
    assert "crossbar" in w.conductance_source
    g = lsm.conductance_us
    np.testing.assert_allclose(w.g_row_in_s, g[:32].sum(1) * 1e-6)
    report = estimate(act, w, [shipped_profile(n) for n in SHIPPED])
    d = json.loads(json.dumps(report.to_dict()))
    assert d["reference"] == "imc40" and d["ratios"]["imc40"] == 1.0
    macro = report.platform("imc40")
    assert macro.once_j["programming"] == pytest.approx(2 * (32 + 20) * 20 * 300e-12)
    # the hand formula of the cell reads on the first sample with events
    s = int(np.argmax(act["input_events"]))
    by_hand = 0.2 ** 2 * 50e-9 * (act.input_rows[s] @ (g[:32].sum(1) * 1e-6)
                                  + act.drive[s] @ (g[32:].sum(1) * 1e-6))
    assert macro.components_j["cell reads"][s] == pytest.approx(by_hand, rel=1e-12)
    # software weights get cells placed above the base conductance
    soft = Workload.from_lsm(LSM(cfg, GaussianWeights()))
    assert "differential pairs" in soft.conductance_source
    assert (soft.g_row_in_s >= 2 * 20 * 1e-6 - 1e-12).all()
    with pytest.raises(ValueError, match="block of differential pairs"):
        Workload.from_lsm(lsm, conductance_us=np.ones((3, 3)))
    with pytest.raises(ValueError, match="names must differ"):
        estimate(act, w, [MacroProfile(), MacroProfile()])


# ---------------------------------------------------------------------- profiles
def test_shipped_profiles_load_and_round_trip(tmp_path):
    import tomli_w

    for name in SHIPPED:
        p = shipped_profile(name)
        assert p.name == name
        f = tmp_path / f"{name}.toml"
        f.write_text(tomli_w.dumps(profile_to_dict(p)))
        assert load_profile(f) == p
    assert shipped_profile("imc40").readout.adc_bits == 14
    assert shipped_profile("imc40").array.t_read_s == 50e-9


def _write(tmp_path, text):
    f = tmp_path / "p.toml"
    f.write_text(text)
    return f


GPU = 'kind = "gpu"\nname = "g"\nboard_power = "300 W"\npeak = "10 TFLOP/s"\n' \
      'utilisation = 0.5\nt_step = "5 us"\n'


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('board_power = "300 W"\n', ""), r"board_power is missing.*W"),
    (lambda t: t.replace('"300 W"', '"-300 W"'), r"board_power \(W\) must be >= 0|> 0"),
    (lambda t: t.replace('"300 W"', "300"), r"board_power = 300 has no unit"),
    (lambda t: t.replace('"300 W"', '"300"'), r"board_power = '300' has no unit"),
    (lambda t: t.replace('"300 W"', '"300 mA"'), r"board_power = '300 mA': expected .* W"),
    (lambda t: t.replace('"5 us"', '"-5 us"'), r"t_step \(s\) must be >= 0"),
    (lambda t: t.replace("0.5", "1.5"), r"utilisation must be in \(0, 1\]"),
    (lambda t: t.replace("0.5", '"0.5 W"'), r"utilisation must be a plain number"),
    (lambda t: t + 'watts = "1 W"\n', r"unknown key\(s\) \['watts'\]"),
    (lambda t: t.replace('"gpu"', '"fpga"'), r"kind must be one of"),
    (lambda t: t + "[[[", r"not a valid TOML"),
    (lambda t: t.replace('kind = "gpu"', 'kind = ["gpu"]'), "kind must be one of"),
    (lambda t: t.replace('"300 W"', '"1e9999999999999999999 W"'), "out of range"),
    (lambda t: t.replace("0.5", "nan"), r"utilisation must be finite"),
    (lambda t: t.replace("0.5", "inf"), r"utilisation must be finite"),
    (lambda t: t.replace('name = "g"', 'name = " "'), "non-empty name"),
])
def test_bad_profiles_are_refused_naming_file_and_key(tmp_path, edit, message):
    f = _write(tmp_path, edit(GPU))
    with pytest.raises(ValueError, match=message) as e:
        load_profile(f)
    assert str(f) in str(e.value)


def test_bad_nested_profile_names_the_table(tmp_path):
    text = (shipped_profile_text("imc40").replace('adc_fom = "20 fJ/step"', 'adc_fom = "20 fJ"'))
    with pytest.raises(ValueError, match=r"\[readout\] adc_fom = '20 fJ': expected .* J/step"):
        load_profile(_write(tmp_path, text))
    text = shipped_profile_text("imc40").replace("[drivers]\n", "[driver]\n")
    with pytest.raises(ValueError, match=r"table \[drivers\] is missing"):
        load_profile(_write(tmp_path, text))
    text = shipped_profile_text("imc40").replace("adc_bits = 14", "adc_bits = 14.5")
    with pytest.raises(ValueError, match="adc_bits must be a whole number"):
        load_profile(_write(tmp_path, text))


def shipped_profile_text(name):
    from lsm.energy.profiles import PROFILE_DIR

    return (PROFILE_DIR / SHIPPED[name]).read_text()


def test_override_changes_one_parameter_with_its_unit():
    p = shipped_profile("imc40")
    assert override(p, "readout.adc_bits=8").readout.adc_bits == 8
    assert override(p, "array.t_read=20 ns").array.t_read_s == pytest.approx(20e-9)
    assert override(shipped_profile("digital-40nm"), "event_driven=false").event_driven is False
    for bad, msg in (("readout.adc_bits", "expected table.key=value"),
                     ("readout.bits=8", "no parameter 'bits'"),
                     ("adc_bits=8", "did you mean readout.adc_bits"),
                     ("kind=gpu", "cannot be changed"),
                     ("nothing.x=1", "no table 'nothing'"),
                     ("array.t_read=20", "has no unit"),
                     ("readout.adc_bits=-2", "must be > 0")):
        with pytest.raises(ValueError, match=msg):
            override(p, bad)


def test_quantities_parse_exactly():
    assert parse_quantity("50 ns", "s", "x") == 5e-8
    assert parse_quantity("19.5 TFLOP/s", "FLOP/s", "x") == 19.5e12
    assert parse_quantity("20 fJ/step", "J/step", "x") == 2e-14
    assert parse_quantity("3 µs", "s", "x") == 3e-6


def test_docstring_examples_run():
    import doctest

    import lsm.energy
    import lsm.energy.model

    for module in (lsm.energy, lsm.energy.model):
        failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tried > 0 and failed == 0, module.__name__


# ---------------------------------------------------------------------- lsm energy
@pytest.fixture(scope="module")
def tidigits(tmp_path_factory):
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    path = tmp_path_factory.mktemp("energy_twin") / "ntidigits.hdf5"
    make_ntidigits_twin(path, n_speakers=4, seed=0, progress=False)
    return path


def _cli(capsys, *argv):
    from lsm.cli import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_lsm_energy_prints_writes_and_caches(capsys, tmp_path, tidigits):
    import tomllib

    base = ["energy", "--ntidigits", tidigits, "--limit", 8, "--runs", tmp_path / "runs",
            "--cache", tmp_path / "cache", "--no-progress"]
    rc, out, err = _cli(capsys, *base)
    assert rc == 0, err
    assert "imc40" in out and "digital-40nm" in out and "gpu-a100" in out
    assert "largest components" in out and "8 samples" in out and "23.34x" in out
    assert "> 1: costs more than imc40" in out and "batch 1" in out
    rc, out, err = _cli(capsys, *base, "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["cache_hit"] is True and r["samples"] == 8
    first, second = sorted((tmp_path / "runs").iterdir())
    assert json.loads((first / "metrics.json").read_text())["report"] == r["report"]
    assert (second / "energy.png").stat().st_size > 10_000
    cfg = tomllib.loads((second / "config.toml").read_text())
    assert cfg["profiles"]["imc40"]["readout"]["adc_fom"] == "20 fJ/step"
    # the activity is the encoding's: the macro converts 2N columns per active step
    macro = next(p for p in r["report"]["platforms"] if p["name"] == "imc40")
    assert macro["counts"]["conversions"] == pytest.approx(
        400 * r["report"]["activity_mean"]["active_steps"])


def test_lsm_energy_settings_profiles_and_calibration(capsys, tmp_path, tidigits):
    import tomli_w
    from test_calfile import make_calibration

    from lsm.crossbar.calfile import Calibration, write_calibration

    runs = ["--runs", tmp_path / "runs", "--no-progress", "--json", "--limit", 8]
    rc, out, err = _cli(capsys, "energy", "--ntidigits", tidigits, *runs,
                        "--set", "imc40:readout.adc_bits=8", "--head-dims", "none")
    assert rc == 0, err
    r = json.loads(out)
    assert r["head_macs"] == 0 and r["settings"] == ["imc40:readout.adc_bits=8"]
    assert r["profiles"]["imc40"].endswith("[set readout.adc_bits=8]")
    macro = next(p for p in r["report"]["platforms"] if p["name"] == "imc40")
    assert macro["components_j"]["ADC"] == pytest.approx(
        20e-15 * 2 ** (8 - 1.5) * macro["counts"]["conversions"])
    # a profile file of one's own, and the calibration's conductances, on a small reservoir
    mine = profile_to_dict(shipped_profile("imc40"))
    mine["name"] = "mine"
    mine["array"]["v_read"] = "0.1 V"
    (tmp_path / "mine.toml").write_text(tomli_w.dumps(mine))
    cal = make_calibration()
    tile = lambda a: np.tile(a, (3, 1))[:80, :32]  # noqa: E731
    big = Calibration(region=(0, 80, 0, 32), g_us=tile(cal.g_us),
                      read_std_us=tile(cal.read_std_us), stuck=tile(cal.stuck),
                      identity=cal.identity, settings=cal.settings, sections=cal.sections,
                      curves=cal.curves, measured_at=cal.measured_at, created=cal.created)
    write_calibration(tmp_path / "cal.h5", big.validate())
    (tmp_path / "small.toml").write_text(dataset_config_toml(n_neurons=16))
    rc, out, err = _cli(capsys, "energy", "--ntidigits", tidigits, *runs, "--profile",
                        tmp_path / "mine.toml", "--calibration", tmp_path / "cal.h5",
                        "--config", tmp_path / "small.toml")
    assert rc == 0, err
    r = json.loads(out)
    assert r["conductances"].startswith("calibration") and r["report"]["reference"] == "mine"
    assert r["calibration"]["adc_bits"] == 8  # the synthetic calibration's ADC
    r["run_dir"] = str(tmp_path)
    from lsm.experiments.energy import format_energy

    assert "calibrated chip: ADC 8 bits, read at 0.2 V" in format_energy(r)


def dataset_config_toml(**changes) -> str:
    from lsm.data.registry import dataset_spec

    return dataset_spec("ntidigits").lsm_config().replace(**changes).to_toml()


@pytest.mark.parametrize("extra, names", [
    (["--set", "imc40:readout.bits=8"], ["imc40:readout.bits=8", "no parameter 'bits'"]),
    (["--set", "gpu-a100:utilisation=2"], ["gpu-a100:utilisation=2", "GPUProfile.utilisation"]),
    (["--set", "nobody:readout.adc_bits=8"], ["nobody"]),
    (["--set", "imc40:array.t_read=20"], ["has no unit"]),
    (["--profile", "missing.toml"], ["missing.toml"]),
    (["--profile", "bad.toml"], ["bad.toml", "board_power", "has no unit"]),
    (["--calibration", "nothere.h5"], ["nothere.h5"]),
    (["--head-dims", "0"], ["--head-dims"]),
    (["--limit", "0"], ["--limit"]),
])
def test_lsm_energy_user_errors(capsys, tmp_path, tidigits, monkeypatch, extra, names):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text(GPU.replace('"300 W"', "300"))
    rc, out, err = _cli(capsys, "energy", "--ntidigits", tidigits, "--runs", tmp_path / "runs",
                        "--no-progress", *extra)
    assert rc == 2, err
    assert "Traceback" not in err and "error:" in err
    for name in names:
        assert name in err, (name, err)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_the_default_head_is_the_papers_projection():
    from lsm.contrastive.heads import ProjectionHead

    lsm = LSM(LSMConfig(n_inputs=8, n_neurons=200, n_bins=4))
    assert Workload.from_lsm(lsm).head_macs == ProjectionHead(200, 64).macs_per_sample()
    assert Workload.from_lsm(lsm, head_dims=(128, 64)).head_macs == \
        ProjectionHead(200, 64, n_layers=2, hidden_dim=128).macs_per_sample()


# ---------------------------------------------------------------------- from the adversarial pass
def test_profile_details(tmp_path):
    text = shipped_profile_text("imc40")
    with pytest.raises(ValueError, match=r"n_adcs must be finite"):
        load_profile(_write(tmp_path, text.replace("n_adcs = 32", "n_adcs = inf")))
    with pytest.raises(ValueError, match=r"\[drivers\] unknown key\(s\) \['kind'\]"):
        load_profile(_write(tmp_path, text.replace("[drivers]\n", '[drivers]\nkind = "gpu"\n')))
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_profile(bom) == shipped_profile("imc40")
    # values survive --set and the run record exactly (15 digits, not 4)
    odd = load_profile(_write(tmp_path, text.replace('t_read = "50 ns"', 't_read = "12.3456 ns"')))
    assert override(odd, "readout.adc_bits=12").array.t_read_s == odd.array.t_read_s
    assert profile_to_dict(odd)["array"]["t_read"] == "12.3456 ns"
    p = shipped_profile("imc40")
    assert override(p, "programming.pulses_per_cell=1.5").programming.pulses_per_cell == 1.5
    assert override(p, "readout.adc_bits=8.0").readout.adc_bits == 8
    for bad, msg in (("readout.adc_bits=8_0", "plain"), ("readout.adc_bits=inf", "plain"),
                     ("readout.adc_bits=8.5", "whole number")):
        with pytest.raises(ValueError, match=msg):
            override(p, bad)


def test_non_finite_energies_and_zero_references_are_handled():
    w, a = _one_row_workload(5.0), _activity([2])
    tiny = GPUProfile(utilisation=1e-320)
    with pytest.raises(ValueError, match="'gpu'.*not finite"):
        estimate(a, w, [MacroProfile(), tiny])
    free = MacroProfile(name="free", array=CellRead(v_read_v=1e-30, t_read_s=1e-30),
                        drivers=dataclasses.replace(MacroProfile().drivers, e_row_j=0.0),
                        readout=Readout(adc_fom_j_per_step=0.0, e_tia_j=0.0),
                        digital=DigitalCosts(e_neuron_update_j=0.0))
    zero_w = _one_row_workload(0.0)
    r = estimate(a, zero_w, [free, DigitalProfile(digital=DigitalCosts(
        e_add_j=0, e_sram_j_per_bit=0, e_neuron_update_j=0)), GPUProfile()])
    assert r.ratios() == {"free": 1.0, "digital": 1.0, "gpu": None}
    json.dumps(r.to_dict(), allow_nan=False)
    with pytest.raises(ValueError, match="counts"):
        Activity(-a.counts, a.input_rows, a.drive, 4)


def test_multiplies_are_decided_as_the_kernel_decides(rng):
    cfg = LSMConfig(n_inputs=8, n_neurons=6, n_bins=6, w_in_const=0.07,
                    w_rec_const=0.07 + 1e-12)
    assert Workload.from_lsm(LSM(cfg)).separate_multiplies is False
    assert Workload.from_lsm(LSM(cfg.replace(w_rec_const=0.08))).separate_multiplies is True


def test_lsm_energy_refusals_before_the_work(capsys, tmp_path, tidigits):
    runs = ["--runs", tmp_path / "runs", "--no-progress", "--limit", 3]
    for extra, msg in ((["--set", "imc40:name=digital-40nm"], "same name"),
                       (["--set", "gpu-a100:utilisation=1e-320"], "not finite"),
                       (["--head-dims", "99999999999"], "head_dims")):
        rc, out, err = _cli(capsys, "energy", "--ntidigits", tidigits, *runs, *extra)
        assert rc == 2 and "Traceback" not in err and msg in err, (extra, err)
    # a dollar sign in a name or setting reaches the PNG as text
    rc, out, err = _cli(capsys, "energy", "--ntidigits", tidigits, *runs, "--set",
                        "imc40:name=$\\foo{$")
    assert rc == 0, err
    assert len(list((tmp_path / "runs").glob("energy-*/energy.png"))) == 1


def test_a_cached_activity_reports_what_was_priced(capsys, tmp_path, tidigits):
    import shutil

    import h5py

    broken = tmp_path / "broken.hdf5"
    shutil.copy(tidigits, broken)
    with h5py.File(broken, "a") as f:
        group = f["test_timestamps"]
        key = sorted(group)[0]
        data = group[key][...]
        del group[key]
        group[key] = data[::-1]  # time going backwards: a bad sample
    base = ["energy", "--ntidigits", broken, "--runs", tmp_path / "runs", "--no-progress",
            "--json", "--cache", tmp_path / "cache", "--on-bad-sample", "skip"]
    rc, out, err = _cli(capsys, *base)
    assert rc == 0, err
    first = json.loads(out)
    rc, out, err = _cli(capsys, *base)
    second = json.loads(out)
    assert second["cache_hit"] and len(first["skipped"]) == 1
    assert (second["samples"], second["skipped"]) == (first["samples"],
                                                      [list(s) for s in first["skipped"]])
    assert second["samples"] == second["report"]["n_samples"]
    rc, out, err = _cli(capsys, *[a for a in base if a != "--json"])  # text says the skip
    assert rc == 0 and "skipped 1 bad samples" in out
