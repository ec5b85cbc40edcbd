"""Weight sources: determinism, statistics, sparsity, provenance."""

import numpy as np
import pytest
from scipy import stats

from lsm import ArrayWeights, GaussianWeights, LSMConfig, WeightSource
from lsm.weights import DIFFERENTIAL_SIGMA_US


def test_sources_implement_the_protocol():
    assert isinstance(GaussianWeights(), WeightSource)
    assert isinstance(ArrayWeights(np.zeros((1, 1)), np.zeros((1, 1))), WeightSource)


def test_gaussian_is_deterministic_per_seed():
    cfg = LSMConfig()
    a, b = GaussianWeights().build(cfg), GaussianWeights().build(cfg)
    assert a.fingerprint() == b.fingerprint()
    assert a.w_in.dtype == np.float32 and a.w_in.flags.c_contiguous
    c = GaussianWeights().build(cfg.replace(seed=1))
    assert c.fingerprint() != a.fingerprint()
    d = GaussianWeights(seed=1).build(cfg)  # explicit seed overrides the config's
    assert d.fingerprint() == c.fingerprint()


def test_gaussian_statistics():
    cfg = LSMConfig(n_inputs=400, n_neurons=500)
    w = GaussianWeights().build(cfg).w_in.ravel().astype(np.float64)
    scale = DIFFERENTIAL_SIGMA_US * cfg.w_in_const
    # 200,000 draws: the sample std is within 1 % of sigma with overwhelming probability
    assert abs(w.std() / scale - 1) < 0.01
    assert abs(w.mean()) < 5 * scale / np.sqrt(w.size)
    assert stats.kstest(w / scale, "norm").pvalue > 1e-3


def test_sparsity_is_binomial_and_independent_of_the_other_matrix():
    cfg = LSMConfig(n_neurons=300, p_rec=0.1)
    ws = GaussianWeights().build(cfg)
    n = ws.w_rec.size
    frac = np.count_nonzero(ws.w_rec) / n
    assert abs(frac - 0.1) < 5 * np.sqrt(0.1 * 0.9 / n)
    dense = GaussianWeights().build(cfg.replace(p_rec=1.0))
    np.testing.assert_array_equal(ws.w_in, dense.w_in)  # p_rec does not move w_in
    mask = ws.w_rec != 0
    np.testing.assert_array_equal(ws.w_rec[mask], dense.w_rec[mask])


def test_provenance_tells_sources_apart():
    cfg = LSMConfig(n_inputs=3, n_neurons=2)
    g = GaussianWeights().build(cfg).provenance
    assert g["source"] == "gaussian" and g["seed"] == 0
    a = ArrayWeights(np.ones((3, 2)), np.zeros((2, 2)), name="mine").build(cfg).provenance
    b = ArrayWeights(np.ones((3, 2)) * 2, np.zeros((2, 2)), name="mine").build(cfg).provenance
    assert a["name"] == "mine" and a["sha256"] != b["sha256"]


@pytest.mark.parametrize("kwargs, message", [
    ({"sigma": 0.0}, "sigma must be finite and > 0"),
    ({"sigma": float("nan")}, "sigma must be finite and > 0"),
    ({"seed": -1}, "seed must be a non-negative int"),
])
def test_gaussian_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianWeights(**kwargs)


def test_array_weights_reject_non_numeric():
    with pytest.raises(ValueError, match=r"ArrayWeights\(x\): w_in must be numeric"):
        ArrayWeights(np.array([["a"]]), np.zeros((1, 1)), name="x").build(
            LSMConfig(n_inputs=1, n_neurons=1))
