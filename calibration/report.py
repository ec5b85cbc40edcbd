"""PNG figures of a calibration: what a person looks at before trusting a macro's digital twin.

:func:`write_report` draws one figure per procedure of a :class:`~lsm.crossbar.calfile.Calibration`
that holds the data for it (a procedure that did not run gives no figure, and no error):

- ``forming.png``: the formed conductances (density histogram) with the pdf of every fitted
  family, its KS statistic and AIC, the chosen one marked.
- ``maps.png``: the conductance, read-noise and stuck maps side by side (the stuck rate with its
  confidence interval in the title).
- ``noise_vs_g.png``: read-noise std against conductance (binned), with the fitted ``rel * g``.
- ``drift.png``: the mean log-ratio ``log(G / G0)`` against age, with the fitted power law.
- ``adc.png``: ADC code against bit-line current, with the fitted clipped line and saturation.
- ``write_verify.png``: the fraction of cells converged after each round, and the pulses per cell.

Figures use matplotlib's object API on the Agg canvas (no display, no pyplot state), are written
atomically (:func:`lsm.plots.save_figure`: a temporary name in the same folder, then a rename) and
released after saving.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from matplotlib import colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lsm.crossbar.calfile import STUCK_HIGH, STUCK_LOW, STUCK_OK, Calibration
from lsm.crossbar.distributions import family_from_dict
from lsm.io import check_output_dir
from lsm.plots import save_figure

__all__ = ["write_report"]

#: at most this many per-cell points are drawn behind the binned noise curve
_MAX_CELL_POINTS = 5000
_STUCK_COLOURS = ("#e8e8e8", "#2b5d9c", "#c8412b")   # ok, stuck low, stuck high


def write_report(cal: Calibration, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the figures of a calibration into ``out_dir``.

    Parameters
    ----------
    cal : Calibration
        The calibration (read from a file, or just measured). Any procedure may be absent: its
        figure is then not written.
    out_dir : path
        Folder of the figures, created (with its parents) if missing.

    Returns
    -------
    dict
        Figure name (``"forming"``, ``"maps"``, ``"noise_vs_g"``, ``"drift"``, ``"adc"``,
        ``"write_verify"``) -> path of the PNG written, for the figures whose data exist, in
        that order. ``"maps"`` is always written (every calibration has its conductance map).

    Raises
    ------
    NotADirectoryError, PermissionError
        ``out_dir`` (or a parent) is a file, or is not writable; checked before drawing.
    """
    out = check_output_dir(out_dir, "report folder")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, draw in _FIGURES:
        path = out / f"{name}.png"
        if draw(cal, path):
            written[name] = path
    return written


# ---------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _figure(figsize: tuple[float, float]) -> Iterator[Figure]:
    """A figure (constrained layout) on the Agg canvas, cleared (its memory released) when the
    block ends."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    try:
        yield fig
    finally:
        fig.clear()


def _curve(cal: Calibration, section: str, key: str) -> np.ndarray | None:
    """A raw curve as a float array, or None when absent or empty."""
    a = cal.curves.get(section, {}).get(key)
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    return a if a.size else None


def _num(params: dict, key: str) -> float | None:
    """A finite number of a section, or None (absent, None or not finite)."""
    v = params.get(key)
    if v is None or isinstance(v, bool):
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _fmt(v: float | None, spec: str = ".3g") -> str:
    return "n/a" if v is None else format(v, spec)


# ---------------------------------------------------------------------- forming
def _forming(cal: Calibration, path: Path) -> bool:
    g = _curve(cal, "forming", "g_us")
    if g is None:
        return False
    g = g[np.isfinite(g)]
    if not g.size:
        return False
    sec = cal.sections.get("forming", {})
    chosen = sec.get("chosen")
    with _figure((7, 4.5)) as fig:
        ax = fig.add_subplot()
        edges = np.histogram_bin_edges(g, bins=min(100, max(10, int(math.sqrt(g.size)))))
        ax.hist(g, bins=edges, density=True, color="#3a6ea5", alpha=0.45,
                label=f"measured ({g.size} cells)")
        span = max(float(np.ptp(g)), 1e-6)
        x = np.linspace(max(float(g.min()) - 0.1 * span, 0.0), float(g.max()) + 0.1 * span, 400)
        families = sec.get("families") or {}
        for i, (name, entry) in enumerate(families.items()):
            try:
                dist = family_from_dict(entry, f"forming.families.{name}")
            except ValueError:
                continue   # a family the fit could not produce parameters for: nothing to draw
            mark = name == chosen
            label = (f"{name}: KS {_fmt(_num(entry, 'ks'), '.3f')}, "
                     f"AIC {_fmt(_num(entry, 'aic'), '.1f')}" + ("  (chosen)" if mark else ""))
            ax.plot(x, dist.pdf(x), color=f"C{i + 1}", lw=2.6 if mark else 1.2,
                    ls="-" if mark else "--", label=label, zorder=3 if mark else 2)
        mean, std = _num(sec, "mean_us"), _num(sec, "std_us")
        if mean is None:
            mean, std = float(g.mean()), float(g.std())
        n = int(_num(sec, "n_cells") or g.size)
        title = f"forming: {n} cells, mean {mean:.2f} uS, std {_fmt(std, '.2f')} uS"
        if chosen:
            title += f"; chosen family: {chosen} (lowest AIC)"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("conductance after forming (uS)")
        ax.set_ylabel("density (1/uS)")
        ax.legend(fontsize=7, loc="best")
        save_figure(fig, path)
    return True


# ---------------------------------------------------------------------- maps
def _maps(cal: Calibration, path: Path) -> bool:
    g = np.asarray(cal.g_us, dtype=np.float64)
    if g.ndim != 2 or not g.size:
        return False
    panels = [("g_us", g)]
    if cal.read_std_us is not None:
        panels.append(("read_std_us", np.asarray(cal.read_std_us, dtype=np.float64)))
    if cal.stuck is not None:
        panels.append(("stuck", np.asarray(cal.stuck)))
    r0, _, c0, _ = (int(v) for v in cal.region)
    extent = (c0 - 0.5, c0 + g.shape[1] - 0.5, r0 + g.shape[0] - 0.5, r0 - 0.5)
    with _figure((4.6 * len(panels), 4.3)) as fig:
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (name, a) in zip(axes, panels, strict=True):
            if name == "stuck":
                cmap = colors.ListedColormap(_STUCK_COLOURS)
                norm = colors.BoundaryNorm([-0.5, 0.5, 1.5, 2.5], cmap.N)
                im = ax.imshow(a, cmap=cmap, norm=norm, interpolation="nearest", extent=extent)
                cb = fig.colorbar(im, ax=ax, ticks=[STUCK_OK, STUCK_LOW, STUCK_HIGH],
                                  label="stuck code")
                cb.ax.set_yticklabels(["ok", "stuck low", "stuck high"])
                n_low, n_high = int((a == STUCK_LOW).sum()), int((a == STUCK_HIGH).sum())
                ax.set_title(f"stuck cells\n{n_low} low, {n_high} high", fontsize=9)
            else:
                im = ax.imshow(a, cmap="viridis" if name == "g_us" else "magma",
                               interpolation="nearest", extent=extent)
                what = "conductance" if name == "g_us" else "read-noise std"
                fig.colorbar(im, ax=ax, label=f"{what} (uS)")
                ax.set_title(f"{what}\nmedian {np.median(a):.3g} uS, "
                             f"range {a.min():.3g}-{a.max():.3g} uS", fontsize=9)
            ax.set_xlabel("column")
            ax.set_ylabel("row")
        fig.suptitle(_maps_title(cal), fontsize=10)
        save_figure(fig, path)
    return True


def _maps_title(cal: Calibration) -> str:
    r0, r1, c0, c1 = (int(v) for v in cal.region)
    title = f"rows {r0}-{r1 - 1}, columns {c0}-{c1 - 1} ({(r1 - r0) * (c1 - c0)} cells)"
    sec = cal.sections.get("stuck")
    if sec is not None and _num(sec, "rate") is not None:
        rate, lo, hi = _num(sec, "rate"), _num(sec, "ci_low"), _num(sec, "ci_high")
        title += f"; stuck rate {100 * rate:.2f} %"
        if lo is not None and hi is not None:
            title += f" (95 % CI {100 * lo:.2f}-{100 * hi:.2f} %)"
    elif cal.stuck is not None:
        title += f"; stuck rate {100 * float(np.mean(np.asarray(cal.stuck) != STUCK_OK)):.2f} %"
    return title


# ---------------------------------------------------------------------- read noise
def _noise_vs_g(cal: Calibration, path: Path) -> bool:
    g_bin, s_bin = _curve(cal, "read_noise", "g_bin_us"), _curve(cal, "read_noise", "std_bin_us")
    if g_bin is None or s_bin is None or g_bin.shape != s_bin.shape:
        return False
    sec = cal.sections.get("read_noise", {})
    with _figure((6, 4.5)) as fig:
        ax = fig.add_subplot()
        if cal.read_std_us is not None:
            gc, sc = np.ravel(cal.g_us), np.ravel(cal.read_std_us)
            if cal.stuck is not None:
                ok = np.ravel(cal.stuck) == STUCK_OK
                gc, sc = gc[ok], sc[ok]
            if gc.size > _MAX_CELL_POINTS:
                pick = np.random.default_rng(0).choice(gc.size, _MAX_CELL_POINTS, replace=False)
                gc, sc = gc[pick], sc[pick]
            ax.scatter(gc, sc, s=3, color="0.75", alpha=0.6, lw=0, label="cells", zorder=1)
        n_bin = _curve(cal, "read_noise", "n_bin")
        label = "binned (RMS std per bin)"
        if n_bin is not None and n_bin.shape == g_bin.shape:
            label += f", {int(n_bin.sum())} cells"
        ax.plot(g_bin, s_bin, "o", color="C0", ms=6, label=label, zorder=3)
        x = np.linspace(0.0, float(max(g_bin.max(), np.max(cal.g_us))) * 1.05, 100)
        rel = _num(sec, "rel")
        if rel is not None:
            ax.plot(x, rel * x, color="C3", lw=1.5, zorder=2,
                    label=f"rel * g, rel = {100 * rel:.2f} %")
        slope = _num(sec, "noise_vs_g_slope")
        if slope is not None:
            ax.plot(x, slope * x, color="C2", lw=1, ls=":", zorder=2,
                    label=f"least-squares std/g = {100 * slope:.2f} %")
        title = "read noise"
        if rel is not None:
            se = _num(sec, "rel_se")
            title += f": rel {100 * rel:.2f}" + (f" ± {100 * se:.2f}" if se else "") + " %"
        clip = _num(sec, "clip_sigma")
        if clip is not None:
            title += f", clip {clip:.2f} sigma" if clip > 0 else ", not clipped"
        med = _num(sec, "std_us_median")
        if med is not None:
            title += f", median std {med:.3g} uS"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("mean conductance (uS)")
        ax.set_ylabel("read-noise std (uS)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        save_figure(fig, path)
    return True


# ---------------------------------------------------------------------- drift
def _drift(cal: Calibration, path: Path) -> bool:
    age, y = _curve(cal, "drift", "age_s"), _curve(cal, "drift", "log_ratio")
    if age is None or y is None or age.shape != y.shape:
        return False
    se = _curve(cal, "drift", "log_ratio_se")
    if se is not None and se.shape != y.shape:
        se = None
    sec = cal.sections.get("drift", {})
    nu, nu_se, t0 = _num(sec, "nu"), _num(sec, "nu_se"), _num(sec, "t0_s")
    shift = 0.0
    if (age <= 0).any():   # a log axis cannot show age 0: plot against age + t0
        positive = age[age > 0]
        shift = t0 if t0 is not None and t0 > 0 else (
            float(positive.min()) if positive.size else 1.0)
    x = age + shift
    with _figure((6, 4.5)) as fig:
        ax = fig.add_subplot()
        ax.errorbar(x, y, yerr=se, fmt="o", color="C0", capsize=3, ms=5,
                    label="mean log(G / G0) over cells" + (" ± se" if se is not None else ""))
        if nu is not None and t0 is not None and t0 > 0:
            grid = np.geomspace(max(float(x.min()), 1e-12) / 1.5, float(x.max()) * 1.5, 200)
            a = grid - shift
            keep = a >= 0
            ax.plot(grid[keep], -nu * np.log((a[keep] + t0) / t0), color="C3", lw=1.5,
                    label=f"-nu log((t + t0) / t0), t0 = {t0:.3g} s")
        ax.set_xscale("log")
        ax.set_xlabel(f"age since programming + {shift:.3g} s (s)" if shift else
                      "age since programming (s)")
        ax.set_ylabel("log(G / G0)")
        title = "drift"
        if nu is not None:
            title += f": nu = {nu:.4g}" + (f" ± {nu_se:.2g}" if nu_se is not None else "")
        if t0 is not None:
            title += f", t0 = {t0:.3g} s"
        nu_std = _num(sec, "nu_std")
        if nu_std is not None:
            title += f", cell-to-cell std of nu {nu_std:.2g}"
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        save_figure(fig, path)
    return True


# ---------------------------------------------------------------------- ADC
def _adc(cal: Calibration, path: Path) -> bool:
    i, code = _curve(cal, "adc", "current_ua"), _curve(cal, "adc", "code")
    if i is None or code is None or i.shape != code.shape:
        return False
    sec = cal.sections.get("adc", {})
    bits = _num(sec, "bits")
    gain, offset = _num(sec, "gain_codes_per_ua"), _num(sec, "offset_codes")
    sat = _num(sec, "saturation_ua")
    top = (1 << int(bits)) - 1 if bits is not None else None
    with _figure((6, 4.5)) as fig:
        ax = fig.add_subplot()
        ax.scatter(i, code, s=8, color="C0", alpha=0.7, lw=0, label=f"measured ({i.size})")
        if gain is not None and offset is not None:
            hi = max(float(i.max()), sat or 0.0) * 1.05
            x = np.linspace(min(float(i.min()), 0.0), hi, 400)
            line = gain * x + offset
            if top is not None:
                line = np.clip(line, 0, top)
            ax.plot(x, line, color="C3", lw=1.5,
                    label=f"{gain:.3g} codes/uA * i + {offset:.3g}"
                    + (f", clipped to [0, {top}]" if top is not None else ""))
        if sat is not None:
            ax.axvline(sat, color="k", ls="--", lw=1, label=f"saturation {sat:.3g} uA")
        if top is not None:
            ax.axhline(top, color="0.5", ls=":", lw=1, label=f"top code {top}")
        title = "ADC"
        if bits is not None:
            title += f": {int(bits)} bits"
        if gain is not None:
            gse = _num(sec, "gain_se")
            title += f", gain {gain:.4g}" + (f" ± {gse:.2g}" if gse else "") + " codes/uA"
        if offset is not None:
            title += f", offset {offset:.3g} codes"
        if sat is not None:
            title += f", saturates at {sat:.3g} uA"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("bit-line current (uA)")
        ax.set_ylabel("ADC code")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        save_figure(fig, path)
    return True


# ---------------------------------------------------------------------- write-verify
def _write_verify(cal: Calibration, path: Path) -> bool:
    by_round = _curve(cal, "write_verify", "converged_by_round")
    pulses = cal.curves.get("write_verify", {}).get("pulses")
    pulses = None if pulses is None or not np.size(pulses) else np.asarray(pulses).ravel()
    if by_round is None and pulses is None:
        return False
    sec = cal.sections.get("write_verify", {})
    panels = int(by_round is not None) + int(pulses is not None)
    with _figure((5.2 * panels, 4.2)) as fig:
        axes = list(fig.subplots(1, panels, squeeze=False)[0])
        if by_round is not None:
            ax = axes.pop(0)
            rounds = np.arange(1, by_round.size + 1)
            ax.plot(rounds, 100 * by_round, "o-", color="C0", ms=4)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("verify round")
            ax.set_ylabel("cells converged (%)")
            ax.set_ylim(0, 102)
            ax.set_title(f"converged after round {by_round.size}: "
                         f"{100 * by_round[-1]:.1f} %", fontsize=9)
            ax.grid(True, alpha=0.3)
        if pulses is not None:
            ax = axes.pop(0)
            top = int(max(pulses.max(), 0))
            ax.hist(pulses, bins=np.arange(top + 2) - 0.5, color="C2", alpha=0.85)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("SET / RESET pulses per cell")
            ax.set_ylabel("cells")
            ax.set_title(f"pulses per cell: mean {pulses.mean():.2f}, max {top}", fontsize=9)
        fig.suptitle(_write_verify_title(cal, sec), fontsize=10)
        save_figure(fig, path)
    return True


def _write_verify_title(cal: Calibration, sec: dict) -> str:
    parts = []
    frac = _num(sec, "converged_fraction")
    if frac is not None:
        parts.append(f"{100 * frac:.2f} % converged")
    never = cal.curves.get("write_verify", {}).get("rounds_to_converge")
    if never is not None and np.size(never):
        parts.append(f"{int((np.asarray(never) < 0).sum())} never")
    it, tol, mean = _num(sec, "iterations"), _num(sec, "tol_us"), _num(sec, "mean_pulses")
    if it is not None:
        parts.append(f"{int(it)} rounds")
    if tol is not None:
        parts.append(f"tolerance {tol:.3g} uS")
    if mean is not None:
        parts.append(f"mean {mean:.2f} pulses")
    return "write-verify" + (": " + ", ".join(parts) if parts else "")


_FIGURES = (("forming", _forming), ("maps", _maps), ("noise_vs_g", _noise_vs_g),
            ("drift", _drift), ("adc", _adc), ("write_verify", _write_verify))
