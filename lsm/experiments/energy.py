"""Energy and latency per inference on a dataset split (``lsm energy``).

Encodes the split (or its first ``limit`` samples) with activity counting on, through the
cache when one is given, prices the activity with each profile (:mod:`lsm.energy`) and writes
a run directory: ``metrics.json`` (the report), ``config.toml`` (the settings and the profiles
as they were used, with units) and ``energy.png`` (energy per inference per platform, and the
breakdown by component).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsm.data.registry import DATASET_NAMES
from lsm.energy import (
    DEFAULT_PROFILES,
    SHIPPED,
    Activity,
    EnergyReport,
    Workload,
    estimate,
    load_profile,
    override,
    profile_to_dict,
    shipped_profile,
)
from lsm.experiments.common import WEIGHT_SOURCES
from lsm.validation import check_choice

__all__ = ["EnergyConfig", "DEFAULT_PROFILES", "PAPER_RATIOS", "resolve_profiles", "run_energy",
           "encode_activity", "format_energy", "energy_plot"]


#: The reference paper's headline: "a 23.34- and 160-fold improvement in energy efficiency
#: compared with cutting-edge digital hardware, respectively" (its two tasks).
PAPER_RATIOS = (23.34, 160.0)


@dataclass(frozen=True)
class EnergyConfig:
    """An energy estimate: a dataset split, a reservoir, the platforms.

    Parameters
    ----------
    dataset : {"nmnist", "ntidigits"}
    path : path
        The dataset (N-MNIST folder or N-TIDIGITS ``.hdf5`` file).
    split : {"train", "test"}
    limit : int, optional
        Price the first ``limit`` samples of the split (default: all).
    weights : {"gaussian", "crossbar", "chip"}
        The reservoir's weights (:data:`lsm.experiments.common.WEIGHT_SOURCES`).
    calibration : path, optional
        A calibration file (``lsm calibrate run``) whose measured map supplies the cells'
        conductances (its block at (0, 0)) instead of the weight source's.
    profiles : tuple of str
        Shipped profile names (:data:`lsm.energy.SHIPPED`) or TOML files.
    settings : tuple of str
        Changes to them, ``"<profile>:<table>.<key>=<value>"`` (e.g.
        ``"imc40:readout.adc_bits=8"``).
    head_dims : tuple of int
        Widths of the digital head's layers after the N spike features (default 64: the
        paper's projection); ``()`` for no head.
    runs_dir, cache : path
        Parent of the run directory; activity cache folder (optional).
    on_bad_sample : {"error", "skip"}
    decoder : {"auto", "fused", "reference"}
    """

    dataset: str
    path: str | os.PathLike
    split: str = "test"
    limit: int | None = None
    weights: str = "gaussian"
    calibration: str | os.PathLike | None = None
    profiles: tuple = DEFAULT_PROFILES
    settings: tuple = ()
    head_dims: tuple = (64,)
    runs_dir: str | os.PathLike = "runs"
    cache: str | os.PathLike | None = None
    on_bad_sample: str = "error"
    decoder: str = "auto"
    lsm_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASET_NAMES)
        check_choice("split", self.split, ("train", "test"))
        check_choice("weights", self.weights, WEIGHT_SOURCES)
        if self.limit is not None and (isinstance(self.limit, bool) or int(self.limit) < 1):
            raise ValueError(f"EnergyConfig.limit must be a positive number of samples, got "
                             f"{self.limit!r}")
        if any(int(d) < 1 for d in self.head_dims):
            raise ValueError(f"EnergyConfig.head_dims must be positive widths, got "
                             f"{self.head_dims}")


def resolve_profiles(names, settings=()) -> list:
    """Load each profile (a shipped name or a TOML file) and apply the ``settings``
    (``"<profile>:<table>.<key>=<value>"``, naming a profile by its ``name``).

    Raises
    ------
    ValueError
        An unknown name or missing file, a bad file, a setting for no loaded profile, two
        profiles of the same name.
    """
    profiles = []
    for n in names:
        if str(n) in SHIPPED:
            profiles.append(shipped_profile(str(n)))
        elif Path(n).is_file():
            profiles.append(load_profile(n))
        else:
            raise ValueError(f"--profile {n}: neither a shipped profile ({', '.join(SHIPPED)}) "
                             "nor a profile file")
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ValueError(f"--profile: two profiles have the same name ({names}); give "
                         "each file its own name")
    for s in settings:
        target, sep, change = str(s).partition(":")
        names = [p.name for p in profiles]
        if not sep or target not in names:
            raise ValueError(f"--set {s!r}: expected <profile>:<table>.<key>=<value> with a "
                             f"profile among {names}")
        i = names.index(target)
        try:
            changed = override(profiles[i], change)
        except ValueError as exc:  # name the whole setting, profile included
            raise ValueError(str(exc).replace(f"--set {change!r}", f"--set {s!r}")) from None
        note = f"set {change.strip()}"
        desc = changed.description
        desc = (desc[:-1] + f"; {note}]") if desc.endswith("]") and "[set " in desc else \
            f"{desc} [{note}]".strip()
        profiles[i] = dataclasses.replace(changed, description=desc)
        names = [p.name for p in profiles]
        if len(set(names)) != len(names):
            raise ValueError(f"--set {s!r}: two profiles now have the same name ({names})")
    return profiles


def encode_activity(dataset, pre, lsm, limit: int | None = None, on_bad_sample: str = "error",
                    decoder: str = "auto", progress: bool = True, chunk_size: int = 256,
                    cache=None) -> tuple[Activity, dict]:
    """Encode (the first ``limit`` samples of) a dataset split with activity counting; with a
    cache, a stored activity of the same encoding is read back instead. Returns the activity
    and ``{"samples", "skipped", "cache_hit"}``."""
    from lsm.data.cache import as_cache
    from lsm.data.pipeline import check_not_empty, encode_chunks, encoding_key

    check_not_empty(dataset)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    key = encoding_key(dataset, pre, lsm, "activity", 1, on_bad_sample) + f"-first{n}"
    cache = as_cache(cache)
    if cache is not None:
        hit = cache.load(key, required=("activity_counts", "activity_input_rows",
                                        "activity_drive", "activity_n_bins",
                                        "activity_fields"))
        if hit is not None and "skipped_json" in hit:
            activity = Activity.from_arrays(hit, f"cache entry {key}")
            skipped = [tuple(s) for s in json.loads(str(hit["skipped_json"]))]
            return activity, {"samples": len(activity), "cache_hit": True, "skipped": skipped}
    chunks = list(encode_chunks(dataset, pre, lsm, "counts", 1, on_bad_sample, chunk_size,
                                None, progress, decoder, n_samples=n, activity=True))
    parts = [c.activity for c in chunks if len(c.activity)]
    skipped = [s for c in chunks for s in c.skipped]
    if not parts:
        raise ValueError(f"{getattr(dataset, 'root', 'the dataset')}: no readable sample "
                         f"among the first {n} to price")
    activity = Activity.concatenate(parts)
    if cache is not None:
        cache.store(key, **activity.arrays(),
                    skipped_json=np.array(json.dumps([list(s) for s in skipped])))
    return activity, {"samples": len(activity), "cache_hit": False, "skipped": skipped}


def run_energy(cfg: EnergyConfig, lsm_config=None, progress: bool = True) -> dict:
    """Price one inference of the dataset split on every profile; write the run directory.

    Returns
    -------
    dict
        ``report`` (:meth:`lsm.energy.EnergyReport.to_dict`), the settings, ``run_dir`` and
        ``plot``.
    """
    from lsm.data.formats import data_kind
    from lsm.data.registry import dataset_spec
    from lsm.experiments.common import make_weights, write_run_files
    from lsm.io import check_input_file, check_output_dir
    from lsm.reservoir import LSM
    from lsm.runs import run_directory

    check_output_dir(cfg.runs_dir, "runs folder")
    profiles = resolve_profiles(cfg.profiles, cfg.settings)
    spec = dataset_spec(cfg.dataset)
    lsm_cfg = lsm_config if lsm_config is not None else spec.lsm_config()
    if cfg.lsm_overrides:
        lsm_cfg = lsm_cfg.replace(**cfg.lsm_overrides)
    g, chip = None, {}
    if cfg.calibration is not None:
        g, chip = _calibration(check_input_file(cfg.calibration, "--calibration"), lsm_cfg)
    lsm = LSM(lsm_cfg, weights=make_weights(cfg.weights))
    ds = spec.open(cfg.path, cfg.split, on_bad_sample=cfg.on_bad_sample)
    pre = spec.preprocessing(n_bins=lsm_cfg.n_bins)
    activity, info = encode_activity(ds, pre, lsm, cfg.limit, cfg.on_bad_sample, cfg.decoder,
                                     progress, cache=cfg.cache)
    workload = Workload.from_lsm(lsm, g, tuple(int(d) for d in cfg.head_dims))
    if g is not None:
        workload = _with_source(workload, f"calibration {cfg.calibration}")
    report = estimate(activity, workload, profiles)
    result = {"dataset": cfg.dataset, "data": data_kind(cfg.path), "split": cfg.split,
              "samples": info["samples"], "cache_hit": info["cache_hit"],
              "skipped": info["skipped"], "weights": cfg.weights,
              "conductances": workload.conductance_source,
              "lsm": {"n_inputs": lsm_cfg.n_inputs, "n_neurons": lsm_cfg.n_neurons,
                      "n_bins": lsm_cfg.n_bins},
              "head_macs": workload.head_macs, "paper_ratios": list(PAPER_RATIOS),
              "profiles": {p.name: p.description for p in profiles},
              "calibration": chip,
              "settings": list(cfg.settings),
              "report": report.to_dict()}
    with run_directory(cfg.runs_dir, f"energy-{cfg.dataset}") as run:
        result["run_dir"] = str(run)
        result["plot"] = str(run / "energy.png")
        write_run_files(run, {"run": cfg, "lsm": lsm_cfg.to_dict(),
                              "profiles": {p.name: profile_to_dict(p) for p in profiles}},
                        result)
        title = f"{cfg.dataset} {cfg.split} ({result['data']}), {info['samples']} samples"
        if cfg.settings:
            title += "\n" + ", ".join(cfg.settings)
        energy_plot(report, run / "energy.png", title)
    return result


def _calibration(path, lsm_cfg) -> tuple[np.ndarray, dict]:
    """The calibrated map's block for this LSM, and the chip's measured ADC resolution and
    read voltage (when the calibration measured its ADC), for the report."""
    from lsm.crossbar.calfile import read_calibration
    from lsm.crossbar.twin import map_block

    cal = read_calibration(path)
    g = map_block(cal, lsm_cfg.n_inputs + lsm_cfg.n_neurons, 2 * lsm_cfg.n_neurons)
    chip = {"path": str(path)}
    if cal.has("adc"):
        adc = cal.section("adc")
        chip.update(adc_bits=int(adc["bits"]), v_read_v=float(adc["v_read"]))
    return g, chip


def _with_source(w: Workload, source: str) -> Workload:
    from dataclasses import replace

    return replace(w, conductance_source=source)


def energy_plot(report: EnergyReport, path, title: str = "") -> Path:
    """Two panels: energy per inference per platform (log scale, ratio to the macro on each
    bar), and each platform's energy split by component (stacked, % of its total)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lsm.plots import save_figure

    names = [_plain(p.name) for p in report.platforms]
    totals = [float(np.mean(p.total_j)) for p in report.platforms]
    ratios = {_plain(k): v for k, v in report.ratios().items()}
    title = _plain(title)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(len(names))
    ax1.bar(x, totals, color="0.55")
    ax1.set_yscale("log")
    ax1.set_xticks(x, names)
    ax1.set_ylabel("energy per inference (J)")
    for i, t in enumerate(totals):
        ratio = ratios[names[i]]
        ax1.annotate(f"{_si(t, 'J')}\n" + ("-" if ratio is None else f"{ratio:.3g}x"), (i, t),
                     ha="center", va="bottom", fontsize=8)
    ax1.set_title(f"mean per inference; x = energy / {_plain(report.reference.name)}'s "
                  "(> 1: costs more)", fontsize=9)
    ax1.margins(y=0.25)
    components = []
    for p in report.platforms:
        components += [c for c in p.components_j if c not in components]
    bottom = np.zeros(len(names))
    cmap = plt.get_cmap("tab10")
    for k, c in enumerate(components):
        share = np.array([100 * float(np.mean(p.components_j[c])) / max(t, 1e-300)
                          if c in p.components_j else 0.0
                          for p, t in zip(report.platforms, totals, strict=True)])
        ax2.bar(x, share, bottom=bottom, label=_plain(c), color=cmap(k % 10))
        bottom += share
    ax2.set_xticks(x, names)
    ax2.set_ylabel("% of the platform's energy")
    ax2.set_ylim(0, 100)
    ax2.set_title("each platform's energy by component (% of its total)", fontsize=9)
    ax2.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _plain(text: str) -> str:
    """Text for a matplotlib label, shown as written (no mathtext between dollar signs)."""
    return str(text).replace("$", r"\$")


def _si(value: float, unit: str) -> str:
    from lsm.energy.units import format_quantity

    return format_quantity(value, unit)


def format_energy(r: dict) -> str:
    """The report as a table: energy and latency per inference, ratio, largest components."""
    rep = r["report"]
    a = rep["activity_mean"]
    ref = rep["reference"]
    lines = [f"energy per inference: {r['dataset']} {r['split']} ({r['data']}), "
             f"{r['samples']:,} samples, {r['weights']} weights, LSM {r['lsm']['n_inputs']} -> "
             f"{r['lsm']['n_neurons']} x {r['lsm']['n_bins']} bins, head {r['head_macs']:,} MACs",
             f"  activity per inference: {a['input_events']:.1f} input events, "
             f"{a['spikes']:.1f} spikes, {a['recurrent_rows']:.1f} recurrent row activations, "
             f"{a['steps']:.1f} steps, {a['active_steps']:.1f} active steps",
             f"  conductances: {r['conductances']}"]
    if r.get("settings"):
        lines.append(f"  settings: {', '.join(r['settings'])}")
    if r.get("skipped"):
        lines.append(f"  skipped {len(r['skipped'])} bad samples (--on-bad-sample skip; listed "
                     "in metrics.json)")
    chip = r.get("calibration") or {}
    if "adc_bits" in chip:
        lines.append(f"  calibrated chip: ADC {chip['adc_bits']} bits, read at "
                     f"{chip['v_read_v']:g} V; the profiles keep their own (e.g. --set "
                     f"<macro>:readout.adc_bits={chip['adc_bits']} --set "
                     f"'<macro>:array.v_read={chip['v_read_v']:g} V')")
    lines += [f"  mean per inference (p10-p90 over the samples); x = its energy / {ref}'s "
              f"(> 1: costs more than {ref}); latency at batch 1",
              f"  {'platform':<16}{'energy':>11}{'p10-p90':>22}{'x':>12}{'latency':>11}"
              "   largest components"]
    for p in rep["platforms"]:
        total = p["energy_j"]
        parts = sorted(p["components_j"].items(), key=lambda kv: -kv[1])[:3]
        share = ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in parts if total > 0)
        lo, hi = p["energy_j_p10_p90"]
        ratio = rep["ratios"][p["name"]]
        ratio = "-" if ratio is None else (f"{ratio:,.0f}x" if ratio >= 1000 else
                                           f"{ratio:.3g}x")
        lines.append(f"  {p['name']:<16}{_si(total, 'J'):>11}"
                     f"{_si(lo, 'J') + ' - ' + _si(hi, 'J'):>22}"
                     f"{ratio:>12}{_si(p['latency_s'], 's'):>11}   {share}")
    for p in rep["platforms"]:
        if "batch1_energy_j" in p["counts"]:
            lines.append(f"  {p['name']}: energy at batched throughput; one inference alone "
                         f"(batch 1, {_si(p['latency_s'], 's')}) would cost "
                         f"{_si(p['counts']['batch1_energy_j'], 'J')}")
        for k, v in p["once_j"].items():
            n = v / max(p["energy_j"], 1e-300)
            lines.append(f"  once, {p['name']}: {k} of {p['counts'].get('cells', 0):,} cells "
                         f"{_si(v, 'J')} (as much as {n:,.0f} inferences)")
    lines.append(f"  paper (abstract): {PAPER_RATIOS[0]}x and {PAPER_RATIOS[1]:g}x better "
                 "energy efficiency than digital hardware on its two tasks; the README's "
                 "Energy section says what moves the ratio")
    lines.append(f"run directory: {r['run_dir']} (energy.png)")
    return "\n".join(lines)
