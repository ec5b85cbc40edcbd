"""``lsm data``: offline twins in the real formats, what a dataset holds, downloads."""

from __future__ import annotations

import argparse
import json

from lsm.cli.common import (
    chosen_dataset,
    dataset_options,
    json_parent,
    positive_int,
    print_result,
    progress_parent,
    runs_parent,
    seed_parent,
)
from lsm.data.datasets import SPLITS

__all__ = ["register"]


def _cmd_make_twin(args: argparse.Namespace) -> int:
    dataset, path = chosen_dataset(args)
    progress = not args.no_progress
    if dataset == "nmnist":
        from lsm.data.twin_nmnist import make_nmnist_twin

        summary = make_nmnist_twin(path, n_train=args.n_train, n_test=args.n_test,
                                   seed=args.seed, progress=progress)
    else:
        from lsm.data.twin_ntidigits import make_ntidigits_twin

        summary = make_ntidigits_twin(path, n_speakers=args.n_speakers, takes=args.n_takes,
                                      seed=args.seed, progress=progress)
    print(json.dumps(summary))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from lsm.experiments.dataset_info import DatasetInfoConfig, run_dataset_info

    dataset, path = chosen_dataset(args)
    info = run_dataset_info(DatasetInfoConfig(dataset, path, args.split, args.runs),
                            progress=not args.no_progress)
    print_result(info, args.json)
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from lsm.data.registry import dataset_spec

    dataset, path = chosen_dataset(args)
    print(f"downloaded to {dataset_spec(dataset).download(path)}")
    return 0


def register(sub) -> None:
    data = sub.add_parser("data", help="datasets: offline twins, info, download")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    mt = data_sub.add_parser("make-twin", help="write an offline twin in the real format",
                             parents=[seed_parent(0, "the twin"), progress_parent()])
    dataset_options(mt, what=" to write")
    mt.add_argument("--n-train", type=positive_int, default=600, metavar="N",
                    help="nmnist: training digits")
    mt.add_argument("--n-test", type=positive_int, default=200, metavar="N",
                    help="nmnist: test digits")
    mt.add_argument("--n-speakers", type=positive_int, default=40, metavar="N",
                    help="ntidigits: synthetic speakers (a quarter of them for test)")
    mt.add_argument("--n-takes", type=positive_int, default=1, metavar="N",
                    help="ntidigits: repetitions of each word per speaker")
    mt.set_defaults(func=_cmd_make_twin)
    di = data_sub.add_parser("info", help="per-class counts, events per sample, durations, and a "
                                          "PNG of a few samples, in a run directory",
                             parents=[runs_parent(), json_parent(), progress_parent()])
    dataset_options(di)
    di.add_argument("--split", choices=SPLITS, default="train", help="split to scan")
    di.set_defaults(func=_cmd_info)
    dl = data_sub.add_parser("download", help="fetch a real dataset (MD5-checked)")
    dataset_options(dl, what=" to download to")
    dl.set_defaults(func=_cmd_download)
