"""Readout features: time windows counted inside the kernels, and the "no reservoir" features of
the input events, each against a direct count."""

import numpy as np
import pytest
from conftest import random_raster

from lsm import LSM, EventBatch, LSMConfig
from lsm.features import describe_features, event_features, window_of_bin
from lsm.weights import CrossbarWeights


def windows_of_raster(raster: np.ndarray, n_windows: int) -> np.ndarray:
    """The direct count: sum each window's bins of a (n, T, d) raster, flattened window-major."""
    n, t, d = raster.shape
    out = np.zeros((n, n_windows, d), np.int64)
    for b in range(t):
        out[:, b * n_windows // t] += raster[:, b]
    return out.reshape(n, n_windows * d)


@pytest.mark.parametrize("n_windows", [1, 3, 7, 40])
@pytest.mark.parametrize("p_rec", [1.0, 0.1], ids=["dense", "csr"])
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_window_counts_are_the_binned_spikes_summed(rng, n_windows, p_rec, backend):
    cfg = LSMConfig(n_inputs=32, n_neurons=24, n_bins=40, p_rec=p_rec, p_in=p_rec, v_th=1.0,
                    w_in_const=0.5, w_rec_const=0.3)
    lsm = LSM(cfg, backend=backend, csr_below=0.5)
    raster = random_raster(rng, 30, 40, 32, 0.1)
    binned = lsm.encode(raster, features="binned", progress=False)
    assert 0.02 < binned.mean() < 0.9, "the reservoir must be active for the test to mean much"
    win = lsm.encode(raster, features="windows", n_windows=n_windows, progress=False,
                     batch_size=11)
    assert win.dtype == np.int32 and win.shape == (30, n_windows * 24)
    np.testing.assert_array_equal(win, windows_of_raster(binned, n_windows))
    counts = lsm.encode(raster, features="counts", progress=False)
    np.testing.assert_array_equal(win.reshape(30, n_windows, 24).sum(1), counts)
    rates = lsm.encode(raster, features="rates", progress=False)
    np.testing.assert_allclose(rates, counts / 40, rtol=1e-6)


def test_window_counts_in_the_crossbar_loop(rng):
    cfg = LSMConfig(n_inputs=16, n_neurons=12, n_bins=25, v_th=0.5, w_in_const=0.05,
                    w_rec_const=0.05)
    lsm = LSM(cfg, weights=CrossbarWeights(in_loop=True, array_rows=64, array_cols=64, seed=3))
    raster = random_raster(rng, 12, 25, 16, 0.2)
    binned = lsm.encode(raster, features="binned", progress=False)
    assert binned.any()
    win = lsm.encode(raster, features="windows", n_windows=4, progress=False)
    np.testing.assert_array_equal(win, windows_of_raster(binned, 4))


def test_windows_cover_every_bin_once():
    for t in (1, 5, 49, 50, 129):
        for k in range(1, t + 1, max(1, t // 7)):
            w = window_of_bin(t, k)
            assert w[0] == 0 and w[-1] == k - 1
            assert np.all(np.diff(w) >= 0) and np.all(np.diff(w) <= 1)
            sizes = np.bincount(w, minlength=k)
            assert sizes.min() >= t // k and sizes.max() <= -(-t // k)


def test_event_features_are_a_direct_count(rng):
    streams = []
    for _ in range(9):
        n = int(rng.integers(0, 60))
        streams.append((np.sort(rng.integers(0, 20, n)), rng.integers(0, 6, n)))
    streams.append((np.array([3, 3, 3]), np.array([2, 2, 2])))  # a repeated event counts thrice
    ev = EventBatch.from_streams(streams, 20, 6)
    direct = np.zeros((len(streams), 20, 6), np.int64)
    for i, (b, c) in enumerate(streams):
        np.add.at(direct[i], (b, c), 1)
    for k in (1, 3, 20):
        np.testing.assert_array_equal(event_features(ev, "windows", k),
                                      windows_of_raster(direct, k))
    np.testing.assert_array_equal(event_features(ev, "counts"), direct.sum(1))
    np.testing.assert_allclose(event_features(ev, "rates"), direct.sum(1) / 20, rtol=1e-6)
    assert event_features(ev, "counts")[-1, 2] == 3


def test_event_features_match_a_reservoir_that_copies_its_input(rng):
    """An identity reservoir (w_in = I, no recurrence, threshold below one event, no memory)
    spikes exactly where a (binary) input event is: its features are the input's."""
    cfg = LSMConfig(n_inputs=10, n_neurons=10, n_bins=30, decay=0.0, v_th=0.5, p_rec=0.0)
    eye = np.eye(10, dtype=np.float32)
    lsm = LSM(cfg, weights=(eye, np.zeros((10, 10), np.float32)))
    ev = EventBatch.from_raster(random_raster(rng, 8, 30, 10, 0.2))
    for kind, k in (("windows", 6), ("counts", 1), ("rates", 1)):
        np.testing.assert_array_equal(lsm.encode(ev, features=kind, n_windows=k, progress=False),
                                      event_features(ev, kind, k))


@pytest.mark.parametrize("bad", [0, 41, 2.0, True, "5", None])
def test_a_bad_number_of_windows_is_refused(bad):
    lsm = LSM(LSMConfig(n_inputs=4, n_neurons=3, n_bins=40))
    raster = np.zeros((1, 40, 4), np.uint8)
    with pytest.raises(ValueError, match=r"n_windows must be an integer from 1 to 40"):
        lsm.encode(raster, features="windows", n_windows=bad, progress=False)
    with pytest.raises(ValueError, match=r"n_windows must be an integer from 1 to 40"):
        event_features(EventBatch.from_raster(raster), "windows", bad)
    # other kinds ignore it
    assert lsm.encode(raster, features="counts", n_windows=bad, progress=False).shape == (1, 3)


def test_an_unknown_kind_is_refused():
    lsm = LSM(LSMConfig(n_inputs=4, n_neurons=3, n_bins=5))
    with pytest.raises(ValueError, match="features must be one of"):
        lsm.encode(np.zeros((1, 5, 4), np.uint8), features="spikes", progress=False)
    assert describe_features("windows", 5) == "windows(5)"
    assert describe_features("rates") == "rates"
