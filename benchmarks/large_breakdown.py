"""Where the time goes on the "large" workload (2312 -> 1000, 4 % input, 10 % recurrent), and
how fast any event-driven kernel could go on this machine.

Measured in one run, on the same random inputs:

1. the full event-driven kernel, the same kernel with the recurrent weights removed (input drive
   and membrane update only), and the torch dense backend;
2. two best cases, each run on both cores at once: (a) adding weight rows of n_neurons float32
   from a matrix small enough to stay in each core's L2 cache (the large workload's input matrix
   is 9.2 MB and does not fit; a kernel that tiled it perfectly would stream its rows at this
   rate at best), and (b) CSR scattered adds into an accumulator in L1, per nonzero;
3. from the work per sample (input events x row, spikes x fan-out) and those two rates, a
   lower bound on the time per sample (input rows at the L2 rate; the recurrence at the better
   of scattered adds and dense L2 rows), hence an upper bound on samples/s and on the ratio to
   torch that kernel work in this style (float32 weights, exact arithmetic) can reach here;
4. the same for 16-bit weight codes (``LSMConfig.weight_format = "int16"``): the int16 kernel
   is timed beside the others, int16 rows (half the bytes) are added into int32 accumulators
   from L2 at their own measured rate, and the bound is computed again with those rows (the
   spikes per sample are the int16 kernel's own).

    python benchmarks/large_breakdown.py [--samples 300] [--json]
"""

import argparse
import json
import os
import time

import numpy as np
import torch
from numba import njit, prange

from lsm import LSM, LSMConfig
from lsm.events import EventBatch
from lsm.torch_backend import lif_dense


def best_rate(fn, n, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


@njit(parallel=True, nogil=True, cache=True)
def _row_adds(w, rows, acc):
    """Each thread adds ``rows`` of ``w`` into its own accumulator, 8 rows per pass (the same
    loop shape as the reservoir kernel)."""
    n = w.shape[1]
    for t in prange(acc.shape[0]):
        a = acc[t]
        for p in range(0, rows.shape[1] - 7, 8):
            r0, r1, r2, r3 = w[rows[t, p]], w[rows[t, p + 1]], w[rows[t, p + 2]], w[rows[t, p + 3]]
            r4, r5, r6, r7 = (w[rows[t, p + 4]], w[rows[t, p + 5]], w[rows[t, p + 6]],
                              w[rows[t, p + 7]])
            for i in range(n):
                a[i] = ((((((((a[i] + r0[i]) + r1[i]) + r2[i]) + r3[i]) + r4[i]) + r5[i])
                         + r6[i]) + r7[i])


@njit(parallel=True, nogil=True, cache=True)
def _scatter_adds(indptr, indices, data, rows, acc):
    """Each thread adds the CSR rows ``rows`` into its own accumulator."""
    for t in prange(acc.shape[0]):
        a = acc[t]
        for p in range(rows.shape[1]):
            r = rows[t, p]
            for k in range(indptr[r], indptr[r + 1]):
                a[indices[k]] += data[k]


def best_case_rates(n_neurons: int, fan_out: int, threads: int, seed: int = 0) -> dict:
    """Bytes/s of L2-resident row adds and nonzeros/s of scattered adds, all threads busy."""
    rng = np.random.default_rng(seed)
    l2_rows = max(8, (1 << 20) // (4 * n_neurons))          # a 1 MiB matrix: stays in L2
    w = rng.standard_normal((l2_rows, n_neurons)).astype(np.float32)
    rows = rng.integers(0, l2_rows, (threads, 200_000)).astype(np.int64)
    acc = np.zeros((threads, n_neurons), np.float32)
    _row_adds(w, rows[:, :64], acc)
    row_s = best_rate(lambda: _row_adds(w, rows, acc), 1)
    bytes_per_s = row_s * rows.size * n_neurons * 4

    indices = np.concatenate([np.sort(rng.choice(n_neurons, fan_out, replace=False))
                              for _ in range(n_neurons)]).astype(np.uint32)
    indptr = np.arange(0, n_neurons * fan_out + 1, fan_out, dtype=np.int64)
    data = rng.standard_normal(len(indices)).astype(np.float32)
    srows = rng.integers(0, n_neurons, (threads, 20_000)).astype(np.int64)
    _scatter_adds(indptr, indices, data, srows[:, :64], acc)
    sc_s = best_rate(lambda: _scatter_adds(indptr, indices, data, srows, acc), 1)
    # int16 rows of the same 1 MiB (twice the rows) into int32 accumulators
    l2_rows16 = 2 * l2_rows
    w16 = rng.integers(-32767, 32768, (l2_rows16, n_neurons)).astype(np.int16)
    rows16 = rng.integers(0, l2_rows16, (threads, 200_000)).astype(np.int64)
    acc16 = np.zeros((threads, n_neurons), np.int32)
    _row_adds(w16, rows16[:, :64], acc16)  # int16 rows into int32: its own compilation
    row16_s = best_rate(lambda: _row_adds(w16, rows16, acc16), 1)
    return {"l2_row_add_gb_per_s": bytes_per_s / 1e9,
            "l2_int16_row_add_gb_per_s": row16_s * rows16.size * n_neurons * 2 / 1e9,
            "scatter_add_nonzeros_per_s": sc_s * srows.size * fan_out}


def kernel_bound(events_per_sample, spikes_per_sample, fan_out, n_neurons, row_bytes,
                 row_gb_per_s, scatter_per_s, threads):
    """Per-core microseconds of the input rows and of the recurrence (the cheaper of scattered
    adds and dense L2 rows) for one sample, and the samples/s bound they give."""
    per_core = row_gb_per_s * 1e9 / threads
    t_input = events_per_sample * n_neurons * row_bytes / per_core
    t_rec_csr = spikes_per_sample * fan_out / (scatter_per_s / threads)
    t_rec_dense = spikes_per_sample * n_neurons * row_bytes / per_core
    return t_input, t_rec_csr, t_rec_dense, threads / (t_input + min(t_rec_csr, t_rec_dense))


def main(n: int = 300) -> dict:
    cfg = LSMConfig(n_inputs=2312, n_neurons=1000, n_bins=50, p_rec=0.1)
    rng = np.random.default_rng(0)
    raster = (rng.random((n, 50, 2312)) < 0.04).astype(np.uint8)
    events = EventBatch.from_raster(raster)
    full = LSM(cfg)
    no_rec = LSM(cfg, weights=(full.w_in, np.zeros_like(full.w_rec)))
    codes = LSM(cfg.replace(weight_format="int16"))
    for lsm in (full, no_rec, codes):
        lsm.encode(events.select(slice(0, 4)), progress=False)
    r_full = best_rate(lambda: full.encode(events, progress=False, batch_size=n), n)
    r_drive = best_rate(lambda: no_rec.encode(events, progress=False, batch_size=n), n)
    r_codes = best_rate(lambda: codes.encode(events, progress=False, batch_size=n), n)
    # the torch dense backend exactly as `lsm bench encode` times it
    raster_t = torch.from_numpy(raster.astype(np.float32))
    w_in, w_rec = torch.from_numpy(full.w_in), torch.from_numpy(full.w_rec)

    def run_torch():
        for lo in range(0, n, 128):
            lif_dense(raster_t[lo:lo + 128], w_in, w_rec, cfg.decay, cfg.v_th, cfg.reset)

    run_torch()
    r_torch = best_rate(run_torch, n)
    a = torch.randn(128 * 50, 2312)
    b = torch.randn(2312, 1000)
    a @ b
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b
    gflops = 2 * a.shape[0] * 2312 * 1000 * 5 / (time.perf_counter() - t0) / 1e9

    # the work of one sample, from the data
    counts = full.encode(events, features="counts", progress=False, batch_size=n)
    counts16 = codes.encode(events, features="counts", progress=False, batch_size=n)
    fan_out = float(np.count_nonzero(full.w_rec)) / cfg.n_neurons
    events_per_sample = events.n_events / n
    spikes_per_sample = float(counts.sum()) / n
    spikes16_per_sample = float(counts16.sum()) / n
    threads = os.cpu_count() or 1
    best = best_case_rates(cfg.n_neurons, int(round(fan_out)), threads)
    # the recurrence either as scattered adds over the nonzeros or as whole dense rows from L2
    # (which would need the 4 MB dense float32 matrix tiled into L2): whichever is cheaper
    t_input, t_rec_csr, t_rec_dense, bound = kernel_bound(
        events_per_sample, spikes_per_sample, fan_out, cfg.n_neurons, 4,
        best["l2_row_add_gb_per_s"], best["scatter_add_nonzeros_per_s"], threads)
    # int16 codes: half the bytes per row, at the measured rate of int16 -> int32 row adds
    t_input16, _, t_rec_dense16, bound16 = kernel_bound(
        events_per_sample, spikes16_per_sample, fan_out, cfg.n_neurons, 2,
        best["l2_int16_row_add_gb_per_s"], best["scatter_add_nonzeros_per_s"], threads)
    rec_cost = 1 / r_full - 1 / r_drive
    out = {"full_samples_per_s": r_full, "without_recurrence_samples_per_s": r_drive,
           "recurrence_only_ceiling_samples_per_s": 1 / rec_cost if rec_cost > 0 else None,
           "torch_samples_per_s": r_torch, "ratio_vs_torch": r_full / r_torch,
           "torch_matmul_gflops": gflops,
           "input_events_per_sample": events_per_sample,
           "spikes_per_sample": spikes_per_sample, "recurrent_fan_out": fan_out,
           **best,
           "bound_input_us_per_sample_per_core": 1e6 * t_input,
           "bound_recurrence_csr_us_per_sample_per_core": 1e6 * t_rec_csr,
           "bound_recurrence_dense_l2_us_per_sample_per_core": 1e6 * t_rec_dense,
           "bound_samples_per_s": bound, "bound_ratio_vs_torch": bound / r_torch,
           "int16_samples_per_s": r_codes, "int16_ratio_vs_torch": r_codes / r_torch,
           "int16_spikes_per_sample": spikes16_per_sample,
           "int16_bound_input_us_per_sample_per_core": 1e6 * t_input16,
           "int16_bound_recurrence_dense_l2_us_per_sample_per_core": 1e6 * t_rec_dense16,
           "int16_bound_samples_per_s": bound16, "int16_bound_ratio_vs_torch": bound16 / r_torch,
           "threads": threads}
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    res = main(args.samples)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>42}: {v:,.2f}" if isinstance(v, float) else f"{k:>42}: {v}")
