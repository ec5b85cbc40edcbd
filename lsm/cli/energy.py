"""``lsm energy``: energy and latency per inference on the macro, a digital accelerator and a
GPU, from a real encoding of a dataset split."""

from __future__ import annotations

import argparse

from lsm.cli.common import (
    CLIError,
    cache_parent,
    chosen_dataset,
    dataset_options,
    emit,
    json_parent,
    path_arg,
    positive_int,
    progress_parent,
    runs_parent,
    weights_parent,
)

__all__ = ["register", "head_dims"]


def head_dims(text: str) -> tuple:
    """``64`` or ``128,64`` (layer widths after the spike features), or ``none``."""
    if text.strip().lower() == "none":
        return ()
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths or 'none', "
                                         f"got {text!r}") from None
    if any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"layer widths must be >= 1, got {text!r}")
    return dims


def _cmd_energy(args: argparse.Namespace) -> int:
    from lsm.cli.encode import load_config
    from lsm.experiments.energy import DEFAULT_PROFILES, EnergyConfig, format_energy, run_energy

    dataset, path = chosen_dataset(args)
    if dataset is None:
        raise CLIError("give a dataset: --nmnist DIR or --ntidigits FILE")
    cfg = EnergyConfig(dataset, path, args.split, args.limit, args.weights, args.calibration,
                       tuple(args.profile or DEFAULT_PROFILES), tuple(args.set or ()),
                       args.head_dims, args.runs, args.cache, args.on_bad_sample, args.decoder)
    r = run_energy(cfg, load_config(args, dataset), progress=not args.no_progress)
    emit(r, args.json, format_energy(r), leave_out=())
    return 0


def register(sub) -> None:
    from lsm.cli.encode import config_parent
    from lsm.data.fused import DECODERS
    from lsm.energy import SHIPPED

    p = sub.add_parser(
        "energy", help="energy and latency per inference: RRAM macro vs digital vs GPU",
        description="Encode a dataset split with activity counting (input events, spikes, row "
                    "activations, multiplies, ADC conversions), price one inference with each "
                    "cost profile, print the breakdown and the ratios, and write a run "
                    "directory with energy.png.",
        parents=[config_parent(), weights_parent(), cache_parent(), runs_parent(),
                 json_parent(), progress_parent()])
    dataset_options(p, what=": the split whose inferences are priced")
    p.add_argument("--split", choices=("train", "test"), default="test",
                   help="dataset split")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="price the first N samples of the split (default: all of them)")
    p.add_argument("--profile", action="append", metavar="NAME|FILE",
                   help=f"a cost profile: shipped ({', '.join(SHIPPED)}) or a TOML file; "
                        "repeat for several (default: the three shipped)")
    p.add_argument("--set", action="append", metavar="PROFILE:TABLE.KEY=VALUE",
                   help="change one profile parameter, with its unit, e.g. "
                        "'imc40:readout.adc_bits=8' or 'imc40:array.t_read=20 ns'; repeatable")
    p.add_argument("--calibration", type=path_arg, metavar="FILE",
                   help="calibration file (lsm calibrate run) whose measured map supplies the "
                        "cells' conductances")
    p.add_argument("--head-dims", type=head_dims, default="64", metavar="D[,D...]",
                   help="widths of the digital head's layers after the spike features "
                        "(64: the paper's projection; 'none' for no head)")
    p.add_argument("--on-bad-sample", choices=["error", "skip"], default="error",
                   help="a broken sample stops the run, or is left out and listed")
    p.add_argument("--decoder", choices=DECODERS, default="auto",
                   help="event decoder (both give the same events)")
    p.set_defaults(func=_cmd_energy)
