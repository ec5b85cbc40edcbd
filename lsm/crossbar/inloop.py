"""The physics of computing in the loop: a programmed block as every multiply sees it.

When the reservoir's multiplies run through the simulated array (``CrossbarWeights(in_loop=True)``),
each one is summed over the active rows' *effective* conductances and then read through the
periphery. This module turns a programmed :class:`~lsm.crossbar.CrossbarArray` into the constants
of that read (:class:`InLoopPhysics`), once, so that the multiply itself is a few float32 array
operations per column:

- effective conductance of a cell, uS: ``G_eff = I(G, v_read * att) / v_read``, with ``att`` the
  first-order IR-drop attenuation at its position (:class:`~lsm.crossbar.IRDrop`) and ``I`` the
  cell's I-V characteristic (:meth:`~lsm.crossbar.ReadParams.current_ua`): drift, IR drop and
  I-V nonlinearity folded in;
- read noise of a column, uA: one Gaussian for the sum of the active cells' noise,
  ``N(0, noise_scale_v^2 * sum over active rows of G_eff^2)``, with ``noise_scale_v = v_read *
  read_noise_rel * sqrt(E[clip(Z, -c, c)^2])`` (:func:`clipped_normal_variance`: each cell's
  relative noise is a standard normal clipped at ``c`` sigma, as the array model draws it);
- ADC, codes: ``code = clip(floor(I * adc_codes_per_ua - adc_offset_codes + 0.5), 0, max_code)``
  read back as ``(code + adc_offset_codes) / adc_codes_per_ua`` uA (:class:`~lsm.crossbar.ADC`).

The multiply kernel that applies these constants is :func:`lsm.kernels.lif_events_crossbar`; this
module is independent of the reservoir (it imports nothing outside ``lsm.crossbar`` but NumPy and
SciPy), like the rest of the crossbar package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lsm.crossbar.array import CrossbarArray, Region
from lsm.crossbar.peripherals import ADC, IRDrop

__all__ = ["InLoopPhysics", "clipped_normal_variance"]


def clipped_normal_variance(clip_sigma: float | None) -> float:
    """``E[clip(Z, -c, c)^2]`` for a standard normal ``Z`` and ``c = clip_sigma``.

    The variance of read noise drawn as a standard normal clipped at ``c`` sigma (the array
    model's :attr:`~lsm.crossbar.ReadParams.read_noise_clip`); 1 without clipping (``None``).

    Parameters
    ----------
    clip_sigma : float or None
        Clipping point, in standard deviations (> 0), or None for no clipping.

    Returns
    -------
    float
        ``(1 - 2 q) - 2 c phi(c) + 2 c^2 q`` with ``q = P(Z > c)`` and ``phi`` the normal density.
    """
    if clip_sigma is None:
        return 1.0
    from scipy.stats import norm

    c = float(clip_sigma)
    tail = norm.sf(c)
    return float((1.0 - 2.0 * tail) - 2.0 * c * norm.pdf(c) + 2.0 * c * c * tail)


@dataclass(frozen=True)
class InLoopPhysics:
    """A block of differential pairs as the in-loop multiply reads it (see the module notes).

    The block holds ``n_inputs`` input rows then ``n_neurons`` recurrent rows; its columns are the
    ``n_neurons`` G+ columns then the ``n_neurons`` G- columns.

    Attributes
    ----------
    g_in_us : ndarray of float32, shape (n_inputs, 2 n_neurons), C-contiguous
        Effective conductances of the input rows, uS.
    g_rec_us : ndarray of float32, shape (n_neurons, 2 n_neurons), C-contiguous
        Effective conductances of the recurrent rows, uS.
    m2_in_us2, m2_rec_us2 : ndarray of float32, shape (2 n_neurons,)
        Mean squared effective conductance of each column over the input / recurrent rows,
        uS^2: they stand in for the active cells' in the read-noise variance.
    v_read_v : float
        Read voltage of an active row, V.
    noise_scale_v : float
        ``v_read * read_noise_rel * sqrt(clipped_normal_variance(read_noise_clip))``, V: a
        column's noise (uA) is this times the root of its active cells' summed ``G_eff^2``.
    adc_codes_per_ua : float
        ADC codes per uA of bit-line current (TIA gain over the LSB).
    adc_offset_codes : float
        ``v_min / lsb``: the ADC's zero in codes.
    max_code : float
        Top ADC code, ``2**bits - 1``.
    """

    g_in_us: np.ndarray
    g_rec_us: np.ndarray
    m2_in_us2: np.ndarray
    m2_rec_us2: np.ndarray
    v_read_v: float
    noise_scale_v: float
    adc_codes_per_ua: float
    adc_offset_codes: float
    max_code: float

    @classmethod
    def from_array(cls, array: CrossbarArray, region: Region, n_inputs: int, v_read_v: float,
                   adc: ADC, ir_drop: IRDrop) -> InLoopPhysics:
        """Read the constants of ``region`` of a programmed ``array`` (its state now: drift up to
        the array's clock is included; nothing is drawn, the array's streams do not advance).

        Parameters
        ----------
        array : CrossbarArray
            The programmed array; its device's :attr:`~lsm.crossbar.DeviceParams.read` gives the
            I-V characteristic and the read noise.
        region : Region
            The block of differential pairs: ``n_inputs`` input rows then the recurrent rows,
            G+ columns then G- columns.
        n_inputs : int
            How many of the region's rows are input rows.
        v_read_v : float
            Read voltage, V.
        adc : ADC
            TIA and ADC of the columns.
        ir_drop : IRDrop
            First-order IR drop of the array.
        """
        if not 0 < n_inputs < region.shape[0]:
            raise ValueError(f"n_inputs must be in 1..{region.shape[0] - 1} (the region has "
                             f"{region.shape[0]} rows), got {n_inputs}")
        g = array.conductance(region.rows[:, None], region.cols[None, :])
        att = ir_drop.attenuation(region.rows, region.cols, *array.shape)
        read = array.device.read
        g_eff = read.current_ua(g, v_read_v * att) / v_read_v
        g_in = np.ascontiguousarray(g_eff[:n_inputs], dtype=np.float32)
        g_rec = np.ascontiguousarray(g_eff[n_inputs:], dtype=np.float32)
        noise = v_read_v * read.read_noise_rel * math.sqrt(
            clipped_normal_variance(read.read_noise_clip))
        return cls(
            g_in_us=g_in, g_rec_us=g_rec,
            m2_in_us2=(g_in.astype(np.float64) ** 2).mean(0).astype(np.float32),
            m2_rec_us2=(g_rec.astype(np.float64) ** 2).mean(0).astype(np.float32),
            v_read_v=v_read_v, noise_scale_v=noise,
            adc_codes_per_ua=(adc.r_tia_kohm / 1000.0) / adc.lsb_v,
            adc_offset_codes=adc.v_min / adc.lsb_v, max_code=float(adc.max_code),
        )
