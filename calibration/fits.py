"""Fits of a macro's measurements: pure functions, arrays in, parameters with uncertainties out.

Each returns the ``section`` of the calibration file (:mod:`lsm.crossbar.calfile`) that its
procedure fills, and the curves behind it. The measurement side (which pulses, which reads) is
:mod:`calibration.procedures`.

- :func:`fit_read_noise`: repeated reads -> per-cell mean and std, the relative noise and its
  clipping (from the kurtosis of the deviations, since the crossbar model clips its noise), noise
  vs conductance.
- :func:`fit_forming`: formed conductances -> Gaussian, lognormal, two-component mixture and the
  model's forming law (a truncated Gaussian), each by maximum likelihood with standard errors
  from the observed information, compared by KS statistic and AIC.
- :func:`fit_drift`: re-reads at known ages after programming -> the power law
  ``G(t) = G0 ((t + t0) / t0)^-nu`` (nu, t0 and the cell-to-cell spread of nu).
- :func:`classify_stuck`: reads before and after a RESET and a SET -> the stuck map and its rate
  with a Clopper-Pearson interval.
- :func:`fit_adc`: ADC codes of known bit-line currents -> gain, offset, resolution, saturation.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special, stats

from lsm.crossbar.calfile import STUCK_HIGH, STUCK_LOW, STUCK_OK
from lsm.crossbar.distributions import FormingLaw, Gaussian, GaussianMixture, LogNormal
from lsm.crossbar.inloop import clipped_normal_variance

__all__ = ["fit_read_noise", "fit_forming", "fit_drift", "classify_stuck", "fit_adc",
           "clipped_normal_kurtosis", "clopper_pearson", "FAMILY_ORDER"]

#: the families :func:`fit_forming` compares, in the order reported
FAMILY_ORDER = ("gaussian", "lognormal", "mixture", "forming-law")

#: a kurtosis this close to 3 (a clip beyond 6 sigma) is read as unclipped noise
_MAX_CLIP_SIGMA = 6.0


# ---------------------------------------------------------------------- read noise
def clipped_normal_kurtosis(c: float) -> float:
    """Kurtosis ``E[X^4] / E[X^2]^2`` of a standard normal clipped at +-c."""
    q = special.ndtr(-c)
    phi = math.exp(-c * c / 2) / math.sqrt(2 * math.pi)
    m4 = 3 * (1 - 2 * q) - 2 * phi * (c ** 3 + 3 * c) + 2 * q * c ** 4
    return float(m4 / clipped_normal_variance(c) ** 2)


def _clip_from_kurtosis(k: float) -> float:
    """The clip (sigmas) whose clipped normal has kurtosis ``k``; 0 (no clip) near 3."""
    if k >= clipped_normal_kurtosis(_MAX_CLIP_SIGMA):
        return 0.0
    lo = 0.3
    if k <= clipped_normal_kurtosis(lo):
        return lo
    return float(optimize.brentq(lambda c: clipped_normal_kurtosis(c) - k, lo,
                                 _MAX_CLIP_SIGMA))


def fit_read_noise(reads_us: np.ndarray, healthy: np.ndarray | None = None,
                   n_bins: int = 8) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """Read noise from ``n`` reads of every cell.

    The reads are first freed of a common factor per read (the region's median ratio to the
    cells' means), so that drift between reads is not taken for noise. Per cell: the mean and
    the std (``ddof=1``). Pooled over healthy cells: the relative deviations' std ``s`` and
    kurtosis ``k``; the noise is modelled as the crossbar's, ``eps ~ N(0, rel^2)`` clipped at
    ``c`` sigmas, with ``c`` solved from ``k`` and ``rel = s / sqrt(Var(clipped Z))``.

    Parameters
    ----------
    reads_us : array (n_reads, rows, cols)
        At least 4 reads.
    healthy : bool array (rows, cols), optional
        Cells to pool (default all with a positive mean).
    n_bins : int
        Conductance bins of the noise-vs-conductance curve.

    Returns
    -------
    section : dict
        ``rel`` (and its standard error ``rel_se``), ``clip_sigma`` (0: not clipped),
        ``kurtosis``, ``n_reads``, ``std_us_median``, ``common_drift_rel`` (spread of the
        per-read factors), ``noise_vs_g_slope`` (least-squares std/g).
    curves : dict
        ``g_bin_us``, ``std_bin_us``, ``n_bin``, ``read_factor``.
    mean_us, std_us : arrays (rows, cols)
    """
    x = np.asarray(reads_us, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 4:
        raise ValueError(f"read noise needs at least 4 reads of a 2-D region, got shape "
                         f"{x.shape}")
    n = x.shape[0]
    mean0 = x.mean(axis=0)
    mask = (mean0 > 0) if healthy is None else (np.asarray(healthy, bool) & (mean0 > 0))
    if mask.sum() < 10:
        raise ValueError(f"read noise needs at least 10 healthy cells, got {int(mask.sum())}")
    factor = np.median(x[:, mask] / mean0[mask], axis=1)
    x = x / factor[:, None, None]
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=1)
    d = (x[:, mask] - mean[mask]) / mean[mask] * math.sqrt(n / (n - 1))
    s = float(d.std())
    k = float(np.mean(d ** 4) / s ** 4)
    c = _clip_from_kurtosis(k)
    rel = s / math.sqrt(clipped_normal_variance(c if c > 0 else None))
    # standard error of a std from N independent samples (per-cell means remove one each)
    rel_se = rel / math.sqrt(2 * mask.sum() * (n - 1))
    g = mean[mask]
    edges = np.quantile(g, np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, g, side="right") - 1, 0, n_bins - 1)
    sd = std[mask]
    g_bin = np.array([g[which == b].mean() if (which == b).any() else np.nan
                      for b in range(n_bins)])
    s_bin = np.array([np.sqrt(np.mean(sd[which == b] ** 2)) if (which == b).any() else np.nan
                      for b in range(n_bins)])
    n_bin = np.array([(which == b).sum() for b in range(n_bins)])
    keep = n_bin > 0
    slope = float(np.sum(g * sd) / np.sum(g * g))
    section = {"rel": rel, "rel_se": rel_se, "clip_sigma": c, "kurtosis": k, "n_reads": n,
               "n_cells": int(mask.sum()), "std_us_median": float(np.median(sd)),
               "common_drift_rel": float(np.ptp(factor)), "noise_vs_g_slope": slope,
               "model": "relative Gaussian clipped at clip_sigma (0: not clipped)"}
    curves = {"g_bin_us": g_bin[keep], "std_bin_us": s_bin[keep], "n_bin": n_bin[keep],
              "read_factor": factor}
    return section, curves, mean, std


# ---------------------------------------------------------------------- forming
def _hessian(f, x: np.ndarray, rel_step: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian of a scalar function."""
    x = np.asarray(x, dtype=np.float64)
    h = rel_step * np.maximum(np.abs(x), 1e-3)
    k = x.size
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            ei = np.zeros(k)
            ej = np.zeros(k)
            ei[i] = h[i]
            ej[j] = h[j]
            v = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                4 * h[i] * h[j])
            out[i, j] = out[j, i] = v
    return out


def _standard_errors(nll, params: np.ndarray) -> np.ndarray:
    """Standard errors from the observed information (inverse Hessian of the negative
    log-likelihood at the optimum); NaN where it is singular."""
    try:
        cov = np.linalg.inv(_hessian(nll, params))
        return np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    except np.linalg.LinAlgError:
        return np.full(len(params), np.nan)


def _mixture_em(g: np.ndarray, iters: int = 200) -> tuple[float, float, float, float, float]:
    """Two-component 1-D Gaussian mixture by EM, started from the lower and upper thirds."""
    lo, hi = np.quantile(g, [1 / 3, 2 / 3])
    m = np.array([g[g <= lo].mean(), g[g >= hi].mean()])
    s = np.array([g.std(), g.std()]) / 2
    w = 0.5
    floor = 1e-3 * g.std() + 1e-12
    for _ in range(iters):
        p1 = w * stats.norm.pdf(g, m[0], s[0])
        p2 = (1 - w) * stats.norm.pdf(g, m[1], s[1])
        r = p1 / np.maximum(p1 + p2, 1e-300)
        w_new = float(np.clip(r.mean(), 1e-6, 1 - 1e-6))
        m_new = np.array([np.sum(r * g) / r.sum(), np.sum((1 - r) * g) / (1 - r).sum()])
        s_new = np.sqrt(np.array([np.sum(r * (g - m_new[0]) ** 2) / r.sum(),
                                  np.sum((1 - r) * (g - m_new[1]) ** 2) / (1 - r).sum()]))
        s_new = np.maximum(s_new, floor)
        done = abs(w_new - w) < 1e-9 and np.allclose(m_new, m, rtol=1e-9)
        w, m, s = w_new, m_new, s_new
        if done:
            break
    return w, float(m[0]), float(s[0]), float(m[1]), float(s[1])


def _fit_family(name: str, g: np.ndarray, g_min_us: float, g_max_us: float):
    """(distribution, parameter names, values, standard errors, log-likelihood)."""
    if name == "gaussian":
        m, s = float(g.mean()), float(g.std())
        dist = Gaussian(m, s)
        names, vals = ("mean_us", "std_us"), np.array([m, s])
        ses = np.array([s / math.sqrt(g.size), s / math.sqrt(2 * g.size)])
    elif name == "lognormal":
        lg = np.log(g)
        mu, sig = float(lg.mean()), float(lg.std())
        dist = LogNormal(mu, sig)
        names, vals = ("mu", "sigma"), np.array([mu, sig])
        ses = np.array([sig / math.sqrt(g.size), sig / math.sqrt(2 * g.size)])
    elif name == "mixture":
        w, m1, s1, m2, s2 = _mixture_em(g)
        dist = GaussianMixture(w, m1, s1, m2, s2)
        names = ("weight", "mean1_us", "std1_us", "mean2_us", "std2_us")
        vals = np.array([w, m1, s1, m2, s2])

        def nll(p):
            if not (0 < p[0] < 1 and p[2] > 0 and p[4] > 0):
                return 1e300
            return -np.sum(np.log(np.maximum(GaussianMixture(*p).pdf(g), 1e-300)))

        ses = _standard_errors(nll, vals)
    elif name == "forming-law":
        def nll(p):
            if p[0] <= 0 or p[1] <= 0:
                return 1e300
            return -np.sum(np.log(np.maximum(
                FormingLaw(p[0], p[1], g_min_us, g_max_us).pdf(g), 1e-300)))

        start = np.array([g.mean(), g.std() / g.mean()])
        res = optimize.minimize(nll, start, method="Nelder-Mead",
                                options={"xatol": 1e-8, "fatol": 1e-8, "maxiter": 4000})
        vals = res.x
        dist = FormingLaw(float(vals[0]), float(vals[1]), g_min_us, g_max_us)
        names = ("mean_us", "cv")
        ses = _standard_errors(nll, vals)
    else:  # pragma: no cover - FAMILY_ORDER is closed
        raise ValueError(name)
    loglik = float(np.sum(np.log(np.maximum(dist.pdf(g), 1e-300))))
    return dist, names, vals, ses, loglik


def fit_forming(g_us: np.ndarray, healthy: np.ndarray | None, pulse: dict,
                read_age_s: float = 0.0, g_min_us: float = 0.5,
                g_max_us: float = 100.0) -> tuple[dict, dict]:
    """Fit the formed conductances of the healthy cells by every family of
    :data:`FAMILY_ORDER`; the one of lowest AIC is ``chosen``.

    Parameters
    ----------
    g_us : array
        Each cell's mean conductance after forming (uS).
    healthy : bool array, optional
        Cells to fit (stuck ones left out); default all.
    pulse : dict
        The FORM pulse (``kind, amplitude_v, width_ns, compliance_ua``), kept with the fit.
    read_age_s : float
        Time between forming and these reads, s (the twin corrects it with the drift law).
    g_min_us, g_max_us : float
        The forming law's truncation (the crossbar model's range).

    Returns
    -------
    section : dict
        ``chosen``, ``families`` (name -> parameters, ``<param>_se``, ``ks``, ``ks_p``, ``aic``,
        ``loglik``), ``mean_us``/``std_us`` (sample) with their standard errors, ``n_cells``,
        ``pulse``, ``read_age_s``.
    curves : dict
        ``g_us``: the fitted values (for the histogram).
    """
    g = np.asarray(g_us, dtype=np.float64)
    mask = np.ones(g.shape, bool) if healthy is None else np.asarray(healthy, bool)
    v = g[mask & np.isfinite(g) & (g > 0)]
    if v.size < 20:
        raise ValueError(f"the forming fit needs at least 20 formed, healthy cells, got {v.size}")
    families = {}
    for name in FAMILY_ORDER:
        dist, names, vals, ses, loglik = _fit_family(name, v, g_min_us, g_max_us)
        ks = stats.kstest(v, dist.cdf)
        entry = dist.to_dict()
        entry.update({f"{n}_se": float(s) for n, s in zip(names, ses, strict=True)})
        mean, std = dist.mean_std()
        entry.update({"ks": float(ks.statistic), "ks_p": float(ks.pvalue),
                      "aic": float(2 * dist.n_params - 2 * loglik), "loglik": loglik,
                      "n_params": dist.n_params, "mean_us": mean, "std_us": std})
        families[name] = _finite_or_none(entry)
    chosen = min(families, key=lambda k: families[k]["aic"])
    s = float(v.std())
    section = {"chosen": chosen, "families": families, "mean_us": float(v.mean()),
               "mean_us_se": s / math.sqrt(v.size), "std_us": s,
               "std_us_se": s / math.sqrt(2 * v.size), "n_cells": int(v.size),
               "pulse": dict(pulse), "read_age_s": float(read_age_s),
               "g_min_us": g_min_us, "g_max_us": g_max_us}
    return section, {"g_us": v.astype(np.float32)}


def _finite_or_none(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in d.items()}


# ---------------------------------------------------------------------- drift
def _power_law(age, nu, t0):
    return -nu * np.log((age + t0) / t0)


def fit_drift(ages_s: np.ndarray, reads_us: np.ndarray, healthy: np.ndarray | None = None,
              t0_s: float | None = None) -> tuple[dict, dict]:
    """Fit ``G(t) = G0 ((t + t0) / t0)^-nu`` to reads at ``ages_s`` after programming.

    The region's mean log-conductance at each age (healthy cells) gives ``nu`` and ``t0``
    (least squares, standard errors from the covariance; ``t0`` fixed when given); per-cell
    exponents with that ``t0`` give the cell-to-cell spread ``nu_std`` (their variance minus
    the part their read noise explains).

    Parameters
    ----------
    ages_s : array (K,)
        Time since programming of each read, s (at least 3 distinct ages).
    reads_us : array (K, rows, cols)
    healthy : bool array, optional
    t0_s : float, optional
        Fix the law's time constant instead of fitting it.

    Returns
    -------
    section : dict
        ``nu``, ``nu_se``, ``t0_s``, ``t0_s_se``, ``nu_std``, ``n_cells``, ``rms_residual``,
        ``law``.
    curves : dict
        ``age_s``, ``log_ratio`` (mean log G minus the fitted log G0), ``log_ratio_se``.
    """
    a = np.asarray(ages_s, dtype=np.float64)
    x = np.asarray(reads_us, dtype=np.float64)
    if a.ndim != 1 or x.ndim != 3 or x.shape[0] != a.size:
        raise ValueError(f"drift needs ages (K,) and reads (K, rows, cols), got {a.shape} and "
                         f"{x.shape}")
    if np.unique(a).size < 3 or (a < 0).any():
        raise ValueError(f"drift needs reads at 3 or more distinct ages >= 0, got {a.tolist()}")
    mask = np.all(x > 0, axis=0)
    if healthy is not None:
        mask &= np.asarray(healthy, bool)
    if mask.sum() < 10:
        raise ValueError(f"drift needs at least 10 healthy cells, got {int(mask.sum())}")
    lg = np.log(x[:, mask])                      # (K, n)
    cell_mean = lg.mean(axis=0)
    y = (lg - cell_mean).mean(axis=1)           # mean over cells, up to a constant
    y_se = (lg - cell_mean).std(axis=1, ddof=1) / math.sqrt(mask.sum())

    def model(age, nu, t0, c):
        return c + _power_law(age, nu, t0)

    if t0_s is None:
        p0 = (0.01, 1.0, float(y[0]))
        popt, pcov = optimize.curve_fit(model, a, y, p0=p0, bounds=([0, 1e-6, -np.inf],
                                                                      [1, 1e9, np.inf]),
                                        maxfev=20000)
        nu, t0, c = popt
        nu_se, t0_se = float(np.sqrt(pcov[0, 0])), float(np.sqrt(pcov[1, 1]))
    else:
        popt, pcov = optimize.curve_fit(lambda age, nu, c: model(age, nu, t0_s, c), a, y,
                                        p0=(0.01, float(y[0])))
        (nu, c), t0 = popt, float(t0_s)
        nu_se, t0_se = float(np.sqrt(pcov[0, 0])), 0.0
    basis = -np.log((a + t0) / t0)
    b = basis - basis.mean()
    nu_cells = ((lg - lg.mean(axis=0)) * b[:, None]).sum(axis=0) / np.sum(b * b)
    resid = lg - lg.mean(axis=0) - np.outer(b, nu_cells)
    noise_var = np.mean(resid ** 2) * a.size / max(a.size - 2, 1) / np.sum(b * b)
    nu_std = math.sqrt(max(float(nu_cells.var()) - noise_var, 0.0))
    fitted = model(a, nu, t0, c)
    section = {"nu": float(nu), "nu_se": nu_se, "t0_s": float(t0), "t0_s_se": t0_se,
               "nu_std": nu_std, "n_cells": int(mask.sum()),
               "rms_residual": float(np.sqrt(np.mean((y - fitted) ** 2))),
               "law": "G(t) = G0 ((t + t0) / t0)^-nu, t since programming"}
    return section, {"age_s": a, "log_ratio": y - c, "log_ratio_se": y_se}


# ---------------------------------------------------------------------- stuck cells
def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval of a rate ``k / n``."""
    alpha = 1 - level
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def classify_stuck(before_us: np.ndarray, after_reset_us: np.ndarray,
                   after_set_us: np.ndarray, noise_std_us: np.ndarray | float,
                   rail_us: tuple[float, float] = (0.5, 100.0),
                   min_move_rel: float = 0.02, n_sigma: float = 6.0) -> tuple[np.ndarray, dict]:
    """Stuck cells: those that moved neither under a RESET nor under the SET after it.

    A cell *moves* when its conductance changes by more than ``n_sigma`` read-noise standard
    deviations and by more than ``min_move_rel`` of its value. A stuck cell is ``STUCK_LOW``
    below the middle of the rails and ``STUCK_HIGH`` above; cells sitting at a rail
    (within 2 %) are counted too (``at_rail``).

    Returns
    -------
    stuck : int8 array
        :data:`~lsm.crossbar.calfile.STUCK_OK` / ``LOW`` / ``HIGH`` per cell.
    section : dict
        ``rate`` with its 95 % Clopper-Pearson interval ``ci_low``/``ci_high``, ``n_cells``,
        ``n_low``, ``n_high``, ``g_low_us``/``g_high_us`` (mean level of each kind), ``at_rail``.
    """
    b = np.asarray(before_us, dtype=np.float64)
    r = np.asarray(after_reset_us, dtype=np.float64)
    s = np.asarray(after_set_us, dtype=np.float64)
    sd = np.broadcast_to(np.asarray(noise_std_us, dtype=np.float64), b.shape)

    def moved(x0, x1):
        d = np.abs(x1 - x0)
        return (d > n_sigma * sd * math.sqrt(2)) & (d > min_move_rel * np.maximum(x0, 1e-9))

    stuck_mask = ~moved(b, r) & ~moved(r, s)
    mid = 0.5 * (rail_us[0] + rail_us[1])
    stuck = np.full(b.shape, STUCK_OK, dtype=np.int8)
    stuck[stuck_mask & (b < mid)] = STUCK_LOW
    stuck[stuck_mask & (b >= mid)] = STUCK_HIGH
    n, k = int(b.size), int(stuck_mask.sum())
    lo, hi = clopper_pearson(k, n)
    at_rail = int(((b <= rail_us[0] * 1.02) | (b >= rail_us[1] * 0.98)).sum())
    low, high = stuck == STUCK_LOW, stuck == STUCK_HIGH
    section = {"rate": k / n, "ci_low": lo, "ci_high": hi, "n_cells": n,
               "n_low": int(low.sum()), "n_high": int(high.sum()), "at_rail": at_rail,
               "g_low_us": float(b[low].mean()) if low.any() else 0.0,
               "g_high_us": float(b[high].mean()) if high.any() else 0.0,
               "rule": f"moved by neither RESET nor SET (> {n_sigma} sigma of read noise and "
                       f"> {100 * min_move_rel:g} %)"}
    return stuck, section


# ---------------------------------------------------------------------- ADC
def fit_adc(currents_ua: np.ndarray, codes: np.ndarray, zero_codes: np.ndarray | None,
            bits: int, v_read: float) -> tuple[dict, dict]:
    """The readout chain ``code = clip(round(gain * i + offset), 0, 2**bits - 1)``.

    Gain and offset by least squares on the codes strictly inside the range (a quantisation
    error of at most half a code). The code of zero current (no current, no noise) must be the
    fitted offset rounded, when it is inside the range: a check that the transfer is linear.
    Saturation: the current at which the top code is reached, from the fit, and the smallest
    measured current that reached it (0 when none did).

    Parameters
    ----------
    currents_ua : array
        Expected bit-line currents of the inputs, uA (from the measured map).
    codes : array
        ADC codes read for them.
    zero_codes : array, optional
        Codes read for all-zero inputs.
    bits : int
        The ADC's resolution (``ADC?``); the top code seen is checked against it.
    v_read : float
        Read voltage of the inputs, V.
    """
    i = np.asarray(currents_ua, dtype=np.float64).ravel()
    c = np.asarray(codes, dtype=np.float64).ravel()
    top = (1 << int(bits)) - 1
    if c.max(initial=0) > top:
        raise ValueError(f"ADC codes up to {int(c.max())} exceed the {bits}-bit range")
    inside = (c > 0) & (c < top)
    if inside.sum() < 3 or np.ptp(i[inside]) <= 0:
        raise ValueError("the ADC fit needs at least 3 codes inside the range at different "
                         "currents")
    A = np.vstack([i[inside], np.ones(inside.sum())]).T
    (gain, offset), *_ = np.linalg.lstsq(A, c[inside], rcond=None)
    resid = c[inside] - A @ np.array([gain, offset])
    dof = max(inside.sum() - 2, 1)
    cov = np.linalg.inv(A.T @ A) * float(resid @ resid) / dof
    gain_se, offset_se = float(np.sqrt(cov[0, 0])), float(np.sqrt(cov[1, 1]))
    zero = None if zero_codes is None else np.asarray(zero_codes).ravel()
    zero_code = float(np.median(zero)) if zero is not None and zero.size else float("nan")
    if np.isfinite(zero_code) and 0 < zero_code < top and abs(zero_code - offset) > 0.5 + \
            4 * offset_se:
        raise ValueError(f"the ADC's code for zero current ({zero_code:g}) is not the fitted "
                         f"offset ({offset:.2f} +- {offset_se:.2f}): the transfer is not "
                         "linear, or the map is not the array's")
    saturated = c >= top
    sat_ua = float(i[saturated].min()) if saturated.any() else float(i.max())
    section = {"bits": int(bits), "gain_codes_per_ua": float(gain), "gain_se": gain_se,
               "offset_codes": float(offset), "offset_se": offset_se,
               "zero_input_code": zero_code if np.isfinite(zero_code) else -1.0,
               "saturation_ua": float((top - offset) / gain),
               "saturation_seen_ua": sat_ua if saturated.any() else 0.0,
               "saturated_fraction": float(saturated.mean()),
               "floor_fraction": float((c <= 0).mean()),
               "rms_residual_codes": float(np.sqrt(np.mean(resid ** 2))),
               "v_read": float(v_read), "n_points": int(i.size)}
    order = np.argsort(i)
    return section, {"current_ua": i[order], "code": c[order].astype(np.int32)}
