"""16-bit integer weight codes (LSMConfig.weight_format = "int16"): the quantisation, the kernel
against a NumPy reference on the quantised weights, determinism, agreement with float32, the
int32 overflow guard and bad settings."""

import numba
import numpy as np
import pytest
from conftest import random_raster
from hypothesis import given, settings
from hypothesis import strategies as st

from lsm import LSM, EventBatch, LSMConfig
from lsm.config import CODE_MAX, MAX_CODE_ROWS_PER_BIN
from lsm.reservoir import CSR_BELOW
from lsm.validation import InvalidTypeError
from lsm.weight_codes import WeightCodes, quantise

RESETS = ["zero", "subtract", "none"]


def reference_spikes_codes(bins, channels, n_bins, codes_in: WeightCodes,
                           codes_rec: WeightCodes, decay, v_th, reset="zero"):
    """The documented int16 update, written plainly: exact integer sums of the codes (int64
    here), converted to float32, scaled and added in float32, then the membrane equation."""
    n = codes_rec.codes.shape[0]
    c_in = codes_in.codes.astype(np.int64)
    c_rec = codes_rec.codes.astype(np.int64)
    decay, v_th = np.float32(decay), np.float32(v_th)
    u = np.zeros(n, np.float32)
    s = np.zeros(n, bool)
    out = np.zeros((n_bins, n), np.uint8)
    for t in range(n_bins):
        a = c_in[channels[bins == t]].sum(axis=0)
        b = c_rec[np.flatnonzero(s)].sum(axis=0)
        current = (codes_in.scale * a.astype(np.float32)
                   + codes_rec.scale * b.astype(np.float32))
        if reset == "zero":
            u = decay * np.where(s, np.float32(0), u) + current
        elif reset == "subtract":
            u = decay * u + current - np.where(s, v_th, np.float32(0))
        else:
            u = decay * u + current
        s = u > v_th
        out[t] = s
    return out


# ---------------------------------------------------------------- quantisation
def test_quantise_maps_the_largest_weight_to_the_largest_code(rng):
    w = rng.normal(0, 0.7, (300, 200)).astype(np.float32)
    q = quantise(w)
    assert q.codes.dtype == np.int16 and q.codes.flags.c_contiguous
    assert q.scale.dtype == np.float32
    assert np.abs(q.codes).max() == CODE_MAX
    assert q.scale == np.float32(np.abs(w).max() / CODE_MAX)
    err = q.weights().astype(np.float64) - w
    # half a step, plus the float32 rounding of the scale (32767 x 2**-24 of a step at most)
    # and of scale * code
    assert np.abs(err).max() <= 0.51 * q.scale
    assert np.abs(err).max() > 0.45 * q.scale  # it does round: 60,000 weights fill the step
    # the physics in LSMConfig's docstring: rms error about 4e-5 sigma, far below read noise
    assert np.sqrt(np.mean(err**2)) / w.std() < 6e-5


def test_quantise_zero_matrix_and_signs():
    q = quantise(np.zeros((3, 4), np.float32))
    assert q.scale == 0 and not q.codes.any()
    q = quantise(np.array([[-4.0, 1.0, 0.0, 4.0]], np.float32))
    np.testing.assert_array_equal(q.codes, [[-CODE_MAX, 8192, 0, CODE_MAX]])  # 8191.75


# ---------------------------------------------------------------- the kernel, exactly
@settings(max_examples=40, deadline=None)
@given(n_inputs=st.integers(1, 12), n_neurons=st.integers(1, 20), n_bins=st.integers(1, 15),
       decay=st.floats(0.0, 1.0), v_th=st.floats(0.05, 3.0), reset=st.sampled_from(RESETS),
       p_rec=st.sampled_from([1.0, 0.3]), csr_below=st.sampled_from([0.0, 1.0]),
       seed=st.integers(0, 2**31 - 1))
def test_int16_kernel_matches_the_reference_bit_for_bit(n_inputs, n_neurons, n_bins, decay,
                                                        v_th, reset, p_rec, csr_below, seed):
    cfg = LSMConfig(n_inputs=n_inputs, n_neurons=n_neurons, n_bins=n_bins, decay=decay,
                    v_th=v_th, reset=reset, w_in_const=0.3, w_rec_const=0.2, p_rec=p_rec,
                    seed=seed % 1000, weight_format="int16")
    lsm = LSM(cfg, csr_below=csr_below)  # 0.0: dense operands, 1.0: CSR (int16 data)
    g = np.random.default_rng(seed)
    # repeated (bin, channel) events count twice
    streams = []
    for _ in range(3):
        k = int(g.integers(0, 4 * n_bins))
        b = np.sort(g.integers(0, n_bins, k)).astype(np.int32)
        streams.append((b, g.integers(0, n_inputs, k).astype(np.int32)))
    ours = lsm.encode(streams, features="binned", progress=False)
    for i, (b, c) in enumerate(streams):
        ref = reference_spikes_codes(b, c, n_bins, *lsm.codes, decay, v_th, reset)
        np.testing.assert_array_equal(ours[i], ref)


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("p_rec", [1.0, 0.1, 0.01])
def test_int16_active_reservoir_matches_reference_numba_and_torch(rng, reset, p_rec):
    """A busy reservoir (10 % firing), dense and CSR recurrent codes, both backends: the torch
    backend sums the codes in float64, exact too, so all agree bit for bit."""
    cfg = LSMConfig(n_inputs=64, n_neurons=60, n_bins=40, reset=reset, p_rec=p_rec,
                    w_in_const=0.2, weight_format="int16")
    raster = random_raster(rng, 12, 40, 64, 0.08)
    numba_ = LSM(cfg).encode(raster, features="binned", progress=False)
    csr = LSM(cfg, csr_below=1.0).encode(raster, features="binned", progress=False)
    torch_ = LSM(cfg, backend="torch").encode(raster, features="binned", progress=False)
    lsm = LSM(cfg)
    assert 0.03 < numba_.mean() < 0.5, "the reservoir must be active for the test to mean much"
    for i in range(len(raster)):
        b, c = np.nonzero(raster[i])
        ref = reference_spikes_codes(b, c, 40, *lsm.codes, cfg.decay, cfg.v_th, reset)
        np.testing.assert_array_equal(numba_[i], ref, err_msg=f"sample {i}")
    np.testing.assert_array_equal(csr, numba_)
    np.testing.assert_array_equal(torch_, numba_)


def test_int16_is_not_the_float32_kernel(rng):
    """The codes are what the kernel uses: the reference on the float32 weights differs."""
    from reference import reference_spikes

    cfg = LSMConfig(n_inputs=64, n_neurons=60, n_bins=40, w_in_const=0.2,
                    weight_format="int16")
    lsm = LSM(cfg)
    raster = random_raster(rng, 64, 40, 64, 0.08)
    ours = lsm.encode(raster, features="binned", progress=False)
    w_in, w_rec = (q.weights() for q in lsm.codes)
    assert not np.array_equal(w_in, lsm.w_in)  # the codes round the weights
    same_as_float = 0
    for i in range(len(raster)):
        b, c = np.nonzero(raster[i])
        same_as_float += np.array_equal(
            ours[i], reference_spikes(b, c, 40, lsm.w_in, lsm.w_rec, cfg.decay, cfg.v_th))
    assert same_as_float < len(raster)


# ---------------------------------------------------------------- determinism
def test_int16_same_results_across_threads_and_batch_sizes(rng):
    cfg = LSMConfig(n_inputs=128, n_neurons=100, n_bins=30, p_rec=0.1, weight_format="int16")
    lsm = LSM(cfg)
    raster = random_raster(rng, 40, 30, 128, 0.06)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = lsm.encode(raster, features="windows", progress=False, batch_size=512)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = lsm.encode(raster, features="windows", progress=False, batch_size=7)
    finally:
        numba.set_num_threads(before)
    assert one.sum() > 0
    np.testing.assert_array_equal(one, many)


# ---------------------------------------------------------------- agreement with float32
def test_int16_agrees_with_float32_on_the_paper_encoder():
    """The paper's encoder (256 -> 200, 50 bins, 5 % input activity), 64 samples, seed 0. The
    codes round each weight by at most 1.5e-5 of the largest; the chaotic reservoir turns the
    rare flipped decision into a diverging sample. Measured: 0.9967 of all spike decisions
    equal, 60 of 64 samples identical, mean |rate difference| 0.0007 spikes/bin."""
    cfg = LSMConfig()
    raster = random_raster(np.random.default_rng(0), 64, cfg.n_bins, cfg.n_inputs, 0.05)
    f32 = LSM(cfg).encode(raster, features="binned", progress=False)
    i16 = LSM(cfg.replace(weight_format="int16")).encode(raster, features="binned",
                                                         progress=False)
    same = f32 == i16
    assert f32.mean() > 0.05
    assert same.mean() >= 0.99
    assert same.all(axis=(1, 2)).mean() >= 0.75
    assert np.abs(f32.mean(axis=1) - i16.mean(axis=1)).mean() < 0.005


# ---------------------------------------------------------------- the int32 accumulator
def test_the_most_rows_per_bin_sum_without_overflow():
    """65,538 events of one channel whose codes are all +32767 sum to 2,147,483,646, just
    inside int32: the neuron fires. A wrapped sum would be negative and stay silent."""
    assert MAX_CODE_ROWS_PER_BIN == 65538 and MAX_CODE_ROWS_PER_BIN * CODE_MAX <= 2**31 - 1
    assert (MAX_CODE_ROWS_PER_BIN + 1) * CODE_MAX > 2**31 - 1
    cfg = LSMConfig(n_inputs=2, n_neurons=3, n_bins=2, v_th=60000.0, weight_format="int16")
    w_in = np.ones((2, 3), np.float32)
    lsm = LSM(cfg, weights=(w_in, np.zeros((3, 3), np.float32)))
    k = MAX_CODE_ROWS_PER_BIN
    stream = (np.zeros(k, np.int32), np.zeros(k, np.int32))
    out = lsm.encode([stream], features="binned", progress=False)
    np.testing.assert_array_equal(out[0, 0], [1, 1, 1])  # 65538 > 60000
    assert not out[0, 1].any()


def test_overflow_guard_names_the_sample_and_bin():
    cfg = LSMConfig(n_inputs=2, n_neurons=3, n_bins=4, weight_format="int16")
    lsm = LSM(cfg)
    k = MAX_CODE_ROWS_PER_BIN + 1
    ok = (np.array([0, 1], np.int32), np.array([0, 1], np.int32))
    # as many events spread over bins is fine; one bin of them is refused
    spread = (np.repeat(np.arange(4, dtype=np.int32), k // 4 + 1), np.ones(4 * (k // 4 + 1),
                                                                           np.int32))
    assert lsm.encode([ok, spread], features="counts", progress=False).shape == (2, 3)
    crowded = (np.concatenate([np.zeros(3, np.int32), np.full(k, 2, np.int32)]),
               np.zeros(k + 3, np.int32))
    for backend in ("numba", "torch"):
        with pytest.raises(ValueError, match=r"sample 2, bin 2: 65539 input events.*int32"):
            lsm.encode([ok, spread, crowded], progress=False, backend=backend)
    # a chunk of a dataset names the sample by its index in the dataset
    with pytest.raises(ValueError, match=r"sample 1002, bin 2"):
        lsm.encode([ok, spread, crowded], progress=False, first_sample=1000)
    # float32 has no such limit
    LSM(cfg.replace(weight_format="float32")).encode([crowded], progress=False)


def test_too_many_neurons_for_the_recurrent_accumulator():
    with pytest.raises(ValueError, match=r"weight_format='int16'.*n_neurons=65539"):
        LSMConfig(n_inputs=1, n_neurons=MAX_CODE_ROWS_PER_BIN + 1, weight_format="int16")


# ---------------------------------------------------------------- settings
@pytest.mark.parametrize("value,exc", [("int8", ValueError), ("float16", ValueError),
                                       ("", ValueError), (16, InvalidTypeError),
                                       (None, InvalidTypeError)])
def test_bad_weight_format_is_refused_naming_the_field(value, exc):
    with pytest.raises(exc, match="LSMConfig.weight_format"):
        LSMConfig(weight_format=value)
    with pytest.raises(exc, match=r"cfg\.toml.*weight_format"):
        LSMConfig.from_dict({"weight_format": value}, source="cfg.toml")


def test_weight_format_round_trips_and_reaches_the_config_dict():
    cfg = LSMConfig(weight_format="int16")
    assert LSMConfig.from_toml(cfg.to_toml()) == cfg
    assert LSMConfig().weight_format == "float32"
    # the feature cache keys on LSMConfig.to_dict(): the two formats never share an entry
    assert cfg.to_dict() != LSMConfig().to_dict()
    assert cfg.to_dict()["weight_format"] == "int16"
    assert "weight_format='int16'" in repr(LSM(LSMConfig(n_inputs=4, n_neurons=3, n_bins=2,
                                                         weight_format="int16")))


def test_int16_refuses_in_loop_crossbar_weights():
    from lsm.weights import CrossbarWeights

    cfg = LSMConfig(n_inputs=16, n_neurons=8, n_bins=5, weight_format="int16")
    with pytest.raises(ValueError, match=r"weight_format='int16'.*CrossbarWeights"):
        LSM(cfg, weights=CrossbarWeights(in_loop=True))
    # static crossbar weights are weights like any other
    lsm = LSM(cfg, weights=CrossbarWeights())
    assert lsm.codes is not None


def test_default_storage_per_format():
    """int16 rows are half the bytes: dense rows stay the default down to 3 % nonzeros."""
    assert CSR_BELOW == {"float32": 0.3, "int16": 0.03}
    cfg = LSMConfig(n_inputs=32, n_neurons=50, n_bins=5, p_rec=0.1)
    f32, i16 = LSM(cfg), LSM(cfg.replace(weight_format="int16"))
    assert f32._rec_ops[0].size == 0 and f32._rec_ops[3].dtype == np.float32   # CSR
    assert i16._rec_ops[0].dtype == np.int16 and i16._rec_ops[0].shape == (50, 50)  # dense
    sparse = LSM(cfg.replace(weight_format="int16", p_rec=0.01))
    assert sparse._rec_ops[0].size == 0 and sparse._rec_ops[3].dtype == np.int16


def test_event_batch_and_streams_encode_alike_in_int16(rng):
    cfg = LSMConfig(n_inputs=32, n_neurons=40, n_bins=20, weight_format="int16")
    lsm = LSM(cfg)
    raster = random_raster(rng, 10, 20, 32, 0.1)
    a = lsm.encode(raster, features="counts", progress=False)
    b = lsm.encode(EventBatch.from_raster(raster), features="counts", progress=False)
    np.testing.assert_array_equal(a, b)
