"""Summaries of a programmed array and of the multiply's error budget (for `lsm crossbar`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from lsm.crossbar.array import STUCK_HRS, STUCK_LRS, CrossbarArray, Region
from lsm.crossbar.device import DeviceParams, Pulse
from lsm.crossbar.mapping import DifferentialMapping
from lsm.crossbar.peripherals import ADC, InputDAC

__all__ = ["conductance_stats", "sample_formed", "vmm_error_sweep",
           "format_vmm_error"]


def conductance_stats(array: CrossbarArray, region: Region) -> dict:
    """Statistics of the noise-free conductance of ``region`` now (uS)."""
    array.check_region(region)
    r, c = region.cells()
    g = array.conductance(r, c)
    stuck = array.stuck[r, c]
    return {"cells": int(g.size), "mean_us": float(g.mean()), "std_us": float(g.std()),
            "min_us": float(g.min()), "max_us": float(g.max()),
            "fraction_formed": float(array.formed[r, c].mean()),
            "fraction_stuck": float((stuck != 0).mean()),
            "fraction_stuck_hrs": float((stuck == STUCK_HRS).mean()),
            "fraction_stuck_lrs": float((stuck == STUCK_LRS).mean())}


def sample_formed(rows: int, cols: int, device: DeviceParams, pulse: Pulse,
                  seed: int = 0) -> tuple[np.ndarray, dict]:
    """Form a fresh ``rows`` x ``cols`` array with ``pulse``; its conductances (uS) and their
    statistics beside the configured forming mean and spread."""
    arr = CrossbarArray(rows, cols, device, seed=seed)
    region = Region(0, rows, 0, cols)
    arr.program_random(region, pulse)
    stats = conductance_stats(arr, region)
    mean, std = device.programming.form_stats(pulse)
    stats.update({"configured_mean_us": mean, "configured_std_us": std,
                  "pulse": {"amplitude_v": pulse.amplitude_v, "width_ns": pulse.width_ns,
                            "compliance_ua": pulse.compliance_ua},
                  "distribution": device.programming.distribution, "seed": seed})
    return arr.conductance(*region.cells()), stats


def vmm_error_sweep(read_noise_rel=(0.0, 0.0015, 0.005, 0.01, 0.02),
                    adc_bits=(6, 8, 10, 12, 14), n_inputs: int = 256, n_neurons: int = 200,
                    activity: float = 0.05, n_vectors: int = 200, v_read: float = 0.2,
                    device: DeviceParams | None = None, seed: int = 0,
                    progress: bool = True) -> dict:
    """Error of the differential crossbar multiply against the ideal ``x @ (G+ - G-)``.

    The LSM's block (``n_inputs + n_neurons`` rows, ``2 n_neurons`` columns) is formed once;
    for each read-noise level and ADC resolution, ``n_vectors`` random binary inputs with the
    given activity are multiplied in the array (per-cell noise on every read, TIA, ADC) and
    compared with the noise-free product.

    Returns
    -------
    dict with ``relative_rms_error[bits][noise]`` = rms(error) / rms(ideal).
    """
    from lsm.progress import progress_bar

    device = device if device is not None else DeviceParams()
    m = DifferentialMapping(n_inputs, n_neurons)
    rng = np.random.default_rng(seed)
    x = (rng.random((n_vectors, m.rows_needed)) < activity).astype(np.uint8)
    rows, cols = m.region.rows, m.region.cols
    errors = np.zeros((len(adc_bits), len(read_noise_rel)))
    bar = progress_bar(total=errors.size, desc="vmm-error", disable=not progress, leave=False)
    ideal = None
    for j, noise in enumerate(read_noise_rel):
        dev = dataclasses.replace(device, read=dataclasses.replace(device.read,
                                                                   read_noise_rel=noise))
        arr = CrossbarArray(device=dev, seed=seed)
        arr.program(*m.region.cells(), Pulse.form())
        g = arr.conductance(rows[:, None], cols[None, :])
        n = n_neurons
        if ideal is None:
            ideal = x @ (g[:, :n] - g[:, n:])
        for i, bits in enumerate(adc_bits):
            ro = ADC(bits=bits)
            codes = arr.vmm(rows, cols, x, dac=InputDAC(v_read), adc=ro)
            cur = ro.currents(codes) / v_read
            err = (cur[:, :n] - cur[:, n:]) - ideal
            errors[i, j] = np.sqrt(np.mean(err ** 2)) / np.sqrt(np.mean(ideal ** 2))
            bar.update(1)
    bar.close()
    return {"read_noise_rel": list(map(float, read_noise_rel)), "adc_bits": list(adc_bits),
            "relative_rms_error": errors.tolist(), "rows": m.rows_needed, "cols": n_neurons,
            "activity": activity, "n_vectors": n_vectors, "v_read": v_read, "seed": seed}


def format_vmm_error(result: dict) -> str:
    """The sweep as a table: rows ADC bits, columns read noise, entries relative RMS error %."""
    noise = result["read_noise_rel"]
    lines = ["relative RMS error of x @ (G+ - G-) in %, rows: ADC bits, columns: read noise",
             f"{'bits':>6} " + " ".join(f"{100 * n:>8.2f}%" for n in noise)]
    for bits, errs in zip(result["adc_bits"], result["relative_rms_error"], strict=True):
        lines.append(f"{bits:>6} " + " ".join(f"{100 * e:>9.4f}" for e in errs))
    return "\n".join(lines)
