"""Benchmarks under one roof, each measured side by side in one run.

- :mod:`lsm.bench.encode`: reservoir throughput of the backends (``lsm bench encode``);
- :mod:`lsm.bench.train_cost`: the LSM pipeline's training cost against a trainable spiking RNN
  (``lsm bench train-cost``; the RNN model lives there, it is part of the measurement).
"""

from lsm.bench.encode import (
    NOISY_SPREAD,
    TARGETS,
    WORKLOADS,
    Workload,
    bench_encode,
    bench_workload,
    format_table,
    verdict,
)
from lsm.bench.train_cost import SpikingEncoder, bench_train_cost, format_train_cost

__all__ = ["Workload", "WORKLOADS", "TARGETS", "NOISY_SPREAD", "verdict", "bench_workload",
           "bench_encode", "format_table", "SpikingEncoder", "bench_train_cost",
           "format_train_cost"]
