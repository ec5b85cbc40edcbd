"""Where the time goes on the "large" workload (2312 -> 1000, 4 % input, 10 % recurrent).

Prints, measured in one run: the full event-driven kernel; the same kernel with the recurrent
weights removed (input drive + membrane update only); and the dense float32 matmul throughput
torch gets on this machine (what the dense backend's input projection runs at).

    python benchmarks/large_breakdown.py
"""

import time

import numpy as np
import torch

from lsm import LSM, LSMConfig
from lsm.events import EventBatch


def best_rate(fn, n, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main(n: int = 300) -> dict:
    cfg = LSMConfig(n_inputs=2312, n_neurons=1000, n_bins=50, p_rec=0.1)
    rng = np.random.default_rng(0)
    raster = (rng.random((n, 50, 2312)) < 0.04).astype(np.uint8)
    events = EventBatch.from_raster(raster)
    full = LSM(cfg)
    no_rec = LSM(cfg, weights=(full.w_in, np.zeros_like(full.w_rec)))
    for lsm in (full, no_rec):
        lsm.encode(events.select(slice(0, 4)), progress=False)
    r_full = best_rate(lambda: full.encode(events, progress=False, batch_size=n), n)
    r_drive = best_rate(lambda: no_rec.encode(events, progress=False, batch_size=n), n)
    a = torch.randn(128 * 50, 2312)
    b = torch.randn(2312, 1000)
    a @ b
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b
    gflops = 2 * a.shape[0] * 2312 * 1000 * 5 / (time.perf_counter() - t0) / 1e9
    rec_cost = 1 / r_full - 1 / r_drive
    out = {"full_samples_per_s": r_full, "without_recurrence_samples_per_s": r_drive,
           "recurrence_only_ceiling_samples_per_s": 1 / rec_cost if rec_cost > 0 else None,
           "torch_matmul_gflops": gflops}
    for k, v in out.items():
        print(f"{k:>40}: {v:,.0f}" if v else f"{k:>40}: n/a")
    return out


if __name__ == "__main__":
    main()
