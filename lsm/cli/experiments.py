"""``lsm train``, ``lsm zeroshot`` and ``lsm demo``: thin handlers over :mod:`lsm.experiments`."""

from __future__ import annotations

import argparse

from lsm.cli.common import (
    cache_parent,
    chosen_dataset,
    comma_list,
    dataset_options,
    digit_list,
    emit,
    features_parent,
    json_parent,
    n_seeds_parent,
    path_arg,
    positive_int,
    progress_parent,
    runs_parent,
    weights_parent,
)

__all__ = ["register", "zeroshot_protocol_config"]


def _cmd_train(args: argparse.Namespace) -> int:
    from lsm.experiments.supervised import SupervisedConfig, format_supervised, run_supervised
    from lsm.readout import ReadoutConfig

    dataset, path = chosen_dataset(args)
    cfg = SupervisedConfig(dataset, path, ReadoutConfig(kind=args.readout), args.n_seeds,
                           args.weights, args.runs, args.cache, features=args.features,
                           n_windows=args.n_windows, baseline=not args.no_baseline,
                           lsm_overrides=({"weight_format": args.weight_format}
                                          if args.weight_format != "float32" else {}))
    r = run_supervised(cfg, progress=not args.no_progress)
    emit(r, args.json, format_supervised(r))
    return 0


def zeroshot_protocol_config(args: argparse.Namespace):
    """The :class:`~lsm.contrastive.ZeroShotConfig` of ``lsm zeroshot``'s options."""
    from lsm.contrastive import ZeroShotConfig

    seen = args.seen or tuple(c for c in range(1, 10) if c not in args.unseen)
    return ZeroShotConfig(seen=seen, unseen=args.unseen, loss=args.loss.replace("-", "_"),
                          epochs=args.epochs,
                          embed_dims=args.embed_dims, temperatures=args.temperatures,
                          learnable_temperature=args.learnable_temperature,
                          selection=args.selection.replace("-", "_"),
                          n_class_folds=args.class_folds)


def _cmd_zeroshot(args: argparse.Namespace) -> int:
    from lsm.experiments.zeroshot import ZeroShotRunConfig, format_zeroshot, run_zeroshot

    cfg = ZeroShotRunConfig(args.nmnist, args.ntidigits, zeroshot_protocol_config(args),
                            args.n_seeds, args.weights, args.runs, args.cache,
                            features=args.features, n_windows=args.n_windows)
    r = run_zeroshot(cfg, progress=not args.no_progress)
    emit(r, args.json, format_zeroshot(r))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from lsm.experiments.demo import DemoConfig, _summary, format_demo, run_demo

    cfg = DemoConfig(args.workdir, args.n_seeds, args.weights, args.features, args.n_windows)
    r = run_demo(cfg, progress=not args.no_progress)
    emit(_summary(r), args.json, format_demo(r))
    return 0


def register(sub) -> None:
    from lsm.experiments.common import WEIGHT_SOURCES

    common = [weights_parent(), features_parent(), runs_parent(), cache_parent(), json_parent(),
              progress_parent()]
    tr = sub.add_parser("train", help="supervised readout on LSM features; test accuracy",
                        parents=[n_seeds_parent(1), *common])
    dataset_options(tr)
    tr.add_argument("--readout", choices=["linear", "mlp", "probe"], default="linear",
                    help="one linear layer, Linear-GELU-Linear, or logistic regression")
    tr.add_argument("--no-baseline", action="store_true",
                    help="skip the same readout on the input events (the 'no reservoir' line)")
    tr.add_argument("--weight-format", choices=["float32", "int16"], default="float32",
                    help="reservoir weights as float32, or as 16-bit codes with one scale per "
                         "matrix (LSMConfig.weight_format)")
    tr.set_defaults(func=_cmd_train)

    zs = sub.add_parser("zeroshot", help="contrastive heads; zero-shot cross-modal retrieval",
                        parents=[n_seeds_parent(3), *common])
    dataset_options(zs, both=True)
    zs.add_argument("--unseen", type=digit_list, default="8,9", metavar="LIST",
                    help="classes held out of training, e.g. 8,9")
    zs.add_argument("--seen", type=digit_list, default=None, metavar="LIST",
                    help="training classes (default: 1-9 minus --unseen)")
    zs.add_argument("--loss", choices=["clip", "soft-clip", "cwcl", "supcon"], default="clip",
                    help="contrastive loss")
    zs.add_argument("--epochs", type=positive_int, default=100, metavar="N",
                    help="epochs per training")
    zs.add_argument("--embed-dims", type=comma_list(int), default="64", metavar="LIST",
                    help="embedding sizes to try, chosen on validation")
    zs.add_argument("--temperatures", type=comma_list(float), default="1.0", metavar="LIST",
                    help="temperatures to try, chosen on validation")
    zs.add_argument("--learnable-temperature", action="store_true",
                    help="train the temperature with the heads")
    zs.add_argument("--selection", choices=["held-out-classes", "seen-samples"],
                    default="held-out-classes",
                    help="validation by held-out seen classes (zero-shot score) or by held-out "
                         "samples of every seen class")
    zs.add_argument("--class-folds", type=positive_int, default=3, metavar="N",
                    help="folds of seen classes for --selection held-out-classes")
    zs.set_defaults(func=_cmd_zeroshot)

    dm = sub.add_parser("demo", help="offline twins -> weights from the emulated chip -> "
                                     "supervised (vs no reservoir) and zero-shot results",
                        parents=[n_seeds_parent(3), features_parent(), json_parent(),
                                 progress_parent()])
    dm.add_argument("--weights", choices=WEIGHT_SOURCES, default="chip",
                    help="reservoir weights: the emulated macro (a fresh die per reservoir), a "
                         "simulated RRAM crossbar, or a Gaussian draw")
    dm.add_argument("--workdir", default="lsm-demo", metavar="DIR", type=path_arg,
                    help="working folder: twins/, the feature cache features/ and runs/")
    dm.set_defaults(func=_cmd_demo)
