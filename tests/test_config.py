"""LSMConfig: paper defaults, validation, TOML round-trip."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsm import LSMConfig


def test_defaults_are_the_papers_nmnist_encoder():
    c = LSMConfig()
    assert (c.n_inputs, c.n_neurons, c.n_bins) == (256, 200, 50)
    assert (c.decay, c.v_th, c.w_in_const, c.w_rec_const) == (0.9, 5.0, 0.07, 0.07)
    assert c.reset == "zero" and c.p_in == 1.0 and c.p_rec == 1.0
    assert LSMConfig.nmnist() == c


def test_ntidigits_preset():
    c = LSMConfig.ntidigits()
    assert (c.n_inputs, c.n_neurons, c.n_bins) == (64, 200, 129)
    assert (c.decay, c.v_th, c.w_in_const) == (0.97, 5.3, 0.08)
    assert LSMConfig.ntidigits(seed=3).seed == 3


@pytest.mark.parametrize("field, value, error, message", [
    ("n_inputs", -1, ValueError, "n_inputs must be >= 1"),
    ("n_neurons", 0, ValueError, "n_neurons must be >= 1"),
    ("n_bins", 2.5, TypeError, "n_bins must be an integer"),
    ("n_bins", True, TypeError, "n_bins must be an integer"),
    ("decay", 1.5, ValueError, r"decay must be in \[0.0, 1.0\]"),
    ("decay", -0.1, ValueError, "decay must be in"),
    ("decay", math.nan, ValueError, "decay must be a finite number"),
    ("v_th", 0.0, ValueError, r"v_th must be in \(0.0, 1000000000000.0\]"),
    ("v_th", math.inf, ValueError, "v_th must be a finite number"),
    ("w_in_const", -0.07, ValueError, "w_in_const must be in"),
    ("p_in", 0.0, ValueError, r"p_in must be in \(0.0, 1.0\]"),
    ("p_rec", 1.1, ValueError, "p_rec must be in"),
    ("reset", "soft", ValueError, "reset must be one of"),
    ("seed", -3, ValueError, "seed must be >= 0"),
    ("decay", "0.9", TypeError, "decay must be a number"),
])
def test_validation_names_the_field(field, value, error, message):
    with pytest.raises(error, match=message):
        LSMConfig(**{field: value})


def test_numpy_scalars_are_normalised():
    import numpy as np

    c = LSMConfig(n_neurons=np.int64(10), decay=np.float32(0.5))
    assert type(c.n_neurons) is int and type(c.decay) is float
    assert c == LSMConfig(n_neurons=10, decay=0.5)


configs = st.builds(
    LSMConfig,
    n_inputs=st.integers(1, 5000), n_neurons=st.integers(1, 5000), n_bins=st.integers(1, 1000),
    decay=st.floats(0, 1), v_th=st.floats(1e-6, 1e6), reset=st.sampled_from(["zero", "subtract",
                                                                              "none"]),
    w_in_const=st.floats(0, 10), w_rec_const=st.floats(0, 10),
    p_in=st.floats(1e-6, 1), p_rec=st.floats(0, 1), seed=st.integers(0, 2**63 - 1),
)


@given(configs)
def test_toml_round_trip(cfg):
    assert LSMConfig.from_toml(cfg.to_toml()) == cfg


def test_save_and_load(tmp_path):
    cfg = LSMConfig.ntidigits(seed=11, p_rec=0.25)
    path = cfg.save(tmp_path / "sub" / "lsm.toml")
    assert LSMConfig.load(path) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["lsm.toml"]  # no temporary left behind


def test_bad_toml_names_the_source_and_key(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[lsm]\nn_neurons = 10\ntau = 3\n")
    with pytest.raises(ValueError, match=r"bad.toml: unknown LSMConfig field\(s\) \['tau'\]"):
        LSMConfig.load(p)
    p.write_text("[lsm]\ndecay = 2.0\n")
    with pytest.raises(ValueError, match=r"bad.toml: LSMConfig.decay must be in"):
        LSMConfig.load(p)
    p.write_text("[lsm\n")
    with pytest.raises(ValueError, match="bad.toml: not valid TOML"):
        LSMConfig.load(p)


@pytest.mark.parametrize("change, message", [
    (dict(epochs=0), "ReadoutConfig.epochs must be >= 1"),
    (dict(epochs=2.5), "ReadoutConfig.epochs must be an integer"),
    (dict(epochs=True), "ReadoutConfig.epochs must be an integer"),
    (dict(hidden=-3), "ReadoutConfig.hidden must be >= 1"),
    (dict(patience=0), "ReadoutConfig.patience must be >= 1"),
    (dict(batch_size=0), "ReadoutConfig.batch_size must be >= 1"),
    (dict(lr=0.0), r"ReadoutConfig.lr must be in \(0.0"),
    (dict(weight_decay=-1.0), "ReadoutConfig.weight_decay must be in"),
])
def test_a_readout_config_refuses_settings_that_cannot_train(change, message):
    from lsm.readout import ReadoutConfig

    with pytest.raises(ValueError, match=message):
        ReadoutConfig(**change)
