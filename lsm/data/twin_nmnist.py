"""Offline N-MNIST twin: real handwritten digits seen by a simulated event camera.

scikit-learn's UCI digits (1,797 real handwritten digits, 8 x 8, shipped inside its wheel) are
upscaled to the 28 x 28 MNIST box, placed on a dark 34 x 34 field and moved along N-MNIST's three
saccades (down-right, left, up-right; 100 ms each), as the ATIS camera moved in front of the
monitor. A DVS pixel model turns the moving image into events:

* each pixel tracks ``L = log(I + eps)`` against a reference level; when ``L - ref`` crosses its
  ON threshold (or ``ref - L`` its OFF threshold) it emits an event, at the time interpolated
  within the simulation step, and moves the reference by one threshold;
* thresholds vary from pixel to pixel (``contrast_threshold`` with ``threshold_sigma`` relative
  mismatch, fixed per sample);
* after an event a pixel is blind for ``refractory_us``;
* background activity: Poisson noise events at ``noise_hz`` per pixel, random polarity.

Files are written as ``Train/<digit>/<index>.bin`` and ``Test/<digit>/<index>.bin`` in the 40-bit
N-MNIST format, so :func:`lsm.data.nmnist` reads them like the real dataset.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit, types
from numba.typed import List

from lsm.data.formats import write_nmnist_bin

__all__ = ["DVSParams", "digit_events", "make_nmnist_twin", "TWIN_MARKER"]

TWIN_MARKER = "lsm_twin.json"


@dataclass(frozen=True)
class DVSParams:
    """Event-camera and stimulus settings.

    Parameters
    ----------
    contrast_threshold : float
        Log-intensity change per event (default 0.25).
    threshold_sigma : float
        Relative pixel-to-pixel spread of the thresholds (default 0.05).
    refractory_us : float
        Dead time after an event, us (default 1000).
    noise_hz : float
        Background events per pixel per second (default 0.5).
    saccade_ms : float
        Duration of each of the three saccades, ms (default 100).
    amplitude_px : float
        Saccade extent, pixels (default 3).
    step_us : float
        Simulation step, us (default 500); event times are interpolated inside a step.
    background : float
        Intensity of the dark field relative to the brightest stroke (default 0.05).
    """

    contrast_threshold: float = 0.25
    threshold_sigma: float = 0.05
    refractory_us: float = 1000.0
    noise_hz: float = 0.5
    saccade_ms: float = 100.0
    amplitude_px: float = 3.0
    step_us: float = 500.0
    background: float = 0.05

    def __post_init__(self) -> None:
        from lsm.validation import check_number

        for name in ("contrast_threshold", "saccade_ms", "step_us"):
            check_number("DVSParams", name, getattr(self, name), 0.0, low_open=True)
        for name in ("threshold_sigma", "refractory_us", "noise_hz", "amplitude_px"):
            check_number("DVSParams", name, getattr(self, name), 0.0)
        check_number("DVSParams", "background", self.background, 0.0, 1.0, high_open=True)


@njit(cache=True)
def _bilinear(img, y, x):
    h, w = img.shape
    if y < 0 or x < 0 or y > h - 1 or x > w - 1:
        return 0.0
    y0 = int(np.floor(y))
    x0 = int(np.floor(x))
    y1 = min(y0 + 1, h - 1)
    x1 = min(x0 + 1, w - 1)
    fy = y - y0
    fx = x - x0
    return ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
            + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))


@njit(cache=True)
def _dvs(img, oy, ox, path_t, path_dy, path_dx, n_steps, step_us, thr_on, thr_off,
         refractory_us, background, eps):
    """Simulate the pixels; returns (x, y, t_us, p) lists as arrays, time-sorted per step."""
    h, w = thr_on.shape
    ref = np.empty((h, w))
    last = np.full((h, w), -1e18)
    xs = List.empty_list(types.int64)
    ys = List.empty_list(types.int64)
    ts = List.empty_list(types.float64)
    ps = List.empty_list(types.int64)
    prev = np.empty((h, w))
    for k in range(n_steps + 1):
        t = k * step_us
        # position on the saccade path (piecewise linear)
        seg = 0
        while seg < path_t.shape[0] - 2 and t > path_t[seg + 1]:
            seg += 1
        a = (t - path_t[seg]) / (path_t[seg + 1] - path_t[seg])
        a = min(max(a, 0.0), 1.0)
        dy = path_dy[seg] + a * (path_dy[seg + 1] - path_dy[seg])
        dx = path_dx[seg] + a * (path_dx[seg + 1] - path_dx[seg])
        for i in range(h):
            for j in range(w):
                inten = background + (1.0 - background) * _bilinear(img, i - oy - dy,
                                                                      j - ox - dx)
                L = np.log(inten + eps)
                if k == 0:
                    ref[i, j] = L
                    prev[i, j] = L
                    continue
                L0 = prev[i, j]
                prev[i, j] = L
                # emit as many threshold crossings as the change allows
                while True:
                    diff = L - ref[i, j]
                    if diff >= thr_on[i, j]:
                        target = ref[i, j] + thr_on[i, j]
                        pol = 1
                    elif -diff >= thr_off[i, j]:
                        target = ref[i, j] - thr_off[i, j]
                        pol = 0
                    else:
                        break
                    ref[i, j] = target
                    frac = (target - L0) / (L - L0) if L != L0 else 1.0
                    frac = min(max(frac, 0.0), 1.0)
                    te = (k - 1 + frac) * step_us
                    if te - last[i, j] < refractory_us:
                        continue  # blind: the reference still follows the light
                    last[i, j] = te
                    xs.append(j)
                    ys.append(i)
                    ts.append(te)
                    ps.append(pol)
    n = len(xs)
    out_x = np.empty(n, np.int64)
    out_y = np.empty(n, np.int64)
    out_t = np.empty(n, np.float64)
    out_p = np.empty(n, np.int64)
    for q in range(n):
        out_x[q] = xs[q]
        out_y[q] = ys[q]
        out_t[q] = ts[q]
        out_p[q] = ps[q]
    return out_x, out_y, out_t, out_p


def _upscale(image8: np.ndarray) -> np.ndarray:
    from scipy.ndimage import zoom

    img = zoom(image8.astype(np.float64) / 16.0, 28 / 8, order=1)
    return np.clip(img, 0.0, 1.0)


def digit_events(image8: np.ndarray, rng: np.random.Generator,
                 params: DVSParams = DVSParams()) -> np.ndarray:
    """Events (structured x, y, t in us, p) of one 8 x 8 digit image (values 0-16) under the
    three N-MNIST saccades, sorted by time."""
    from lsm.data.formats import NMNIST_DTYPE

    img = _upscale(image8)
    a = params.amplitude_px
    s = params.saccade_ms * 1000.0
    path_t = np.array([0.0, s, 2 * s, 3 * s])
    path_dy = np.array([0.0, a, a, 0.0])
    path_dx = np.array([0.0, a, -a, 0.0]) / 2 + a / 2
    oy, ox = 1.0 + rng.uniform(-0.5, 0.5), 1.0 + rng.uniform(-0.5, 0.5)
    thr = params.contrast_threshold
    thr_on = thr * (1 + params.threshold_sigma * rng.standard_normal((34, 34)))
    thr_off = thr * (1 + params.threshold_sigma * rng.standard_normal((34, 34)))
    n_steps = int(np.ceil(3 * s / params.step_us))
    x, y, t, p = _dvs(img, oy, ox, path_t, path_dy, path_dx, n_steps, params.step_us,
                      np.maximum(thr_on, 0.01), np.maximum(thr_off, 0.01),
                      params.refractory_us, params.background, 1e-3)
    # background activity
    duration_us = 3 * s
    n_noise = rng.poisson(params.noise_hz * 34 * 34 * duration_us * 1e-6)
    x = np.concatenate([x, rng.integers(0, 34, n_noise)])
    y = np.concatenate([y, rng.integers(0, 34, n_noise)])
    t = np.concatenate([t, rng.uniform(0, duration_us, n_noise)])
    p = np.concatenate([p, rng.integers(0, 2, n_noise)])
    order = np.argsort(t, kind="stable")
    ev = np.empty(len(order), dtype=NMNIST_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x[order], y[order], np.floor(t[order]), p[order]
    return ev


def make_nmnist_twin(out: str | os.PathLike, n_train: int | None = 600,
                     n_test: int | None = 200, seed: int = 0, params: DVSParams = DVSParams(),
                     progress: bool = True) -> dict:
    """Write an N-MNIST-layout twin under ``out``; returns a summary.

    The 1,797 UCI digits are shuffled with ``seed`` and split: the first ``n_train`` go to
    Train and the next ``n_test`` to Test (None: 5/6 and 1/6 of all of them). Each sample's
    camera noise comes from its own child seed, so the output is the same for the same seed.
    """
    from sklearn.datasets import load_digits

    from lsm.io import check_output_dir

    check_output_dir(out, "twin folder")
    if Path(out).is_dir() and any(Path(out).iterdir()):
        raise FileExistsError(f"{out} is not empty: a twin written over another would mix their "
                              "samples; remove it or choose a new folder")
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.images))
    total = len(order)
    n_train = total * 5 // 6 if n_train is None else int(n_train)
    n_test = total - n_train if n_test is None else int(n_test)
    if n_train < 1 or n_test < 1 or n_train + n_test > total:
        raise ValueError(f"n_train and n_test must be >= 1 and n_train + n_test <= {total} (the "
                         f"UCI digits), got {n_train} and {n_test}")
    out = Path(out)
    final, out = out, out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        summary = _write_twin(out, final, digits, order, n_train, n_test, seed, params, progress)
        if final.is_dir():  # an empty folder given as the target
            final.rmdir()
        out.rename(final)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # an interrupted twin is never left as a dataset
        raise
    return summary


def _write_twin(out: Path, final: Path, digits, order, n_train: int, n_test: int, seed: int,
                params: DVSParams, progress: bool) -> dict:
    from lsm.progress import progress_bar

    seeds = np.random.SeedSequence(seed).spawn(n_train + n_test)
    counts = []
    jobs = [("Train", k) for k in range(n_train)] + [("Test", k) for k in range(n_test)]
    for (split, k), ss in progress_bar(list(zip(jobs, seeds, strict=True)), desc="N-MNIST twin",
                               unit="digit", disable=not progress):
        idx = order[k if split == "Train" else n_train + k]
        label = int(digits.target[idx])
        ev = digit_events(digits.images[idx], np.random.default_rng(ss), params)
        write_nmnist_bin(out / split / str(label) / f"{idx:05d}.bin", ev)
        counts.append(len(ev))
    from lsm.runs import write_json

    summary = {"root": str(final), "train": n_train, "test": n_test,
            "events_per_sample": {"min": int(min(counts)), "median": float(np.median(counts)),
                                  "max": int(max(counts))} if counts else {}}
    # marks the folder as an offline twin, so that reports can say which data they used
    write_json(out / TWIN_MARKER, {"generator": "lsm.data.twin_nmnist", "seed": seed,
                                   "params": dataclasses.asdict(params), **summary})
    return summary
