"""``lsm study features|size|nonideality|splits``: thin handlers over
:mod:`lsm.experiments.studies` and :mod:`lsm.experiments.splits`.

Settings come from the study config's defaults, then ``--config FILE.toml`` (a ``[study]``
table), then the options given on the command line. A dataset is chosen by its option:
``--nmnist DIR`` / ``--ntidigits FILE``, or the option alone (``--ntidigits``) for the demo's
offline twin under ``--workdir``.
"""

from __future__ import annotations

import argparse
import dataclasses

from lsm.cli.common import comma_list, emit, path_arg, positive_int

__all__ = ["register", "study_config"]

#: the value of a dataset option given without a path: the demo twin
_TWIN = object()

#: options of every study -> config field
_COMMON = {"n_seeds": "n_seeds", "workdir": "workdir", "runs": "runs_dir"}
#: options of one study -> config field
_OPTIONS = {
    "features": {"features": "kinds", "windows": "windows", "weights": "weights"},
    "size": {"n_neurons": "n_neurons", "features": "features", "n_windows": "n_windows",
             "weights": "weights"},
    "nonideality": {"panels": "panels", "read_noise_rel": "read_noise_rel",
                    "adc_bits": "adc_bits", "stuck_rate": "stuck_rate",
                    "read_time_s": "read_time_s", "form_cv": "form_cv",
                    "stuck_state": "stuck_state", "in_loop": "in_loop",
                    "features": "features", "n_windows": "n_windows"},
}


def _choice_list(choices: tuple, what: str):
    """An argparse ``type``: comma-separated names out of ``choices``."""

    def convert(text: str) -> tuple:
        values = tuple(v.strip() for v in text.split(","))
        bad = [v for v in values if v not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad}; choose from "
                                             f"{','.join(choices)}")
        return values

    convert.__name__ = f"{what} list"
    return convert


def _in_loop_list(text: str) -> tuple:
    from lsm.experiments.studies import NONIDEALITIES

    return () if text.strip() in ("", "none") else \
        _choice_list(tuple(NONIDEALITIES), "non-ideality")(text)


def study_config(name: str, args: argparse.Namespace):
    """The study config of ``lsm study NAME``'s options: the defaults, overridden by
    ``--config`` (when given), overridden by the options given."""
    from lsm.data.registry import DATASET_NAMES
    from lsm.experiments.studies import STUDY_CONFIGS

    cls = STUDY_CONFIGS[name]
    cfg = cls.from_toml(args.config) if args.config is not None else cls()
    changes = {field: getattr(args, opt) for opt, field in {**_COMMON, **_OPTIONS[name]}.items()
               if getattr(args, opt, None) is not None}
    if args.readout is not None:
        changes["readout"] = dataclasses.replace(cfg.readout, kind=args.readout)
    given = [d for d in DATASET_NAMES if getattr(args, d) is not None]
    for d in given:
        value = getattr(args, d)
        changes[d] = None if value is _TWIN else value
    if given:
        if name == "features":
            changes["datasets"] = tuple(given)
        else:
            changes["dataset"] = given[0]
    return dataclasses.replace(cfg, **changes)


def _handler(name: str):
    def run(args: argparse.Namespace) -> int:
        from lsm.experiments.studies import format_study, run_study

        cfg = study_config(name, args)
        if getattr(cfg, "weights", None) == "chip":  # also when only the --config names it
            import hw.weights  # noqa: F401  (registers the "chip" weight source)
        r = run_study(cfg, progress=not args.no_progress)
        emit(r, args.json, format_study(r, markdown=args.markdown), leave_out=())
        return 0

    return run


def _splits_config(args: argparse.Namespace):
    """The class-splits config of ``lsm study splits``'s options over ``--config``."""
    from lsm.experiments.splits import ClassSplitsConfig

    cfg = ClassSplitsConfig.from_toml(args.config) if args.config is not None \
        else ClassSplitsConfig()
    changes = {field: getattr(args, opt) for opt, field in (
        ("n_seeds", "n_seeds"), ("workdir", "workdir"), ("runs", "runs_dir"),
        ("splits", "splits"), ("n_unseen", "n_unseen"), ("split_seed", "split_seed"),
        ("weights", "weights"), ("features", "features"), ("n_windows", "n_windows"),
        ("cache", "cache"))
        if getattr(args, opt, None) is not None}
    if (args.nmnist is None) != (args.ntidigits is None):
        raise ValueError("lsm study splits: give --nmnist and --ntidigits together, or "
                         "neither (the demo twins)")
    if args.nmnist is not None:
        changes.update(nmnist=args.nmnist, ntidigits=args.ntidigits)
    if args.epochs is not None:
        changes["protocol"] = dataclasses.replace(cfg.protocol, epochs=args.epochs)
    return dataclasses.replace(cfg, **changes)


def _run_splits(args: argparse.Namespace) -> int:
    from lsm.experiments.splits import format_class_splits, run_class_splits

    cfg = _splits_config(args)
    if cfg.weights == "chip":
        import hw.weights  # noqa: F401  (registers the "chip" weight source)
    r = run_class_splits(cfg, progress=not args.no_progress)
    emit(r, args.json, format_class_splits(r), leave_out=("per_split",))
    return 0


def _split_count(text: str):
    """An argparse ``type``: ``all`` or a number of random splits >= 1."""
    return "all" if text == "all" else positive_int(text)


def _common_options(p: argparse.ArgumentParser, name: str, default_seeds: int) -> None:
    from lsm.data.registry import DATASETS

    p.add_argument("--config", metavar="FILE.toml", type=path_arg,
                   help="settings from a [study] table (e.g. examples/configs/"
                        f"study_{name}.toml); the options given here override it")
    if name == "features":
        group = p
        what = "study it (several may be given; none: the config's datasets, default both)"
    else:
        group = p.add_mutually_exclusive_group()
        what = "study it (default: the config's dataset, N-MNIST)"
    for spec in DATASETS.values():
        metavar = "DIR" if spec.path_kind == "folder" else "FILE"
        group.add_argument(f"--{spec.name}", metavar=metavar, type=path_arg, nargs="?",
                           const=_TWIN,
                           help=f"{spec.path_help()}, or no {metavar} for the demo twin in "
                                f"--workdir: {what}")
    p.add_argument("--workdir", metavar="DIR", type=path_arg,
                   help="where the demo twins are, made on first use (default: lsm-demo)")
    p.add_argument("--n-seeds", type=positive_int, metavar="N",
                   help="reservoir draws, seeds 0 .. N-1, each also the readout's seed "
                        f"(default: {default_seeds})")
    p.add_argument("--readout", choices=["linear", "mlp", "probe"],
                   help="one linear layer, Linear-GELU-Linear, or logistic regression "
                        "(default: linear)")
    p.add_argument("--runs", metavar="DIR", type=path_arg,
                   help="parent folder of run directories (a new study-<name>-<time>/ with "
                        "config.toml, metrics.json and a PNG; default: runs)")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress lines (one per point, on stderr)")


def _feature_options(p: argparse.ArgumentParser) -> None:
    from lsm.features import READOUT_FEATURES

    p.add_argument("--features", choices=READOUT_FEATURES,
                   help="readout features (default: windows)")
    p.add_argument("--windows", type=positive_int, metavar="K", dest="n_windows",
                   help="time windows of --features windows (default: 5)")


def register(sub) -> None:
    from lsm.experiments.common import WEIGHT_SOURCES
    from lsm.experiments.studies import (
        NONIDEALITIES,
        SIZE_WEIGHTS,
        STUCK_STATES,
        NonidealityStudyConfig,
    )
    from lsm.features import READOUT_FEATURES

    st = sub.add_parser("study", help="accuracy studies: readout features, reservoir size, "
                                      "RRAM non-idealities, zero-shot class splits")
    st_sub = st.add_subparsers(dest="study_command", required=True)

    fe = st_sub.add_parser("features", help="each readout feature kind on each dataset: LSM "
                                            "vs the same readout on the input events")
    _common_options(fe, "features", 2)
    fe.add_argument("--features", type=_choice_list(READOUT_FEATURES, "feature kind"),
                    metavar="LIST", help="feature kinds, one table row each (default: "
                                         "rates,counts,windows)")
    fe.add_argument("--windows", type=comma_list(int, "window count"), metavar="LIST",
                    help="the K of the windows features, one row each (default: 5)")
    fe.add_argument("--weights", choices=WEIGHT_SOURCES,
                    help="reservoir weights: a Gaussian draw, a simulated RRAM crossbar, or the "
                         "emulated macro (default: gaussian)")
    fe.set_defaults(func=_handler("features"))

    sz = st_sub.add_parser("size", help="accuracy against the number of reservoir neurons")
    _common_options(sz, "size", 2)
    sz.add_argument("--n-neurons", type=comma_list(int, "size"), metavar="LIST",
                    help="reservoir sizes (default: 25,50,100,200,400)")
    _feature_options(sz)
    sz.add_argument("--weights", choices=SIZE_WEIGHTS,
                    help="a Gaussian draw or a simulated RRAM crossbar (default: gaussian)")
    sz.set_defaults(func=_handler("size"))

    d = NonidealityStudyConfig()
    ni = st_sub.add_parser("nonideality",
                           help="accuracy against each RRAM non-ideality, one at a time, beside "
                                "Gaussian weights and no reservoir")
    _common_options(ni, "nonideality", 2)
    ni.add_argument("--panels", type=_choice_list(tuple(NONIDEALITIES), "non-ideality"),
                    metavar="LIST", help=f"non-idealities to sweep (default: {','.join(d.panels)})")
    for name, what in (("read_noise_rel", "relative read noise per cell and read"),
                       ("adc_bits", "ADC resolutions, bits"),
                       ("stuck_rate", "fractions of stuck cells"),
                       ("read_time_s", "times from programming to reading, s (drift)"),
                       ("form_cv", "conductance spreads after forming, std / mean")):
        kind = int if name == "adc_bits" else float
        defaults = ",".join(f"{v:g}" for v in getattr(d, name))
        ni.add_argument(f"--{name.replace('_', '-')}", type=comma_list(kind), metavar="LIST",
                        help=f"{what} (default: {defaults})")
    ni.add_argument("--stuck-state", choices=STUCK_STATES,
                    help="stuck cells half at HRS and half at LRS, or all at one (default: both)")
    ni.add_argument("--in-loop", type=_in_loop_list, metavar="LIST",
                    help="non-idealities simulated in the loop (every multiply on the array), "
                         "'none' for all from a static map read (default: "
                         f"{','.join(d.in_loop)})")
    _feature_options(ni)
    ni.set_defaults(func=_handler("nonideality"))

    sp = st_sub.add_parser("splits", help="zero-shot over every pair (or K random splits) of "
                                          "unseen digits: the distribution against chance")
    sp.add_argument("--config", metavar="FILE.toml", type=path_arg,
                    help="settings from a [study] table (e.g. examples/configs/"
                         "study_splits.toml); the options given here override it")
    sp.add_argument("--nmnist", metavar="DIR", type=path_arg,
                    help="N-MNIST folder (with --ntidigits; neither: the demo twins)")
    sp.add_argument("--ntidigits", metavar="FILE", type=path_arg,
                    help="N-TIDIGITS .hdf5 file (with --nmnist)")
    sp.add_argument("--splits", type=_split_count, metavar="all|K",
                    help="every combination of unseen digits, or K random ones (default: 10)")
    sp.add_argument("--n-unseen", type=positive_int, metavar="N",
                    help="digits held out per split (default: 2)")
    sp.add_argument("--split-seed", type=int, metavar="N",
                    help="seed of the random splits (default: 0)")
    sp.add_argument("--epochs", type=positive_int, metavar="N",
                    help="epochs of each training of the heads (default: 100)")
    sp.add_argument("--weights", choices=WEIGHT_SOURCES,
                    help="reservoir weights (default: gaussian)")
    sp.add_argument("--cache", metavar="DIR", type=path_arg, help="feature cache folder")
    sp.add_argument("--workdir", metavar="DIR", type=path_arg,
                    help="where the demo twins are, made on first use (default: lsm-demo)")
    sp.add_argument("--n-seeds", type=positive_int, metavar="N",
                    help="reservoir draws, each running every split (default: 1)")
    sp.add_argument("--runs", metavar="DIR", type=path_arg,
                    help="parent folder of run directories (default: runs)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--no-progress", action="store_true", help="no progress lines")
    _feature_options(sp)
    sp.set_defaults(func=_run_splits)
