"""The calibration report (calibration.report): one PNG per procedure whose data exist."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.fits import classify_stuck, fit_adc, fit_drift, fit_forming, fit_read_noise
from calibration.report import write_report
from lsm.crossbar.calfile import Calibration, read_calibration, write_calibration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL = {"forming", "maps", "noise_vs_g", "drift", "adc", "write_verify"}
SHAPE = (16, 24)
PULSE = {"kind": "form", "amplitude_v": 3.0, "width_ns": 1000, "compliance_ua": 100}


def _forming(rng):
    g = np.clip(rng.normal(40.0, 8.0, SHAPE), 1.0, None)
    section, curves = fit_forming(g, None, PULSE)
    return g, section, curves


def full_calibration(seed: int = 3) -> Calibration:
    """A calibration with every procedure, fitted from synthetic measurements."""
    rng = np.random.default_rng(seed)
    g, forming, forming_curves = _forming(rng)

    reads = g * (1 + 0.02 * rng.standard_normal((8, *SHAPE)))
    noise, noise_curves, mean_us, std_us = fit_read_noise(reads)

    # two stuck-low and one stuck-high cell: they move neither under RESET nor under SET
    reset = mean_us * 0.5
    set_ = mean_us * 1.5
    for r, c, level in ((1, 2, 2.0), (5, 7, 1.5), (9, 20, 95.0)):
        mean_us[r, c] = reset[r, c] = set_[r, c] = level
    stuck, stuck_sec = classify_stuck(mean_us, reset, set_, std_us)

    ages = np.array([0.0, 1.0, 10.0, 100.0, 1000.0, 1e4])
    nu_cells = rng.normal(0.02, 0.003, SHAPE)
    drift_reads = g * ((ages[:, None, None] + 1.0) / 1.0) ** -nu_cells
    drift_reads *= 1 + 0.002 * rng.standard_normal(drift_reads.shape)
    drift, drift_curves = fit_drift(ages, drift_reads)

    currents = np.linspace(0.0, 60.0, 200)
    codes = np.clip(np.round(6.0 * currents + 10.0 + rng.normal(0, 0.3, currents.size)),
                    0, 255)
    adc, adc_curves = fit_adc(currents, codes, np.full(8, 10), bits=8, v_read=0.2)

    targets = rng.uniform(5.0, 50.0, SHAPE)
    iterations = 12
    rounds = rng.geometric(0.35, SHAPE)
    rounds[rounds > iterations] = -1
    rounds[0, :3] = -1                                    # never converged
    done = rounds[rounds > 0]
    by_round = np.array([(done <= k).sum() / rounds.size for k in range(1, iterations + 1)])
    pulses = np.where(rounds > 0, rounds - 1, iterations).astype(np.int32)
    final = np.where(rounds > 0, targets + rng.uniform(-0.5, 0.5, SHAPE), targets + 3.0)
    wv = {"converged_fraction": float((rounds > 0).mean()), "iterations": iterations,
          "tol_us": 0.5, "n_cells": rounds.size, "mean_pulses": float(pulses.mean())}
    wv_curves = {"converged_by_round": by_round, "pulses": pulses,
                 "rounds_to_converge": rounds.astype(np.int32), "targets_us": targets,
                 "final_us": final}

    cal = Calibration(region=(4, 4 + SHAPE[0], 8, 8 + SHAPE[1]), g_us=mean_us,
                      read_std_us=std_us, stuck=stuck,
                      sections={"forming": forming, "read_noise": noise, "drift": drift,
                                "stuck": stuck_sec, "adc": adc, "write_verify": wv},
                      curves={"forming": forming_curves, "read_noise": noise_curves,
                              "drift": drift_curves, "adc": adc_curves,
                              "write_verify": wv_curves})
    return cal.validate()


def check_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5000, (path, len(data))


def test_every_figure_of_a_full_calibration(tmp_path):
    cal = full_calibration()
    assert cal.sections["stuck"]["n_low"] == 2 and cal.sections["stuck"]["n_high"] == 1
    out = tmp_path / "new" / "report"                     # made, with its parent
    written = write_report(cal, out)
    assert set(written) == ALL
    for name, path in written.items():
        assert path == out / f"{name}.png"
        check_png(path)
    # only the figures: no temporaries left behind
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in ALL)


def test_a_calibration_read_back_from_its_file(tmp_path):
    cal = read_calibration(write_calibration(tmp_path / "cal.h5", full_calibration(seed=5)))
    written = write_report(cal, tmp_path / "figs")
    assert set(written) == ALL
    for path in written.values():
        check_png(path)


def test_only_forming_gives_forming_and_maps(tmp_path):
    g, forming, curves = _forming(np.random.default_rng(1))
    cal = Calibration(region=(0, SHAPE[0], 0, SHAPE[1]), g_us=g,
                      sections={"forming": forming}, curves={"forming": curves}).validate()
    written = write_report(cal, tmp_path)
    assert set(written) == {"forming", "maps"}
    for path in written.values():
        check_png(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forming.png", "maps.png"]


def test_sections_without_curves_and_a_bare_map(tmp_path):
    # a section whose curves were not kept draws nothing for it; a bare map still draws maps
    cal = full_calibration()
    cal.curves = {"forming": cal.curves["forming"]}
    assert set(write_report(cal, tmp_path / "a")) == {"forming", "maps"}
    bare = Calibration(region=(0, 4, 0, 5), g_us=np.full((4, 5), 10.0))
    written = write_report(bare, tmp_path / "b")
    assert set(written) == {"maps"}
    check_png(written["maps"])


def test_report_folder_that_is_a_file(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    with pytest.raises(NotADirectoryError):
        write_report(Calibration(region=(0, 2, 0, 2), g_us=np.ones((2, 2))), f)
