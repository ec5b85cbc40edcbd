"""``lsm encode`` (events or a dataset split -> features) and ``lsm config`` (a config as TOML)."""

from __future__ import annotations

import argparse
import sys

from lsm.cli.common import (
    CLIError,
    cache_parent,
    chosen_dataset,
    dataset_options,
    json_parent,
    positive_int,
    print_result,
    progress_parent,
    weights_parent,
)
from lsm.data.datasets import SPLITS
from lsm.data.fused import DECODERS
from lsm.features import DEFAULT_N_WINDOWS, FEATURES

__all__ = ["register", "load_config", "config_parent"]


def config_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--config", help="LSMConfig TOML file (see `lsm config`)")
    p.add_argument("--preset", choices=["nmnist", "ntidigits"], default=None,
                   help="paper settings to start from when no --config is given "
                        "(default: the dataset's, else nmnist)")
    p.add_argument("--seed", type=int, help="override the config's seed (the weight draw)")
    return p


def load_config(args: argparse.Namespace, dataset: str | None = None):
    """The LSMConfig of ``--config`` (its errors name the file and the key), else of
    ``--preset`` (else the dataset's), with ``--seed`` applied."""
    from lsm.config import LSMConfig
    from lsm.data.registry import dataset_spec

    if args.config:
        cfg = LSMConfig.load(args.config)
    else:
        cfg = dataset_spec(args.preset or dataset or "nmnist").lsm_config()
    if args.seed is not None:
        cfg = cfg.replace(seed=args.seed)
    return cfg


def _cmd_encode(args: argparse.Namespace) -> int:
    from lsm.experiments.encode import encode_dataset_file, encode_file

    dataset, path = chosen_dataset(args)
    progress = not args.no_progress
    if dataset and args.input:
        raise CLIError("give an input .npz or a dataset option (--nmnist/--ntidigits), not both")
    if dataset:
        r = encode_dataset_file(dataset, path, args.split, args.out, load_config(args, dataset),
                                args.features, args.backend, args.cache, args.on_bad_sample,
                                args.download, progress, args.weights, args.n_windows,
                                args.chunk_size, args.decoder)
        rate = (f", {r['samples_per_s']:,.0f} samples/s" if r["samples_per_s"] else "")
        resumed = (f", resumed after {r['resumed_chunks']} of {r['chunks']} chunks"
                   if r["resumed_chunks"] else "")
        chunks = f"{r['chunks']} chunk" + ("s" if r["chunks"] != 1 else "")
        text = (f"wrote {r['out']}: features {tuple(r['shape'])} from {r['samples']} samples of "
                f"{dataset} {args.split}" + (" (cache hit)" if r["cache_hit"] else
                                             f" ({chunks}{resumed}{rate})")
                + (f"; skipped {len(r['skipped'])} bad samples" if r["skipped"] else ""))
    elif args.input:
        r = encode_file(args.input, args.out, load_config(args), args.features, args.backend,
                        progress, args.weights, args.n_windows)
        text = (f"wrote {r['out']}: features {tuple(r['shape'])} {r['dtype']} ({r['samples']} "
                f"samples, {r['events']} events, weights {r['weights']})")
    else:
        raise CLIError("give an input .npz, or a dataset: --nmnist DIR or --ntidigits FILE")
    if args.json:
        print_result(r, True)
    else:
        print(text)
    for sid, reason in r.get("skipped", [])[:10]:
        print(f"  skipped {sid}: {reason}", file=sys.stderr)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    sys.stdout.write(load_config(args).to_toml())
    return 0


def register(sub) -> None:
    enc = sub.add_parser(
        "encode", help="encode events (an .npz, or a dataset split) into reservoir features",
        parents=[config_parent(), weights_parent(), cache_parent(), json_parent(),
                 progress_parent()])
    enc.add_argument("input", nargs="?", help=".npz with 'raster' or 'offsets','bins','channels'"
                                              " (and optional 'labels')")
    dataset_options(enc, required=False, what=": encode a split of it instead of an .npz")
    enc.add_argument("--split", choices=SPLITS, default="train",
                     help="dataset split to encode")
    enc.add_argument("--download", action="store_true",
                     help="fetch the real dataset to the given path when it is not there")
    enc.add_argument("--on-bad-sample", choices=["error", "skip"], default="error",
                     help="a broken sample stops the run, or is left out and listed")
    enc.add_argument("--out", required=True, metavar="FILE",
                     help="output .npz (written atomically)")
    enc.add_argument("--features", choices=FEATURES, default="rates",
                     help="spike rates or counts per neuron, counts in --windows time windows, "
                          "or the spikes per time bin")
    enc.add_argument("--windows", type=positive_int, default=DEFAULT_N_WINDOWS, metavar="K",
                     dest="n_windows", help="time windows of --features windows")
    enc.add_argument("--backend", choices=["numba", "torch"], default="numba",
                     help="event-driven Numba kernel, or the dense torch reference")
    enc.add_argument("--chunk-size", type=positive_int, default=None, metavar="N",
                     help="dataset: samples read and encoded at a time; finished chunks wait "
                          "in FILE.partial/ and an interrupted run resumes after the last one "
                          "(default: 256)")
    enc.add_argument("--decoder", choices=DECODERS, default="auto",
                     help="dataset: the fused Numba decoder, tonic's reader and transforms "
                          "(the reference), or fused when it knows the preprocessing (auto; "
                          "both give the same events)")
    enc.set_defaults(func=_cmd_encode)

    cf = sub.add_parser("config", help="print an LSMConfig as TOML", parents=[config_parent()])
    cf.set_defaults(func=_cmd_config)
