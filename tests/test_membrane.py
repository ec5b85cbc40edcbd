"""The one membrane update: every path (numba kernel, torch reference, the chip loop) uses
:func:`lsm.kernels.membrane_update`, and all agree with values computed by hand."""

import numpy as np
import pytest
import torch

from lsm import LSM, LSMConfig
from lsm.kernels import RESET_CODES, RESET_NONE, RESET_SUBTRACT, RESET_ZERO, membrane_update

# One neuron driven by a current of 2 every step, decay 0.5, threshold 3: every value below is
# exact in float32 (dyadic), worked out by hand from the equations of lsm.kernels.
#   zero:     u = 2, 3, 3.5*, 0.5*0 + 2 = 2, 3, 3.5*, 2
#   subtract: u = 2, 3, 3.5*, 1.75 + 2 - 3 = 0.75, 2.375, 3.1875*, 0.59375
#   none:     u = 2, 3, 3.5*, 3.75*, 3.875*, 3.9375*, 3.96875*
HAND = {
    "zero": ([2, 3, 3.5, 2, 3, 3.5, 2], [0, 0, 1, 0, 0, 1, 0]),
    "subtract": ([2, 3, 3.5, 0.75, 2.375, 3.1875, 0.59375], [0, 0, 1, 0, 0, 1, 0]),
    "none": ([2, 3, 3.5, 3.75, 3.875, 3.9375, 3.96875], [0, 0, 1, 1, 1, 1, 1]),
}
DECAY, V_TH, CURRENT = 0.5, 3.0, 2.0


def test_reset_codes_are_the_named_constants():
    assert RESET_CODES == {"zero": RESET_ZERO, "subtract": RESET_SUBTRACT, "none": RESET_NONE}
    assert len({RESET_ZERO, RESET_SUBTRACT, RESET_NONE}) == 3


@pytest.mark.parametrize("reset", sorted(HAND))
def test_membrane_update_on_numpy_arrays_by_hand(reset):
    f = np.float32
    u, s = np.zeros(1, f), np.zeros(1, f)
    us, ss = [], []
    for _ in range(7):
        u, fired = membrane_update(u, np.full(1, CURRENT, f), s, f(DECAY), f(V_TH),
                                   RESET_CODES[reset])
        assert u.dtype == np.float32 and fired.dtype == bool
        s = fired.astype(f)
        us.append(float(u[0]))
        ss.append(int(fired[0]))
    assert (us, ss) == tuple(map(list, HAND[reset]))


@pytest.mark.parametrize("reset", sorted(HAND))
def test_membrane_update_on_torch_tensors_by_hand(reset):
    u, s = torch.zeros(1), torch.zeros(1)
    decay, v_th = torch.tensor(DECAY), torch.tensor(V_TH)
    us, ss = [], []
    for _ in range(7):
        u, fired = membrane_update(u, torch.full((1,), CURRENT), s, decay, v_th,
                                   RESET_CODES[reset])
        assert u.dtype == torch.float32
        s = fired.to(torch.float32)
        us.append(float(u[0]))
        ss.append(int(fired[0]))
    assert (us, ss) == tuple(map(list, HAND[reset]))


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("reset", sorted(HAND))
def test_lsm_backends_by_hand(reset, backend):
    cfg = LSMConfig(n_inputs=1, n_neurons=1, n_bins=7, decay=DECAY, v_th=V_TH, reset=reset)
    lsm = LSM(cfg, weights=(np.array([[CURRENT]]), np.array([[0.0]])), backend=backend)
    spikes = lsm.encode(np.ones((1, 7, 1), np.uint8), features="binned", progress=False)
    assert spikes[0, :, 0].tolist() == HAND[reset][1]


def test_membrane_update_keeps_float32_under_numba():
    """The compiled update stays float32 end to end (an int literal would widen it)."""
    import numba

    from lsm.kernels import _membrane_update

    f32 = numba.float32
    for mode in (RESET_ZERO, RESET_SUBTRACT, RESET_NONE):
        _membrane_update(f32(1.5), f32(2.0), f32(1.0), f32(0.5), f32(3.0), mode)
    assert {str(s.return_type) for s in _membrane_update.nopython_signatures} \
        == {"Tuple(float32, bool)"}


def test_torch_reference_calls_the_shared_update(monkeypatch):
    import lsm.torch_backend as tb

    seen = []

    def spy(u, current, fired, decay, v_th, reset_mode):
        seen.append(reset_mode)
        return membrane_update(u, current, fired, decay, v_th, reset_mode)

    monkeypatch.setattr(tb, "membrane_update", spy)
    raster = torch.ones(1, 3, 1)
    for reset in ("zero", "subtract", "none"):
        tb.lif_dense(raster, torch.ones(1, 1), torch.zeros(1, 1), 0.5, 3.0, reset)
    assert seen == [RESET_ZERO] * 3 + [RESET_SUBTRACT] * 3 + [RESET_NONE] * 3
    with pytest.raises(ValueError, match="reset must be one of"):
        tb.lif_dense(raster, torch.ones(1, 1), torch.zeros(1, 1), 0.5, 3.0, "soft")
