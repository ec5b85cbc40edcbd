"""The reservoir: equivalence with snntorch and with a slow reference, features, bad input."""

import numpy as np
import pytest
import torch
from conftest import integer_weights, load_script, random_raster
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_spikes

from lsm import LSM, EventBatch, GaussianWeights, LSMConfig
from lsm.torch_backend import lif_snntorch

RESETS = ["zero", "subtract", "none"]


def snntorch_spikes(raster, lsm):
    c = lsm.config
    return lif_snntorch(torch.from_numpy(raster.astype(np.float32)), torch.from_numpy(lsm.w_in),
                        torch.from_numpy(lsm.w_rec), c.decay, c.v_th, c.reset).numpy()


# ---------------------------------------------------------------- snntorch equivalence
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("p_rec", [1.0, 0.1])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_same_spikes_as_snntorch_with_integer_weights(rng, reset, p_rec, backend):
    cfg = LSMConfig(n_inputs=64, n_neurons=50, n_bins=40, decay=0.9, v_th=5.0, reset=reset)
    w_in, w_rec = integer_weights(rng, 64, 50, p_rec)
    lsm = LSM(cfg, weights=(w_in, w_rec), backend=backend)
    raster = random_raster(rng, 40, 40, 64, 0.08)
    ours = lsm.encode(raster, features="binned", progress=False)
    ref = snntorch_spikes(raster, lsm)
    assert ref.sum() > 0.05 * ref.size, "the reservoir must be active for the test to mean much"
    assert ref.sum() < 0.95 * ref.size
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("cfg", [LSMConfig(), LSMConfig.ntidigits()], ids=["nmnist", "ntidigits"])
def test_float_weights_agree_with_snntorch(rng, cfg):
    lsm = LSM(cfg)  # Gaussian float weights: summation order may differ from torch's matmul
    raster = random_raster(rng, 64, cfg.n_bins, cfg.n_inputs, 0.05)
    ours = lsm.encode(raster, features="binned", progress=False)
    ref = snntorch_spikes(raster, lsm)
    agreement = (ours == ref).mean()
    print(f"spike agreement with snntorch on float weights ({cfg.n_inputs} inputs): "
          f"{agreement:.6f}")
    assert ref.mean() > 0.01
    assert agreement >= 0.999


# ---------------------------------------------------------------- slow reference, exactly
@settings(max_examples=40, deadline=None)
@given(n_inputs=st.integers(1, 12), n_neurons=st.integers(1, 20), n_bins=st.integers(1, 15),
       decay=st.floats(0.0, 1.0), v_th=st.floats(0.05, 3.0), reset=st.sampled_from(RESETS),
       p_rec=st.sampled_from([1.0, 0.3]), seed=st.integers(0, 2**31 - 1))
def test_kernel_matches_slow_reference_bit_for_bit(n_inputs, n_neurons, n_bins, decay, v_th,
                                                   reset, p_rec, seed):
    cfg = LSMConfig(n_inputs=n_inputs, n_neurons=n_neurons, n_bins=n_bins, decay=decay,
                    v_th=v_th, reset=reset, w_in_const=0.3, w_rec_const=0.2, p_rec=p_rec,
                    seed=seed)
    lsm = LSM(cfg, weights=GaussianWeights(sigma=1.0))
    rng = np.random.default_rng(seed)
    streams = []
    for _ in range(3):
        k = int(rng.integers(0, 3 * n_bins))
        streams.append((np.sort(rng.integers(0, n_bins, k)), rng.integers(0, n_inputs, k)))
    ours = lsm.encode(streams, features="binned", progress=False)
    for i, (b, c) in enumerate(streams):
        ref = reference_spikes(b, c, n_bins, lsm.w_in, lsm.w_rec, cfg.decay, cfg.v_th, reset)
        np.testing.assert_array_equal(ours[i], ref, err_msg=f"sample {i}")


def test_repeated_events_count_twice(rng):
    cfg = LSMConfig(n_inputs=3, n_neurons=4, n_bins=3, v_th=1.5, w_in_const=1.0)
    w_in = np.ones((3, 4), np.float32)
    lsm = LSM(cfg, weights=(w_in, np.zeros((4, 4), np.float32)))
    once = lsm.encode([(np.array([0]), np.array([1]))], features="binned", progress=False)
    twice = lsm.encode([(np.array([0, 0]), np.array([1, 1]))], features="binned", progress=False)
    assert once.sum() == 0  # 1.0 < 1.5
    assert twice[0, 0].tolist() == [1, 1, 1, 1]  # 2.0 > 1.5


def test_hand_computed_single_neuron():
    # one input, one neuron, weight 2, threshold 3, decay 0.5, hard reset:
    # u: 2, 3, 3.5 (spike), 2 (reset then +2), 3, 3.5 (spike)
    cfg = LSMConfig(n_inputs=1, n_neurons=1, n_bins=6, decay=0.5, v_th=3.0)
    lsm = LSM(cfg, weights=(np.array([[2.0]]), np.array([[0.0]])))
    raster = np.ones((1, 6, 1), np.uint8)
    spikes = lsm.encode(raster, features="binned", progress=False)
    assert spikes[0, :, 0].tolist() == [0, 0, 1, 0, 0, 1]


# ---------------------------------------------------------------- features and determinism
def test_feature_kinds_are_consistent(rng):
    cfg = LSMConfig(n_inputs=32, n_neurons=20, n_bins=25)
    lsm = LSM(cfg)
    raster = random_raster(rng, 10, 25, 32, 0.1)
    counts = lsm.encode(raster, features="counts", progress=False)
    rates = lsm.encode(raster, features="rates", progress=False)
    binned = lsm.encode(raster, features="binned", progress=False)
    assert counts.dtype == np.int32 and rates.dtype == np.float32 and binned.dtype == np.uint8
    assert binned.shape == (10, 25, 20)
    np.testing.assert_array_equal(binned.sum(axis=1), counts)
    np.testing.assert_allclose(rates, counts / 25.0, rtol=1e-6)


def test_raster_streams_and_eventbatch_give_the_same_features(rng):
    cfg = LSMConfig(n_inputs=16, n_neurons=12, n_bins=10, w_in_const=0.3)
    lsm = LSM(cfg)
    raster = random_raster(rng, 6, 10, 16, 0.2)
    batch = EventBatch.from_raster(raster)
    streams = [batch.sample(i) for i in range(len(batch))]
    a = lsm.encode(raster, features="counts", progress=False)
    b = lsm.encode(streams, features="counts", progress=False)
    c = lsm.encode(batch, features="counts", progress=False, batch_size=4)
    d = lsm.encode(torch.from_numpy(raster), features="counts", progress=False)
    for other in (b, c, d):
        np.testing.assert_array_equal(a, other)


def test_same_config_and_seed_same_features_bit_for_bit(rng):
    raster = random_raster(rng, 20, 50, 256, 0.05)
    a = LSM(LSMConfig(seed=7)).encode(raster, progress=False)
    b = LSM(LSMConfig(seed=7)).encode(raster, progress=False)
    c = LSM(LSMConfig(seed=8)).encode(raster, progress=False)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_thread_count_does_not_change_results(rng):
    import numba

    raster = random_raster(rng, 30, 50, 256, 0.05)
    lsm = LSM(LSMConfig())
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = lsm.encode(raster, features="binned", progress=False)
    finally:
        numba.set_num_threads(before)
    many = lsm.encode(raster, features="binned", progress=False)
    np.testing.assert_array_equal(one, many)


def test_csr_and_dense_weights_are_bit_identical(rng):
    cfg = LSMConfig(n_inputs=64, n_neurons=80, p_in=0.2, p_rec=0.1, w_in_const=0.2)
    raster = random_raster(rng, 20, 50, 64, 0.1)
    sparse = LSM(cfg, csr_below=1.0)
    dense = LSM(cfg, csr_below=0.0)
    assert sparse._rec_ops[0].size == 0 and dense._rec_ops[0].size > 0
    a = sparse.encode(raster, features="binned", progress=False)
    b = dense.encode(raster, features="binned", progress=False)
    assert a.sum() > 0
    np.testing.assert_array_equal(a, b)


def test_empty_samples_encode_to_zeros(rng):
    cfg = LSMConfig(n_inputs=8, n_neurons=5, n_bins=4)
    lsm = LSM(cfg)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    full = (np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3]))
    out = lsm.encode([empty, full, empty], features="counts", progress=False)
    assert out.shape == (3, 5)
    assert out[0].sum() == 0 and out[2].sum() == 0
    assert lsm.encode([], progress=False).shape == (0, 5)
    assert lsm.encode(np.zeros((0, 4, 8)), progress=False).shape == (0, 5)


# ---------------------------------------------------------------- bad input
@pytest.fixture
def small_lsm():
    return LSM(LSMConfig(n_inputs=8, n_neurons=5, n_bins=4))


@pytest.mark.parametrize("x, message", [
    (np.zeros((2, 4, 9)), r"expected \(n_samples, n_bins=4, n_inputs=8\)"),
    (np.zeros((2, 5, 8)), r"expected \(n_samples, n_bins=4, n_inputs=8\)"),
    (np.zeros((4, 8)), r"raster must have shape"),
])
def test_wrong_raster_shapes(small_lsm, x, message):
    with pytest.raises(ValueError, match=message):
        small_lsm.encode(x, progress=False)


def test_non_binary_raster_names_the_sample(small_lsm):
    x = np.zeros((3, 4, 8))
    x[2, 1, 5] = 2
    with pytest.raises(ValueError, match=r"sample 2, bin 1, channel 5"):
        small_lsm.encode(x, progress=False)
    x[2, 1, 5] = np.nan
    with pytest.raises(ValueError, match=r"binary"):
        small_lsm.encode(x, progress=False)


@pytest.mark.parametrize("stream, message", [
    ((np.array([0, 1]), np.array([3, 8])), r"sample 1: channels\[1\] = 8 is outside \[0, 8\)"),
    ((np.array([0, 4]), np.array([3, 2])), r"sample 1: bins\[1\] = 4 is outside \[0, 4\)"),
    ((np.array([0, -1]), np.array([3, 2])), r"sample 1: bins\[1\] = -1"),
    ((np.array([2, 1]), np.array([3, 2])), r"sample 1: bins out of order at event 1"),
    ((np.array([0.0, 1.0]), np.array([3, 2])), r"sample 1: bins must hold integers"),
    ((np.array([0, 1, 2]), np.array([3, 2])), r"sample 1: bins and channels differ in length"),
    ((np.array([[0]]), np.array([3])), r"sample 1: bins must be 1-D"),
    ("nonsense", r"sample 1: an event stream must be a \(bins, channels\) pair"),
])
def test_bad_event_streams_name_the_sample(small_lsm, stream, message):
    good = (np.array([0, 3]), np.array([0, 7]))
    with pytest.raises(ValueError, match=message):
        small_lsm.encode([good, stream], progress=False)


@pytest.mark.parametrize("w_in, w_rec, message", [
    (np.zeros((8, 4)), np.zeros((5, 5)), r"w_in has shape \(8, 4\), expected \(8, 5\)"),
    (np.zeros((8, 5)), np.zeros((5, 4)), r"w_rec has shape \(5, 4\), expected \(5, 5\)"),
    (np.full((8, 5), np.nan), np.zeros((5, 5)), r"w_in\[0, 0\] = nan is not finite"),
    (np.zeros((8, 5)), np.where(np.eye(5) > 0, np.inf, 0.0), r"w_rec\[0, 0\] = inf is not finite"),
])
def test_bad_weights(w_in, w_rec, message):
    with pytest.raises(ValueError, match=message):
        LSM(LSMConfig(n_inputs=8, n_neurons=5, n_bins=4), weights=(w_in, w_rec))


def test_bad_arguments(small_lsm):
    x = np.zeros((1, 4, 8))
    with pytest.raises(ValueError, match="features must be one of"):
        small_lsm.encode(x, features="spikes", progress=False)
    with pytest.raises(ValueError, match="backend must be one of"):
        small_lsm.encode(x, backend="jax", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        small_lsm.encode(x, batch_size=0, progress=False)
    with pytest.raises(TypeError, match="weights must be a WeightSource"):
        LSM(LSMConfig(), weights="gaussian")
    with pytest.raises(TypeError, match="x must be"):
        small_lsm.encode(42, progress=False)


def test_large_breakdown_counts_the_work_it_bounds():
    """The benchmark's work counts come from the data; its bound is finite (no timing asserted)."""
    mod = load_script("benchmarks/large_breakdown.py")
    r = mod.main(24)
    assert r["input_events_per_sample"] == pytest.approx(0.04 * 2312 * 50, rel=0.03)
    assert r["recurrent_fan_out"] == pytest.approx(100, rel=0.05)
    assert r["spikes_per_sample"] > 0
    assert 0 < r["bound_samples_per_s"] < float("inf") and r["bound_ratio_vs_torch"] > 0
    # the int16 weight codes: half the bytes per row, the same work counted
    assert r["int16_spikes_per_sample"] > 0 and r["int16_samples_per_s"] > 0
    assert 0 < r["int16_bound_samples_per_s"] < float("inf")
    assert r["l2_int16_row_add_gb_per_s"] > 0
