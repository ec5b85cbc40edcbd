"""The RRAM crossbar model: statistics of programming, reads, faults, periphery, write-verify.

Statistical tests use fixed seeds and state their tolerances; each could fail if the model changed.
"""

import numpy as np
import pytest
from scipy import stats

from lsm.crossbar import (
    ADC,
    STUCK_HRS,
    STUCK_LRS,
    CrossbarArray,
    DeviceParams,
    DifferentialMapping,
    DriftParams,
    FaultParams,
    InputDAC,
    IRDrop,
    ProgrammingParams,
    Pulse,
    ReadParams,
    Region,
)

FULL = Region(0, 512, 0, 512)


def truncated_cdf(mean, std, lo, hi, distribution):
    if distribution == "gaussian":
        base = stats.norm(mean, std)
    else:
        s = np.sqrt(np.log1p((std / mean) ** 2))
        base = stats.lognorm(s, scale=mean * np.exp(-s * s / 2))
    a, b = base.cdf(lo), base.cdf(hi)
    return lambda x: (base.cdf(x) - a) / (b - a), base


# ---------------------------------------------------------------- programming statistics
@pytest.mark.parametrize("distribution", ["gaussian", "lognormal"])
def test_formed_distribution_matches_configured_shape(distribution):
    dev = DeviceParams(ProgrammingParams(distribution=distribution))
    arr = CrossbarArray(device=dev, seed=3)
    arr.program_random(FULL)
    g = arr.conductance().ravel()
    p = dev.programming
    mean, std = p.form_stats(Pulse.form())
    cdf, _ = truncated_cdf(mean, std, p.g_min_us, p.g_max_us, distribution)
    assert stats.kstest(g, cdf).pvalue > 0.01
    # the other shape is rejected: the test can tell them apart
    other = "lognormal" if distribution == "gaussian" else "gaussian"
    cdf_other, _ = truncated_cdf(mean, std, p.g_min_us, p.g_max_us, other)
    assert stats.kstest(g, cdf_other).pvalue < 1e-6
    # 262,144 cells: the standard error of the mean is 0.013 uS; of the std about 0.1 %
    assert abs(g.mean() - mean) < 0.06
    assert abs(g.std() / std - 1) < 0.01
    assert 6.6 <= g.std() <= 6.9  # the paper macro's spread


def test_distribution_depends_on_pulse_and_compliance():
    arr = CrossbarArray(64, 64, seed=1)
    arr.program_random(Region(0, 64, 0, 32), Pulse.form(compliance_ua=50.0))
    arr.program_random(Region(0, 64, 32, 64), Pulse.form(amplitude_v=3.6, compliance_ua=150.0))
    g = arr.conductance()
    lo, hi = g[:, :32], g[:, 32:]
    p = arr.device.programming
    assert abs(lo.mean() - p.form_stats(Pulse.form(compliance_ua=50.0))[0]) < 0.5
    assert hi.mean() > 2.5 * lo.mean()
    sub = CrossbarArray(8, 8, seed=1)
    sub.program_random(Region(0, 8, 0, 8), Pulse.form(amplitude_v=1.5))  # below threshold
    assert not sub.formed.any()


def test_set_and_reset_move_towards_their_limits():
    arr = CrossbarArray(32, 32, seed=2)
    arr.program_random(Region(0, 32, 0, 32))
    before = arr.conductance().copy()
    rows, cols = Region(0, 32, 0, 32).cells()
    arr.program(rows, cols, Pulse.set(amplitude_v=1.2, compliance_ua=200.0))
    after_set = arr.conductance()
    assert (after_set >= before - 1e-9).mean() > 0.95 and after_set.mean() > before.mean() + 5
    arr.program(rows, cols, Pulse.reset(amplitude_v=-2.0, width_ns=1000.0))
    after_reset = arr.conductance()
    assert after_reset.mean() < 0.5 * after_set.mean()


# ---------------------------------------------------------------- reads
@pytest.mark.parametrize("clip", [2.0, None])
def test_read_noise_std_matches_configuration(clip):
    rel = 0.0015
    dev = DeviceParams(read=ReadParams(read_noise_rel=rel, read_noise_clip=clip),
                       drift=DriftParams(nu=0.0, nu_std=0.0))
    arr = CrossbarArray(4, 4, device=dev, seed=5)
    arr.program_random(Region(0, 4, 0, 4))
    g_true = arr.conductance(np.array([2]), np.array([3]))[0]
    reads = arr.read(np.full(20000, 2), np.full(20000, 3))
    expected = rel * (1.0 if clip is None else np.sqrt(0.9205))  # variance of a 2-sigma clip
    assert abs(reads.std() / g_true / expected - 1) < 0.05
    assert abs(reads.mean() / g_true - 1) < 1e-4
    if clip is not None:
        assert np.abs(reads / g_true - 1).max() <= clip * rel + 1e-12


def test_drift_power_law():
    dev = DeviceParams(drift=DriftParams(nu=0.02, nu_std=0.0, t0_s=1.0),
                       read=ReadParams(read_noise_rel=0.0, read_noise_clip=None))
    arr = CrossbarArray(16, 16, device=dev, seed=7)
    arr.program_random(Region(0, 16, 0, 16))
    arr.advance(1.0)
    g1 = arr.read_region(Region(0, 16, 0, 16))
    arr.advance(1e4 - 1.0)
    g2 = arr.read_region(Region(0, 16, 0, 16))
    np.testing.assert_allclose(g2 / g1, ((1e4 + 1) / 2.0) ** -0.02, rtol=1e-9)


def test_iv_nonlinearity_is_optional():
    base = DeviceParams.ideal()
    arr = CrossbarArray(2, 2, device=base, seed=1)
    arr.program_random(Region(0, 2, 0, 2))
    g = arr.conductance()
    np.testing.assert_allclose(arr.read_region(Region(0, 2, 0, 2), v_read=0.2), g)
    nl = DeviceParams(read=ReadParams(read_noise_rel=0.0, read_noise_clip=None, iv_v0=0.25),
                      drift=DriftParams(nu=0.0, nu_std=0.0))
    arr2 = CrossbarArray(2, 2, device=nl, seed=1)
    arr2.program_random(Region(0, 2, 0, 2))
    np.testing.assert_allclose(arr2.read_region(Region(0, 2, 0, 2), v_read=0.2),
                               g * 0.25 * np.sinh(0.2 / 0.25) / 0.2)


# ---------------------------------------------------------------- faults
def test_stuck_fault_rates_and_stuck_cells_ignore_programming():
    dev = DeviceParams(faults=FaultParams(p_stuck_hrs=0.01, p_stuck_lrs=0.005))
    arr = CrossbarArray(device=dev, seed=11)
    n = arr.stuck.size
    for code, p in ((STUCK_HRS, 0.01), (STUCK_LRS, 0.005)):
        frac = (arr.stuck == code).mean()
        assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / n)
    arr.program_random(FULL)
    g = arr.conductance()
    np.testing.assert_array_equal(g[arr.stuck == STUCK_HRS], dev.programming.g_hrs_us)
    np.testing.assert_array_equal(g[arr.stuck == STUCK_LRS], dev.faults.g_stuck_lrs_us)
    stuck_before = arr.g_us[arr.stuck != 0].copy()
    rows, cols = np.nonzero(arr.stuck)
    arr.program(rows, cols, Pulse.set())
    np.testing.assert_array_equal(arr.g_us[arr.stuck != 0], stuck_before)
    # fixed per instance: same seed, same faults
    np.testing.assert_array_equal(CrossbarArray(device=dev, seed=11).stuck, arr.stuck)


# ---------------------------------------------------------------- periphery
def test_adc_range_saturation_and_half_lsb():
    ro = ADC(bits=10, r_tia_kohm=2.5, v_min=0.0, v_max=1.0)
    lo_ua, hi_ua = ro.full_scale_ua
    i = np.random.default_rng(0).uniform(lo_ua, hi_ua, 100_000)
    codes = ro.codes(i)
    assert codes.min() >= 0 and codes.max() <= ro.max_code
    assert np.abs(ro.currents(codes) - i).max() <= ro.lsb_ua / 2 * (1 + 1e-9)
    np.testing.assert_array_equal(ro.codes([-50.0, -1e-3, 0.0]), [0, 0, 0])
    np.testing.assert_array_equal(ro.codes([hi_ua, hi_ua + 1, 1e6]), [ro.max_code] * 3)
    assert ADC().max_code == 2 ** 14 - 1


def test_ideal_vmm_equals_matmul():
    """With every non-ideality off, bit-line currents are exactly v_read * x @ G and the
    differential pairs give x @ (G+ - G-)."""
    arr = CrossbarArray(64, 40, device=DeviceParams.ideal(), seed=4)
    arr.program_random(Region(0, 64, 0, 40))
    x = (np.random.default_rng(1).random((50, 64)) < 0.3).astype(np.uint8)
    dac = InputDAC(v_read=0.2)
    i = arr.vmm(np.arange(64), np.arange(40), x, dac=dac, return_currents=True)
    g = arr.conductance()
    np.testing.assert_allclose(i, 0.2 * x @ g, rtol=1e-12, atol=1e-9)
    diff = (i[:, :20] - i[:, 20:]) / 0.2
    np.testing.assert_allclose(diff, x @ (g[:, :20] - g[:, 20:]), rtol=1e-9, atol=1e-9)


def test_vmm_adc_and_ir_drop():
    arr = CrossbarArray(32, 8, device=DeviceParams.ideal(), seed=4)
    arr.program_random(Region(0, 32, 0, 8))
    x = np.ones((1, 32), np.uint8)
    ro = ADC(bits=14)
    codes = arr.vmm(np.arange(32), np.arange(8), x, adc=ro)
    exact = arr.vmm(np.arange(32), np.arange(8), x, return_currents=True)
    assert np.abs(ro.currents(codes) - exact).max() <= ro.lsb_ua / 2 + 1e-9
    dropped = arr.vmm(np.arange(32), np.arange(8), x, ir_drop=IRDrop(0.1),
                      return_currents=True)
    assert (dropped < exact).all() and (dropped > 0.89 * exact).all()
    with pytest.raises(ValueError, match="binary"):
        arr.vmm(np.arange(32), np.arange(8), np.full((1, 32), 2))


def test_same_seed_same_array_bit_for_bit():
    def run(seed):
        arr = CrossbarArray(64, 64, seed=seed)
        arr.program_random(Region(0, 64, 0, 64))
        arr.advance(10.0)
        return arr.g_us.copy(), arr.read_region(Region(0, 64, 0, 64))

    a, b, c = run(9), run(9), run(10)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert not np.array_equal(a[0], c[0])


# ---------------------------------------------------------------- mapping
def test_mapping_fits_utilisation_and_round_trip():
    m = DifferentialMapping(256, 200)
    assert m.region == Region(0, 456, 0, 400)
    assert m.utilisation == pytest.approx(456 * 400 / 512 ** 2)
    rng = np.random.default_rng(0)
    w_in, w_rec = rng.normal(0, 0.5, (256, 200)), rng.normal(0, 0.5, (200, 200))
    t = m.targets(w_in, w_rec, 0.07, 0.07, g_base_us=10.0)
    a, b = m.weights(t, 0.07, 0.07)
    np.testing.assert_allclose(a, w_in, atol=1e-5)
    np.testing.assert_allclose(b, w_rec, atol=1e-5)
    with pytest.raises(ValueError, match=r"need 3312 rows x 2000 columns.*the array has 512 x"):
        DifferentialMapping(2312, 1000)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, message", [
    (lambda: Pulse("form", 3.0, -1.0), r"Pulse.width_ns must be in \(0.0"),
    (lambda: Pulse("form", float("nan"), 10.0), "Pulse.amplitude_v must be a finite number"),
    (lambda: Pulse("set", 1.0, 10.0, compliance_ua=0.0), r"Pulse.compliance_ua must be in \("),
    (lambda: Pulse("reset", 1.0, 10.0), "RESET pulse needs amplitude_v <= 0"),
    (lambda: Pulse("zap", 1.0, 10.0), "Pulse.kind must be one of"),
    (lambda: ADC(bits=0), r"ADC.bits must be in \[1, 24\]"),
    (lambda: ReadParams(read_noise_rel=-0.1), "ReadParams.read_noise_rel must be in"),
    (lambda: ProgrammingParams(g_min_us=5.0, g_max_us=1.0), "g_max_us .* must exceed"),
    (lambda: FaultParams(p_stuck_hrs=0.7, p_stuck_lrs=0.7), "must be <= 1"),
    (lambda: CrossbarArray(4, 4).program_region(Region(0, 5, 0, 2), Pulse.form()),
     "outside the 4 x 4 array"),
    (lambda: CrossbarArray(4, 4).read(np.array([4]), np.array([0])),
     r"rows index 4 is outside the array \[0, 4\)"),
    (lambda: CrossbarArray(4, 4).read(np.array([0]), np.array([0]), v_read=-0.2),
     r"v_read must be in \(0, 2\] V"),
    (lambda: CrossbarArray(4, 4).program(np.array([1, 1]), np.array([2, 2]), Pulse.form()),
     "listed more than once"),
    (lambda: CrossbarArray(4, 4).program_cells([0], [0], "reset", [0.5], 100.0),
     "RESET pulse needs amplitudes of sign <= 0"),
])
def test_bad_parameters_name_themselves(make, message):
    with pytest.raises(ValueError, match=message):
        make()
