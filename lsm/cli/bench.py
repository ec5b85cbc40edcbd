"""``lsm bench``: benchmarks measured side by side in one run."""

from __future__ import annotations

import argparse
import json

from lsm.cli.common import (
    CLIError,
    dataset_options,
    emit,
    json_parent,
    positive_int,
    progress_parent,
    runs_parent,
)

__all__ = ["register"]


def _cmd_encode(args: argparse.Namespace) -> int:
    from lsm.bench import bench_encode, format_table

    result = bench_encode(quick=args.quick, workloads=tuple(args.workload or ()) or None)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from lsm.bench.pipeline import MIN_FILES, bench_pipeline, format_pipeline

    files = args.files if args.files is not None else (1000 if args.quick else 4000)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    if files < MIN_FILES:
        raise CLIError(f"--files must be >= {MIN_FILES}, got {files}")
    r = bench_pipeline(n_files=files, rounds=rounds, memory=not args.no_memory,
                       workdir=args.workdir, progress=not args.no_progress)
    emit(r, args.json, format_pipeline(r), leave_out=())
    return 0


def _cmd_train_cost(args: argparse.Namespace) -> int:
    from lsm.bench import format_train_cost
    from lsm.experiments.train_cost import TrainCostConfig, run_train_cost

    cfg = TrainCostConfig(args.nmnist, args.ntidigits, args.workdir, args.max_epochs,
                          args.max_seconds, args.runs)
    r = run_train_cost(cfg, progress=not args.no_progress)
    emit(r, args.json, format_train_cost(r), leave_out=())
    return 0


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (ratios measured side by side)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    be = bench_sub.add_parser("encode", help="reservoir throughput: numba vs torch vs snntorch",
                              parents=[json_parent()])
    be.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    be.add_argument("--workload", action="append", default=None, choices=["paper", "large"],
                    help="run only this workload (repeatable)")
    be.set_defaults(func=_cmd_encode)
    bp = bench_sub.add_parser("pipeline", help="files on disk to features: tonic reader + "
                                                "transforms vs the fused decoder, same LSM",
                              parents=[json_parent(), progress_parent()])
    bp.add_argument("--files", type=positive_int, default=None, metavar="N",
                    help="N-MNIST-format files to write and time, at least 16 (default: 4000; "
                         "1000 with --quick)")
    bp.add_argument("--rounds", type=positive_int, default=None, metavar="N",
                    help="interleaved rounds (default: 3; 2 with --quick)")
    bp.add_argument("--quick", action="store_true",
                    help="1000 files and 2 rounds, unless --files / --rounds say otherwise")
    bp.add_argument("--no-memory", action="store_true",
                    help="skip the peak-memory runs (fresh processes)")
    bp.add_argument("--workdir", default=None, metavar="DIR",
                    help="write the files there and keep them (default: a temporary folder)")
    bp.set_defaults(func=_cmd_pipeline)
    tc = bench_sub.add_parser("train-cost", help="LSM pipeline vs a trainable spiking RNN "
                                                 "(BPTT): MACs and time to the same accuracy",
                              parents=[runs_parent(), json_parent(), progress_parent()])
    dataset_options(tc, both=True, required=False, what=" (default: the demo twin)")
    tc.add_argument("--workdir", default="lsm-demo", metavar="DIR",
                    help="where the demo twins live")
    tc.add_argument("--max-epochs", type=positive_int, default=40, metavar="N",
                    help="epochs of the spiking RNN at most")
    tc.add_argument("--max-seconds", type=float, default=None,
                    help="optional wall-clock cap on the spiking RNN's training; off by "
                         "default, so the work (and the MAC ratio) is bounded by epochs alone, "
                         "not by machine load")
    tc.set_defaults(func=_cmd_train_cost)
