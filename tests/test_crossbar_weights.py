"""CrossbarWeights: static map and in-the-loop multiplies, against the array model."""

import numpy as np
import pytest
from conftest import random_raster

from lsm import LSM, LSMConfig
from lsm.crossbar import ADC, CrossbarArray, DeviceParams, DifferentialMapping, InputDAC
from lsm.kernels import crossbar_multiply, hash_normal
from lsm.weights import CrossbarWeights


def test_static_weights_have_the_macro_statistics():
    cfg = LSMConfig()
    lsm = LSM(cfg, weights=CrossbarWeights())
    prov = lsm.provenance
    assert prov["source"] == "crossbar" and prov["mapping"]["rows"] == 456
    assert 6.6 <= prov["conductance_us"]["std"] <= 6.9
    # w = const * (G+ - G-): std = const * sqrt(2) * 6.8 uS, mean 0
    sd = cfg.w_in_const * np.sqrt(2) * prov["conductance_us"]["std"]
    assert abs(lsm.w_in.std() / sd - 1) < 0.03
    assert abs(lsm.w_in.mean()) < 4 * sd / np.sqrt(lsm.w_in.size)


def test_static_weights_are_the_read_map():
    """Rebuild the same array by hand: same seed, same pulse, same read -> same weights."""
    cfg = LSMConfig(n_inputs=20, n_neurons=10, seed=5)
    ws = CrossbarWeights(array_rows=64, array_cols=64).build(cfg)
    m = DifferentialMapping(20, 10, 64, 64)
    arr = CrossbarArray(64, 64, seed=5)
    rr, cc = m.region.cells()
    arr.program(rr, cc, CrossbarWeights().form_pulse)
    arr.advance(1.0)
    g = arr.read_region(m.region).astype(np.float32)  # the map is a float32 measurement
    w_in, w_rec = m.weights(g.astype(np.float64), 0.07, 0.07)
    np.testing.assert_array_equal(ws.w_in, w_in)
    np.testing.assert_array_equal(ws.w_rec, w_rec)


def test_deterministic_and_seeded():
    cfg = LSMConfig(n_inputs=30, n_neurons=20)
    a = CrossbarWeights().build(cfg)
    b = CrossbarWeights().build(cfg)
    c = CrossbarWeights(seed=1).build(cfg)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_sparse_pairs_stay_unformed_and_zero():
    cfg = LSMConfig(n_inputs=40, n_neurons=60, p_rec=0.2)
    ws = CrossbarWeights().build(cfg)
    frac = np.count_nonzero(ws.w_rec) / ws.w_rec.size
    assert abs(frac - 0.2) < 5 * np.sqrt(0.2 * 0.8 / ws.w_rec.size)
    assert np.count_nonzero(ws.w_in) == ws.w_in.size


def test_too_large_for_the_array():
    with pytest.raises(ValueError, match="the array has 512 x 512"):
        LSM(LSMConfig(n_inputs=2312, n_neurons=1000), weights=CrossbarWeights())


def test_in_loop_with_ideal_device_and_fine_adc_matches_static(rng):
    cfg = LSMConfig()
    ideal = DeviceParams.ideal()
    static = LSM(cfg, weights=CrossbarWeights(device=ideal))
    loop = LSM(cfg, weights=CrossbarWeights(device=ideal, in_loop=True,
                                            adc=ADC(bits=24, r_tia_kohm=1.0)))
    np.testing.assert_array_equal(static.w_in, loop.w_in)
    raster = random_raster(rng, 100, 50, 256, 0.05)
    a = static.encode(raster, features="binned", progress=False)
    b = loop.encode(raster, features="binned", progress=False)
    assert a.mean() > 0.02
    assert (a == b).mean() >= 0.999


def test_in_loop_is_deterministic_batch_and_thread_invariant(rng):
    import numba

    cfg = LSMConfig(n_inputs=64, n_neurons=50, n_bins=30)
    lsm = LSM(cfg, weights=CrossbarWeights(in_loop=True))
    raster = random_raster(rng, 40, 30, 64, 0.1)
    a = lsm.encode(raster, features="binned", progress=False)
    b = lsm.encode(raster, features="binned", progress=False, batch_size=7)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        c = lsm.encode(raster, features="binned", progress=False)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    with pytest.raises(ValueError, match="numba backend only"):
        lsm.encode(raster, backend="torch", progress=False)


def test_in_loop_noise_matches_per_cell_read_noise():
    """The kernel draws one Gaussian per column for the sum of the active cells' noise; its
    spread must match the array model, which draws every cell's noise separately."""
    cfg = LSMConfig(n_inputs=64, n_neurons=16)
    cw = CrossbarWeights(array_rows=96, array_cols=64, in_loop=True,
                         adc=ADC(bits=24, r_tia_kohm=1.0))
    loop = cw.build(cfg).in_loop
    active = np.random.default_rng(3).choice(64, 30, replace=False)
    p = loop.physics
    acc = p.g_in_us[active].sum(0)
    keys = np.arange(20000, dtype=np.uint64) * np.uint64(1 << 20)
    f = np.float32
    out = crossbar_multiply(acc, p.m2_in_us2, 30, p.m2_rec_us2, 0, keys, f(p.v_read_v),
                            f(p.noise_scale_v), f(p.adc_codes_per_ua), f(p.adc_offset_codes),
                            f(p.max_code), f(loop.gain_in_per_us))
    # the same cells, read with per-cell noise by the array model
    arr = CrossbarArray(96, 64, seed=cfg.seed)
    m = DifferentialMapping(64, 16, 96, 64)
    arr.program(*m.region.cells(), cw.form_pulse)
    arr.advance(cw.read_time_s)
    x = np.zeros((20000, 64), np.uint8)
    x[:, active] = 1
    i = arr.vmm(np.arange(64), np.arange(32), x, dac=InputDAC(0.2), return_currents=True)
    ref = cfg.w_in_const * (i[:, :16] - i[:, 16:]) / 0.2
    ideal = cfg.w_in_const * (acc[:16] - acc[16:])
    np.testing.assert_allclose(out.mean(0), ideal, atol=5 * out.std(0).max() / np.sqrt(20000)
                               + 1e-4)
    ratio = out.std(0) / ref.std(0)
    assert abs(ratio.mean() - 1) < 0.05, ratio
    assert np.all(np.abs(ratio - 1) < 0.2), ratio


def test_hash_normal_statistics():
    z = hash_normal(np.uint64(12345), np.arange(1_000_000, dtype=np.uint64)).astype(np.float64)
    assert abs(z.mean()) < 0.005
    assert abs(z.std() - 1) < 0.005
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.005
    assert np.abs(z).max() <= np.sqrt(12) / 2 * 2 + 1e-6  # Irwin-Hall(4) support: +-2 sqrt(3)
    assert abs(np.mean(np.abs(z) > 2) - 0.0455) < 0.005  # tails close to a Gaussian's
