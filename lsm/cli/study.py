"""``lsm study features|size|nonideality``: thin handlers over :mod:`lsm.experiments.studies`.

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
                                      "RRAM non-idealities")
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
