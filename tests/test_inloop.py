"""The in-loop path: the InLoopEncoder protocol, its two implementations (the simulated crossbar
and the chip loop), the checks at the boundary, and the crossbar's in-loop physics."""

from pathlib import Path

import numpy as np
import pytest
from conftest import random_raster
from test_membrane import CURRENT, DECAY, HAND, V_TH

from hw.weights import MacroInLoop
from lsm import LSM, EventBatch, LSMConfig, WeightSet
from lsm.crossbar.inloop import InLoopPhysics, clipped_normal_variance
from lsm.inloop import (
    ENCODE_KEYWORDS,
    InLoopCrossbar,
    InLoopEncoder,
    check_encode_arguments,
    check_in_loop_encoder,
)
from lsm.kernels import RESET_CODES, activity_off, lif_events, membrane_update
from lsm.weights import CrossbarWeights

ROOT = Path(__file__).parents[1]


# ---------------------------------------------------------------- a chip loop without a chip
class FakeMacro:
    """``vmm`` returns the bit-line currents (uA) of ``x @ G`` at ``v_read``, as 'codes'."""

    def __init__(self, g_us):
        self.g_us = np.asarray(g_us, np.float64)
        self.multiplies = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def vmm(self, rows, cols, x, v_read):
        self.multiplies.append(rows)
        g = self.g_us[rows[0]:rows[1], cols[0]:cols[1]]
        return (x.astype(np.float64) @ g) * v_read


class IdentityADC:
    def currents(self, codes):
        return np.asarray(codes, np.float64)


class FakeMacroSource:
    """What MacroInLoop needs of MacroWeights: open_macro(), v_read, g_unit_us."""

    v_read = 0.5
    g_unit_us = 1.0

    def __init__(self, macro):
        self.macro = macro

    def open_macro(self):
        return self.macro


class FakeChipWeights:
    """A weight source whose in-loop encoder is MacroInLoop on a FakeMacro: one input row of
    G+ = CURRENT, G- = 0 and one recurrent row of G+ = G- = 3 (differential weight 0)."""

    def __init__(self):
        self.macro = FakeMacro([[CURRENT, 0.0], [3.0, 3.0]])

    def build(self, config):
        loop = MacroInLoop(FakeMacroSource(self.macro), (0, 2, 0, 2), config, IdentityADC())
        return WeightSet(np.full((1, 1), CURRENT, np.float32), np.zeros((1, 1), np.float32),
                         {"source": "fake-chip"}, in_loop=loop)


@pytest.mark.parametrize("w_rec_const", [1.0, 0.5])  # one multiply per bin, or two
@pytest.mark.parametrize("reset", sorted(HAND))
def test_chip_loop_by_hand(reset, w_rec_const):
    cfg = LSMConfig(n_inputs=1, n_neurons=1, n_bins=7, decay=DECAY, v_th=V_TH, reset=reset,
                    w_in_const=1.0, w_rec_const=w_rec_const)
    source = FakeChipWeights()
    lsm = LSM(cfg, weights=source)
    spikes = lsm.encode(np.ones((2, 7, 1), np.uint8), features="binned", progress=False)
    assert spikes[:, :, 0].tolist() == [HAND[reset][1]] * 2
    assert {tuple(r) for r in source.macro.multiplies} == (
        {(0, 2)} if w_rec_const == 1.0 else {(0, 1), (1, 2)})


def test_chip_loop_uses_the_shared_membrane_update(monkeypatch):
    import hw.weights

    seen = []

    def spy(*args):
        seen.append(args[-1])
        return membrane_update(*args)

    monkeypatch.setattr(hw.weights, "membrane_update", spy)
    for reset in ("zero", "subtract", "none"):
        cfg = LSMConfig(n_inputs=1, n_neurons=1, n_bins=3, reset=reset, w_in_const=1.0,
                        w_rec_const=1.0)
        LSM(cfg, weights=FakeChipWeights()).encode(np.ones((1, 3, 1), np.uint8),
                                                   progress=False)
    assert seen == [RESET_CODES[r] for r in ("zero", "subtract", "none") for _ in range(3)]


def test_no_literal_reset_codes_outside_the_kernels():
    """The reset rules are compared by name: no ``reset_mode == 0`` anywhere else."""
    import re

    pattern = re.compile(r"reset(_mode)?\s*==\s*\d")
    for path in [*(ROOT / "lsm").rglob("*.py"), *(ROOT / "hw").rglob("*.py")]:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not pattern.search(line), f"{path}:{i}: {line.strip()}"


# ---------------------------------------------------------------- the protocol
def test_both_implementations_satisfy_the_protocol():
    cfg = LSMConfig(n_inputs=8, n_neurons=4, n_bins=5)
    loop = CrossbarWeights(in_loop=True, array_rows=16, array_cols=16).build(cfg).in_loop
    assert isinstance(loop, InLoopCrossbar) and isinstance(loop, InLoopEncoder)
    chip = FakeChipWeights().build(LSMConfig(n_inputs=1, n_neurons=1, n_bins=3)).in_loop
    assert isinstance(chip, InLoopEncoder)
    for enc in (loop, chip):
        check_in_loop_encoder(enc)
        with pytest.raises(TypeError):  # keyword-only
            enc.encode(EventBatch.from_raster(np.zeros((1, 5, 8), np.uint8)), 0.9, 5.0, "zero",
                       np.zeros((1, 1, 4), np.int32), np.zeros((0, 0, 0), np.uint8), 0)


class Positional:
    def encode(self, offsets, bins, channels, n_bins, decay, v_th, reset_mode, counts, spikes,
               sample_offset):
        raise AssertionError("never called")


class NoEncode:
    pass


@pytest.mark.parametrize("bad, message", [
    (NoEncode(), "must be an InLoopEncoder .* got NoEncode"),
    (Positional(), "Positional.encode.* does not take the InLoopEncoder keyword arguments"),
    ("encoder", "str.encode.* does not take"),
    (42, "got int"),
])
def test_a_weight_set_refuses_what_is_not_an_encoder(bad, message):
    w = np.zeros((2, 2), np.float32)
    with pytest.raises(TypeError, match=f"WeightSet.in_loop.*{message}"):
        WeightSet(w, w, in_loop=bad)


def test_the_lsm_names_the_source_of_a_bad_encoder():
    class Sneaky:
        def build(self, config):
            w = np.zeros((config.n_inputs, config.n_neurons), np.float32)
            ws = WeightSet(w, np.zeros((config.n_neurons,) * 2, np.float32))
            object.__setattr__(ws, "in_loop", Positional())  # past the WeightSet's own check
            return ws

    with pytest.raises(TypeError, match=r"Sneaky.build\(\).in_loop: Positional.encode"):
        LSM(LSMConfig(n_inputs=2, n_neurons=2, n_bins=3), weights=Sneaky())


class RecordingEncoder:
    """A third implementation: the static kernel behind the protocol; records its calls."""

    def __init__(self, w_in, w_rec):
        self.w_in, self.w_rec, self.calls = w_in, w_rec, []

    def encode(self, *, events, decay, v_th, reset, counts, spikes, sample_offset):
        self.calls.append((len(events), sample_offset, type(decay), reset))
        e = np.zeros(0, np.int64)
        lif_events(events.offsets, events.bins, events.channels, events.n_bins, self.w_in, e,
                   e.astype(np.uint32), e.astype(np.float32), self.w_rec, e,
                   e.astype(np.uint32), e.astype(np.float32), decay, v_th, RESET_CODES[reset],
                   counts, spikes, *activity_off())


def test_the_lsm_hands_batches_to_an_encoder_by_keyword(rng):
    cfg = LSMConfig(n_inputs=16, n_neurons=12, n_bins=10, reset="subtract")
    static = LSM(cfg)
    enc = RecordingEncoder(static.w_in, static.w_rec)
    looped = LSM(cfg, weights=_SourceWith(static, enc))
    x = random_raster(rng, 20, 10, 16, 0.2)
    for features in ("binned", "counts", "windows"):
        np.testing.assert_array_equal(
            looped.encode(x, features=features, batch_size=7, progress=False, n_windows=3),
            static.encode(x, features=features, progress=False, n_windows=3))
    assert enc.calls[:3] == [(7, 0, np.float32, "subtract"), (7, 7, np.float32, "subtract"),
                             (6, 14, np.float32, "subtract")]
    assert looped.weight_set.in_loop is enc


class _SourceWith:
    def __init__(self, lsm, enc):
        self.lsm, self.enc = lsm, enc

    def build(self, config):
        return WeightSet(self.lsm.w_in, self.lsm.w_rec, {"source": "recording"}, in_loop=self.enc)


@pytest.mark.parametrize("change, message", [
    (dict(reset="soft"), "reset must be one of"),
    (dict(counts=np.zeros((3, 1, 4), np.int64)), "counts must be a writable int32 array of "),
    (dict(counts=np.zeros((2, 1, 4), np.int32)),
     r"counts must .* shape \(3, n_windows, 4\) .*, got int32 \(2, 1, 4\)"),
    (dict(counts=np.zeros((3, 4), np.int32)), r"counts must .*, got int32 \(3, 4\)"),
    (dict(counts=np.zeros((3, 6, 4), np.int32)),
     r"counts must .*n_windows <= 5, got int32 \(3, 6, 4\)"),
    (dict(spikes=np.zeros((3, 5, 5), np.uint8)), "spikes must be a writable uint8 array"),
    (dict(events="not a batch"), "events must be an EventBatch"),
])
def test_encode_arguments_are_checked(change, message):
    args = dict(events=EventBatch.from_raster(np.zeros((3, 5, 8), np.uint8)), reset="zero",
                counts=np.zeros((3, 1, 4), np.int32), spikes=np.zeros((0, 0, 0), np.uint8))
    args.update(change)
    with pytest.raises((TypeError, ValueError), match=f"Owner.encode: {message}"):
        check_encode_arguments(**args, n_neurons=4, owner="Owner")
    cfg = LSMConfig(n_inputs=8, n_neurons=4, n_bins=5)
    loop = CrossbarWeights(in_loop=True, array_rows=16, array_cols=16).build(cfg).in_loop
    with pytest.raises((TypeError, ValueError), match=f"InLoopCrossbar.encode: {message}"):
        loop.encode(**args, decay=0.9, v_th=5.0, sample_offset=0)


def test_encode_keywords_are_the_protocols():
    import inspect

    params = inspect.signature(InLoopEncoder.encode).parameters
    assert tuple(params)[1:] == ENCODE_KEYWORDS
    assert all(p.kind is p.KEYWORD_ONLY for name, p in params.items() if name != "self")


# ---------------------------------------------------------------- the crossbar's in-loop physics
def test_clipped_normal_variance():
    from scipy import integrate
    from scipy.stats import norm

    assert clipped_normal_variance(None) == 1.0
    for c in (0.5, 1.0, 2.0, 3.0):
        inside, _ = integrate.quad(lambda z: z * z * norm.pdf(z), -c, c)
        assert clipped_normal_variance(c) == pytest.approx(inside + 2 * c * c * norm.sf(c),
                                                           rel=1e-9)
    assert clipped_normal_variance(8.0) == pytest.approx(1.0, abs=1e-12)


def test_physics_of_an_ideal_block_is_its_conductances():
    from lsm.crossbar import ADC, CrossbarArray, DeviceParams, DifferentialMapping, IRDrop

    cfg = LSMConfig(n_inputs=6, n_neurons=4)
    m = DifferentialMapping(6, 4, 16, 16)
    arr = CrossbarArray(16, 16, DeviceParams.ideal(), seed=1)
    arr.program(*m.region.cells(), CrossbarWeights().form_pulse)
    p = InLoopPhysics.from_array(arr, m.region, cfg.n_inputs, 0.2, ADC(), IRDrop())
    g = arr.conductance(m.region.rows[:, None], m.region.cols[None, :]).astype(np.float32)
    np.testing.assert_allclose(p.g_in_us, g[:6], rtol=1e-6)
    np.testing.assert_allclose(p.g_rec_us, g[6:], rtol=1e-6)
    assert p.g_in_us.dtype == np.float32 and p.g_in_us.flags.c_contiguous
    np.testing.assert_allclose(p.m2_in_us2, (g[:6].astype(np.float64) ** 2).mean(0), rtol=1e-6)
    assert p.max_code == 2 ** 14 - 1 and p.adc_offset_codes == 0
    assert p.adc_codes_per_ua == pytest.approx(2.5e-3 / (1 / (2 ** 14 - 1)))
    with pytest.raises(ValueError, match="n_inputs must be in 1..9"):
        InLoopPhysics.from_array(arr, m.region, 10, 0.2, ADC(), IRDrop())
    dropped = InLoopPhysics.from_array(arr, m.region, 6, 0.2, ADC(), IRDrop(drop_frac=0.1))
    assert (dropped.g_in_us < p.g_in_us).all()


def test_the_crossbar_package_does_not_import_the_reservoir():
    """lsm.crossbar stands alone (the emulator runs on it): inside lsm it may use only its own
    modules and the shared utilities."""
    from test_boundaries import imported_modules

    allowed = ("lsm.crossbar", "lsm.validation", "lsm.io", "lsm.progress")
    for path in sorted((ROOT / "lsm" / "crossbar").rglob("*.py")):
        for line, name in imported_modules(path, ROOT):
            if name == "lsm" or name.startswith("lsm."):
                assert name.startswith(allowed), f"{path}:{line} imports {name}"
