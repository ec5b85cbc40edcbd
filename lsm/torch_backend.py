"""Dense torch implementation of the reservoir equations: the reference and the GPU path.

Same update as :mod:`lsm.kernels`, on a dense input raster, batched over samples::

    I_t = x_t @ W_in + s_{t-1} @ W_rec
    u_t = decay * (u_{t-1} * (1 - s_{t-1})) + I_t        (reset = "zero")
    u_t = decay * u_{t-1} + I_t - v_th * s_{t-1}         (reset = "subtract")
    u_t = decay * u_{t-1} + I_t                          (reset = "none")
    s_t = [u_t > v_th]

The membrane lines are :func:`lsm.kernels.membrane_update`, applied here to whole tensors. The
input projection of all bins is one batched matmul; the recurrence is a loop over bins.

With 16-bit weight codes (``LSMConfig.weight_format = "int16"``, :func:`lif_dense`'s
``scales``) the products are sums of integer codes, computed in float64, which holds every such
sum exactly whatever the matmul's order: the spikes are those of
:func:`lsm.kernels.lif_events_codes`, bit for bit.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from lsm.kernels import RESET_CODES, membrane_update

__all__ = ["default_device", "lif_dense", "lif_snntorch", "to_tensor", "torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run the block with ``n`` torch CPU threads, then restore the setting.

    The readouts and contrastive heads train small models (about a thousand samples of a
    thousand features): one thread is as fast as two on an idle 2-core machine and 5-10 times
    faster when other processes share the cores (threads spin waiting for each other).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def lif_dense(raster: torch.Tensor, w_in: torch.Tensor, w_rec: torch.Tensor, decay: float,
              v_th: float, reset: str = "zero", record: bool = False,
              scales: tuple[float, float] | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the reservoir on a dense raster.

    Parameters
    ----------
    raster : float32 tensor (batch, n_bins, n_inputs)
        Input event counts per bin and channel.
    w_in : float32 tensor (n_inputs, n_neurons)
    w_rec : float32 tensor (n_neurons, n_neurons)
    decay, v_th : float
    reset : {"zero", "subtract", "none"}
    record : bool
        Also return the spike raster.
    scales : (scale_in, scale_rec), optional
        ``w_in`` and ``w_rec`` are integer weight codes (float64 tensors, |code| <= 32767) and
        these their float32 scales: ``A_t = x_t @ C_in`` and ``B_t = s_{t-1} @ C_rec`` are exact
        integer sums (float64), and ``I_t = scale_in * float32(A_t) + scale_rec *
        float32(B_t)`` in float32, as in :func:`lsm.kernels.lif_events_codes`.

    Returns
    -------
    counts : int32 tensor (batch, n_neurons)
    spikes : uint8 tensor (batch, n_bins, n_neurons) or None
    """
    if reset not in RESET_CODES:
        raise ValueError(f"reset must be one of {sorted(RESET_CODES)}, got {reset!r}")
    reset_mode = RESET_CODES[reset]
    batch, n_bins, _ = raster.shape
    n = w_rec.shape[0]
    dtype = torch.float32
    if scales is None:
        drive = torch.matmul(raster.to(dtype), w_in)  # (batch, n_bins, n)
    else:
        scale_in = torch.tensor(scales[0], dtype=dtype, device=raster.device)
        scale_rec = torch.tensor(scales[1], dtype=dtype, device=raster.device)
        drive = torch.matmul(raster.to(torch.float64), w_in).to(dtype)  # exact sums, rounded
    u = torch.zeros(batch, n, dtype=dtype, device=raster.device)
    s = torch.zeros(batch, n, dtype=dtype, device=raster.device)
    counts = torch.zeros(batch, n, dtype=torch.int32, device=raster.device)
    spikes = (torch.zeros(batch, n_bins, n, dtype=torch.uint8, device=raster.device)
              if record else None)
    decay_t = torch.tensor(decay, dtype=dtype, device=raster.device)
    v_th_t = torch.tensor(v_th, dtype=dtype, device=raster.device)
    for t in range(n_bins):
        if scales is None:
            current = drive[:, t] + s @ w_rec
        else:
            rec = (s.to(torch.float64) @ w_rec).to(dtype)
            current = scale_in * drive[:, t] + scale_rec * rec
        u, fired = membrane_update(u, current, s, decay_t, v_th_t, reset_mode)
        s = fired.to(dtype)
        counts += fired
        if record:
            spikes[:, t] = fired
    return counts, spikes


def to_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """``a`` (made C-contiguous) as a tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


@torch.no_grad()
def lif_snntorch(raster: torch.Tensor, w_in: torch.Tensor, w_rec: torch.Tensor, decay: float,
                 v_th: float, reset: str = "zero") -> torch.Tensor:
    """The same reservoir driven through ``snntorch.Leaky``: the neuron reference.

    ``Leaky(beta=decay, threshold=v_th, reset_mechanism=reset)`` is stepped once per bin with the
    current ``x_t @ W_in + s_{t-1} @ W_rec``; snntorch applies the reset of a spike at the next
    step (``reset_delay=True``), which is the ``u_{t-1} * (1 - s_{t-1})`` of our equation.

    Returns
    -------
    spikes : uint8 tensor (batch, n_bins, n_neurons)
    """
    import snntorch

    batch, n_bins, _ = raster.shape
    n = w_rec.shape[0]
    lif = snntorch.Leaky(beta=decay, threshold=v_th, reset_mechanism=reset).to(raster.device)
    drive = torch.matmul(raster.to(torch.float32), w_in)
    mem = torch.zeros(batch, n, dtype=torch.float32, device=raster.device)
    spk = torch.zeros(batch, n, dtype=torch.float32, device=raster.device)
    out = torch.zeros(batch, n_bins, n, dtype=torch.uint8, device=raster.device)
    for t in range(n_bins):
        spk, mem = lif(drive[:, t] + spk @ w_rec, mem)
        out[:, t] = spk > 0
    return out
