"""Throughput of the reservoir backends, measured side by side in one run.

``lsm bench encode`` encodes the same random inputs with the event-driven Numba kernel, the same
kernel on 16-bit weight codes (``LSMConfig.weight_format = "int16"``), the dense torch backend
(batched, all threads) and snntorch, and prints samples per second and the ratios. Each backend
gets its input in its own form, built before the clock starts (events for Numba, a dense float32
raster for torch and snntorch); each is warmed up once, then timed best-of-repeats in rounds that
interleave them. The int16 kernel's spikes are compared with the float32 kernel's on the same
samples (the codes round each weight; see :class:`~lsm.config.LSMConfig`).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lsm.config import LSMConfig
from lsm.events import EventBatch
from lsm.reservoir import LSM

__all__ = ["Workload", "WORKLOADS", "TARGETS", "NOISY_SPREAD", "BUSY_SHARE", "OtherLoad",
           "verdict", "bench_workload",
           "bench_encode", "format_table"]


@dataclass(frozen=True)
class Workload:
    """A benchmark workload: a reservoir config, input activity and sample counts."""

    name: str
    config: LSMConfig
    input_activity: float
    n_samples: int
    n_samples_quick: int
    torch_batch: int


WORKLOADS = (
    Workload("paper", LSMConfig(), 0.05, 4000, 1000, 512),
    Workload("large", LSMConfig(n_inputs=2312, n_neurons=1000, n_bins=50, p_rec=0.1),
             0.04, 400, 96, 128),
)

#: Targets from the issues, on a 2-core machine. The large workload's first target, 8x torch,
#: was set before its bound was measured (``benchmarks/large_breakdown.py``); issue 14 asked
#: for 70 % of that bound on the CI machine, 3.2x torch, or int16 codes that move the bound
#: (``int16_ratio_vs_torch``: the int16 kernel against the float32 torch backend).
TARGETS = {"paper": {"ratio_vs_torch": 4.0, "ratio_vs_snntorch": 5.0, "in_loop_slowdown": 3.0},
           "large": {"ratio_vs_torch": 3.2, "int16_ratio_vs_torch": 3.2}}


#: Rates of one backend varying more than this factor between rounds: too noisy to conclude.
NOISY_SPREAD = 1.25


def _round_rates(fns: dict[str, Callable[[], object]], n: int,
                 repeats: int) -> dict[str, list[float]]:
    """Samples/s of each function in each of ``repeats`` rounds; the rounds interleave the
    functions so that a change in machine load affects them alike."""
    rates = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            rates[name].append(n / (time.perf_counter() - t0))
    return rates


def _compare(rates: dict[str, list[float]], a: str, b: str) -> dict:
    """``a`` over ``b``: the ratio of the best rounds, the ratio round by round (min, median,
    max) and the rounds' spread (the larger max/min rate of the two)."""
    ra, rb = np.asarray(rates[a]), np.asarray(rates[b])
    per_round = ra / rb
    return {"ratio": float(ra.max() / rb.max()),
            "rounds": [float(per_round.min()), float(np.median(per_round)),
                       float(per_round.max())],
            "spread": float(max(ra.max() / ra.min(), rb.max() / rb.min()))}


#: Share of the machine's CPU time taken by other processes (and the hypervisor) while a
#: benchmark ran, above which it cannot conclude: a steady load slows the parallel kernels
#: alike in every round, which the rounds' spread alone does not see.
BUSY_SHARE = 0.10


class OtherLoad:
    """Measure, around a block, the share of all CPUs' time used by anything but this process
    (``/proc/stat`` less this process's own CPU time; steal counts as others'). ``share`` is
    None where ``/proc/stat`` is not available."""

    def __enter__(self) -> OtherLoad:
        self._start = self._snapshot()
        self.share = None
        return self

    def __exit__(self, *exc) -> None:
        end = self._snapshot()
        if self._start is None or end is None:
            return
        (busy0, total0, own0), (busy1, total1, own1) = self._start, end
        tick = os.sysconf("SC_CLK_TCK")
        total_s = (total1 - total0) / tick
        if total_s > 0:
            others = (busy1 - busy0) / tick - (own1 - own0)
            self.share = min(1.0, max(0.0, others / total_s))

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat") as fh:
                fields = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        busy = user + nice + system + irq + softirq + steal
        t = os.times()
        return busy, busy + idle + iowait, t.user + t.system + t.children_user \
            + t.children_system


def verdict(rounds: list[float], spread: float, target: float, higher_is_better: bool = True,
            busy: float | None = None) -> str:
    """``met`` / ``missed`` only when every round agrees and the machine was steady (rates
    within :data:`NOISY_SPREAD` between rounds, other processes under :data:`BUSY_SHARE` of the
    CPUs); else says why it cannot conclude."""
    if busy is not None and busy > BUSY_SHARE:
        return (f"too noisy to conclude (other processes used {100 * busy:.0f} % of the CPUs "
                "during the run)")
    if spread > NOISY_SPREAD:
        return f"too noisy to conclude (rates moved {spread:.2f}x between rounds)"
    lo, _, hi = rounds
    good = lo >= target if higher_is_better else hi <= target
    bad = hi < target if higher_is_better else lo > target
    if good:
        return "met in every round"
    if bad:
        return "missed in every round"
    return f"inconclusive (rounds {lo:.2f}-{hi:.2f})"


def bench_workload(w: Workload, quick: bool = False, seed: int = 0) -> dict:
    import torch

    from lsm.torch_backend import lif_dense, lif_snntorch

    c = w.config
    n = w.n_samples_quick if quick else w.n_samples
    repeats = 3 if quick else 5
    rng = np.random.default_rng(seed)
    raster = (rng.random((n, c.n_bins, c.n_inputs)) < w.input_activity).astype(np.uint8)
    events = EventBatch.from_raster(raster)
    lsm = LSM(c)
    lsm16 = LSM(c.replace(weight_format="int16"))
    raster_t = torch.from_numpy(raster.astype(np.float32))
    w_in, w_rec = torch.from_numpy(lsm.w_in), torch.from_numpy(lsm.w_rec)
    bs = w.torch_batch

    def run_numba():
        return lsm.encode(events, features="counts", progress=False, batch_size=n)

    def run_int16():
        return lsm16.encode(events, features="counts", progress=False, batch_size=n)

    def run_torch():
        for lo in range(0, n, bs):
            lif_dense(raster_t[lo:lo + bs], w_in, w_rec, c.decay, c.v_th, c.reset)

    def run_snntorch():
        for lo in range(0, n, bs):
            lif_snntorch(raster_t[lo:lo + bs], w_in, w_rec, c.decay, c.v_th, c.reset)

    # warm-up (JIT compilation, allocator) outside the clock
    lsm.encode(events.select(slice(0, 4)), progress=False)
    lsm16.encode(events.select(slice(0, 4)), progress=False)
    lif_dense(raster_t[:4], w_in, w_rec, c.decay, c.v_th, c.reset)
    lif_snntorch(raster_t[:4], w_in, w_rec, c.decay, c.v_th, c.reset)

    rates = _round_rates({"numba": run_numba, "int16": run_int16, "torch": run_torch,
                          "snntorch": run_snntorch}, n, repeats)
    numba_rate, torch_rate, snn_rate = (max(rates[k]) for k in ("numba", "torch", "snntorch"))
    vs_torch, vs_snn = _compare(rates, "numba", "torch"), _compare(rates, "numba", "snntorch")
    i16_torch, i16_f32 = _compare(rates, "int16", "torch"), _compare(rates, "int16", "numba")

    # spike agreement on the same samples: every (sample, bin, neuron) decision
    m = min(n, 256)
    ours = lsm.encode(events.select(slice(0, m)), features="binned", progress=False)
    ref = lif_snntorch(raster_t[:m], w_in, w_rec, c.decay, c.v_th, c.reset).numpy()
    dense = lif_dense(raster_t[:m], w_in, w_rec, c.decay, c.v_th, c.reset, record=True)[1]
    ours16 = lsm16.encode(events.select(slice(0, m)), features="binned", progress=False)
    row = {
        "name": w.name,
        "n_inputs": c.n_inputs, "n_neurons": c.n_neurons, "n_bins": c.n_bins,
        "input_activity": w.input_activity, "p_rec": c.p_rec, "n_samples": n,
        "reservoir_firing_rate": float(ours.mean()),
        "numba_samples_per_s": numba_rate,
        "torch_samples_per_s": torch_rate,
        "snntorch_samples_per_s": snn_rate,
        "ratio_vs_torch": numba_rate / torch_rate,
        "ratio_vs_snntorch": numba_rate / snn_rate,
        "ratio_vs_torch_rounds": vs_torch["rounds"], "spread_vs_torch": vs_torch["spread"],
        "ratio_vs_snntorch_rounds": vs_snn["rounds"], "spread_vs_snntorch": vs_snn["spread"],
        "rounds": repeats,
        "spike_agreement": float((ours == ref).mean()),
        "spike_agreement_torch": float((ours == dense.numpy()).mean()),
        **_int16_row(rates, i16_torch, i16_f32, ours, ours16),
    }
    row.update(_bench_crossbar(c, events, n, repeats))
    return row


def _int16_row(rates: dict, vs_torch: dict, vs_f32: dict, f32: np.ndarray,
               i16: np.ndarray) -> dict:
    """The int16 kernel's speed (against torch and the float32 kernel, same rounds) and its
    agreement with the float32 kernel on the same samples' rasters ``f32``, ``i16``
    (n, n_bins, n_neurons): the fraction of equal spike decisions, of identical samples, and
    the largest difference of a rate feature (spikes per bin of one neuron in one sample) over
    the largest float32 rate."""
    r32, r16 = f32.mean(axis=1), i16.mean(axis=1)
    peak = float(r32.max())
    return {
        "int16_samples_per_s": max(rates["int16"]),
        "int16_ratio_vs_torch": vs_torch["ratio"],
        "int16_ratio_vs_torch_rounds": vs_torch["rounds"],
        "int16_spread_vs_torch": vs_torch["spread"],
        "int16_ratio_vs_float32": vs_f32["ratio"],
        "int16_ratio_vs_float32_rounds": vs_f32["rounds"],
        "int16_spread_vs_float32": vs_f32["spread"],
        "int16_spike_agreement": float((f32 == i16).mean()),
        "int16_identical_samples": float((f32 == i16).all(axis=(1, 2)).mean()),
        "int16_rate_max_rel_diff": float(np.abs(r32 - r16).max() / peak) if peak else 0.0,
        "int16_rate_mean_abs_diff": float(np.abs(r32 - r16).mean()),
    }


def _bench_crossbar(c: LSMConfig, events: EventBatch, n: int, repeats: int) -> dict:
    """Static crossbar weights vs every multiply through the simulated crossbar (when the
    reservoir fits on a 512 x 512 array)."""
    from lsm.crossbar import DifferentialMapping
    from lsm.weights import CrossbarWeights

    try:
        DifferentialMapping(c.n_inputs, c.n_neurons)
    except ValueError:
        return {}
    static = LSM(c, weights=CrossbarWeights())
    in_loop = LSM(c, weights=CrossbarWeights(in_loop=True))
    for lsm in (static, in_loop):
        lsm.encode(events.select(slice(0, 4)), progress=False)
    rates = _round_rates({name: (lambda lsm=lsm: lsm.encode(events, features="counts",
                                                            progress=False, batch_size=n))
                          for name, lsm in (("static", static), ("in_loop", in_loop))},
                         n, repeats)
    slow = _compare(rates, "static", "in_loop")
    return {"crossbar_static_samples_per_s": max(rates["static"]),
            "crossbar_in_loop_samples_per_s": max(rates["in_loop"]),
            "in_loop_slowdown": slow["ratio"], "in_loop_slowdown_rounds": slow["rounds"],
            "spread_in_loop": slow["spread"]}


def bench_encode(quick: bool = False, workloads: tuple[str, ...] | None = None,
                 seed: int = 0) -> dict:
    """Run the encode benchmark; returns ``{"workloads": [...], "machine": {...}}``."""
    import numba
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    with OtherLoad() as load:
        rows = [bench_workload(w, quick=quick, seed=seed) for w in WORKLOADS
                if workloads is None or w.name in workloads]
    return {
        "workloads": rows,
        "other_cpu_share": load.share,
        "machine": {"cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "numba": numba.__version__, "platform": platform.platform()},
        "targets": TARGETS,
        "quick": quick,
    }


def format_table(result: dict) -> str:
    """The table, each ratio with its per-round range, and a verdict against the targets only
    where every round agrees on a steady machine."""
    busy = result.get("other_cpu_share")
    lines = [
        f"{'workload':<8} {'numba/s':>10} {'torch/s':>10} {'snntorch/s':>11} "
        f"{'x torch (rounds)':>22} {'x snntorch (rounds)':>22} {'agree':>8}"
    ]
    notes = []
    for r in result["workloads"]:
        t = TARGETS.get(r["name"], {})
        cells = []
        for key, label in (("ratio_vs_torch", "x torch"), ("ratio_vs_snntorch", "x snntorch")):
            lo, _, hi = r[f"{key}_rounds"]
            cells.append(f"{r[key]:.2f} ({lo:.2f}-{hi:.2f})")
            if key in t:
                spread = r["spread_vs_torch" if key == "ratio_vs_torch" else "spread_vs_snntorch"]
                notes.append(f"{r['name']}: {label} >= {t[key]:g}: "
                             f"{verdict(r[f'{key}_rounds'], spread, t[key], busy=busy)}")
        lines.append(
            f"{r['name']:<8} {r['numba_samples_per_s']:>10.0f} {r['torch_samples_per_s']:>10.0f} "
            f"{r['snntorch_samples_per_s']:>11.0f} {cells[0]:>22} {cells[1]:>22} "
            f"{r['spike_agreement']:>8.5f}"
        )
    for r in result["workloads"]:
        if "int16_samples_per_s" not in r:
            continue
        lo, _, hi = r["int16_ratio_vs_torch_rounds"]
        lo32, _, hi32 = r["int16_ratio_vs_float32_rounds"]
        lines.append(
            f"{r['name']:<8} int16 weight codes: {r['int16_samples_per_s']:.0f}/s, "
            f"{r['int16_ratio_vs_torch']:.2f}x torch (rounds {lo:.2f}-{hi:.2f}), "
            f"{r['int16_ratio_vs_float32']:.2f}x float32 numba (rounds {lo32:.2f}-{hi32:.2f}); "
            f"vs float32: {r['int16_spike_agreement']:.5f} of spikes equal, "
            f"{r['int16_identical_samples']:.2f} of samples identical, rate features differ "
            f"by {r['int16_rate_max_rel_diff']:.3f} of the largest at most "
            f"(mean |diff| {r['int16_rate_mean_abs_diff']:.5f} spikes/bin)")
        target = TARGETS.get(r["name"], {}).get("int16_ratio_vs_torch")
        if target is not None:
            said = verdict(r["int16_ratio_vs_torch_rounds"], r["int16_spread_vs_torch"], target,
                           busy=busy)
            notes.append(f"{r['name']}: int16 x torch >= {target:g}: {said}")
    for r in result["workloads"]:
        if "in_loop_slowdown" not in r:
            continue
        lo, _, hi = r["in_loop_slowdown_rounds"]
        lines.append(
            f"{r['name']:<8} crossbar weights: static {r['crossbar_static_samples_per_s']:.0f}/s, "
            f"in the loop {r['crossbar_in_loop_samples_per_s']:.0f}/s "
            f"({r['in_loop_slowdown']:.2f}x slower; rounds {lo:.2f}-{hi:.2f})")
        limit = TARGETS.get(r["name"], {}).get("in_loop_slowdown")
        if limit is not None:
            said = verdict(r["in_loop_slowdown_rounds"], r["spread_in_loop"], limit, False,
                           busy=busy)
            notes.append(f"{r['name']}: in-loop slowdown <= {limit:g}x: {said}")
    m = result["machine"]
    lines += [f"targets: {n}" for n in notes]
    lines.append(f"({m['cpu_count']} CPUs, numba {m['numba']} x{m['numba_threads']} threads, "
                 f"torch {m['torch']} x{m['torch_threads']} threads; best of "
                 f"{result['workloads'][0]['rounds'] if result['workloads'] else 0} interleaved "
                 "rounds, ratios also round by round; agree = fraction of spike decisions equal "
                 "to snntorch)")
    return "\n".join(lines)
