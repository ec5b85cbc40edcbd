"""``lsm sweep run|worker|best|rerun``: searches over reservoir settings on Optuna's relational
storage, thin handlers over :mod:`lsm.experiments.sweep`.

    lsm sweep run --config examples/configs/sweep_nmnist.toml --workers 2
    lsm sweep run --resume runs/sweep-nmnist-<time>            continue a sweep's study.db
    lsm sweep worker --storage postgresql+psycopg://u:p@host/db --study nmnist-reservoir
    lsm sweep rerun --storage runs/sweep-nmnist-<time> --trial 7
    lsm sweep best --storage runs/sweep-nmnist-<time>           the test split, once
"""

from __future__ import annotations

import argparse

from lsm.cli.common import (
    CLIError,
    chosen_dataset,
    dataset_options,
    emit,
    json_parent,
    path_arg,
    positive_int,
    progress_parent,
)

__all__ = ["register", "sweep_config_of"]


def _trial_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a trial number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a trial number >= 0, got {value}")
    return value


def sweep_config_of(args: argparse.Namespace):
    """The :class:`~lsm.experiments.sweep.SweepConfig` of ``lsm sweep run``'s options: the
    ``--config`` file (or the default search of the dataset given), with the dataset path,
    study name, trial count and folders of the command line."""
    from lsm.experiments.sweep import SweepConfig, default_config

    dataset, path = chosen_dataset(args)
    if args.config is not None:
        cfg = SweepConfig.from_toml(args.config)
        if dataset is not None and dataset != cfg.dataset:
            raise CLIError(f"{args.config} searches {cfg.dataset}, but --{dataset} was given "
                           f"(give --{cfg.dataset}, or another config)")
    elif dataset is not None:
        cfg = default_config(dataset)
    else:
        raise CLIError("lsm sweep run needs --config FILE (a [sweep] table), or --nmnist DIR / "
                       "--ntidigits FILE for the default search, or --resume RUN_DIR")
    changes = {k: v for k, v in (("path", path), ("study", args.study),
                                 ("n_trials", args.n_trials), ("runs_dir", args.runs),
                                 ("workdir", args.workdir)) if v is not None}
    return cfg.replace(**changes) if changes else cfg


def _cmd_run(args: argparse.Namespace) -> int:
    from lsm.experiments.sweep import format_sweep, run_sweep

    progress = not args.no_progress
    if args.resume is not None:
        given = [o for o, v in (("--config", args.config), ("--storage", args.storage),
                                ("--study", args.study), ("--nmnist", args.nmnist),
                                ("--ntidigits", args.ntidigits), ("--workdir", args.workdir))
                 if v is not None]
        if given:
            raise CLIError(f"--resume continues the study stored in {args.resume} with its own "
                           f"settings; {', '.join(given)} cannot be combined with it")
        r = run_sweep(None, args.workers, resume=args.resume, n_trials=args.n_trials,
                      progress=progress)
    else:
        r = run_sweep(sweep_config_of(args), args.workers, storage=args.storage,
                      progress=progress)
    emit(r, args.json, format_sweep(r))
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from lsm.experiments.sweep import format_worker, run_worker

    _, path = chosen_dataset(args)
    r = run_worker(args.storage, args.study, path=path, progress=not args.no_progress)
    emit(r, args.json, format_worker(r))
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    from lsm.experiments.sweep import evaluate_best, format_best

    _, path = chosen_dataset(args)
    r = evaluate_best(args.storage, args.study, args.runs or "runs", path=path,
                      force=args.force_test, progress=not args.no_progress)
    emit(r, args.json, format_best(r))
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    from lsm.experiments.sweep import format_rerun, rerun_trial

    _, path = chosen_dataset(args)
    r = rerun_trial(args.storage, args.study, args.trial, path=path,
                    progress=not args.no_progress)
    emit(r, args.json, format_rerun(r))
    return 0 if r["reproduced"] else 1


def _storage_options(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--storage", required=required, metavar="URL",
                   help="the study's storage: postgresql+psycopg://user:password@host/database, "
                        "sqlite:///FILE, or a sweep's run directory (its study.db)"
                   + ("" if required else "; default: study.db in the new run directory"))
    p.add_argument("--study", metavar="NAME",
                   help="the study's name (default: " + ("the config's study, <dataset>-sweep"
                                                         if not required else
                                                         "the storage's only study") + ")")


def _runs_option(p: argparse.ArgumentParser, default_text: str) -> None:
    p.add_argument("--runs", metavar="DIR", type=path_arg, default=None,
                   help="parent folder of run directories (each run: a new <job>-<time>/ with "
                        f"config.toml, metrics.json and PNGs; default: {default_text})")


def register(sub) -> None:
    sw = sub.add_parser("sweep", help="search reservoir settings on validation (Optuna, SQLite "
                                      "or PostgreSQL); score the best on test once")
    sw_sub = sw.add_subparsers(dest="sweep_command", required=True)
    common = [json_parent(), progress_parent()]

    run = sw_sub.add_parser("run", help="start (or continue) a sweep with --workers processes",
                            parents=common)
    run.add_argument("--config", metavar="FILE", type=path_arg,
                     help="sweep config: a [sweep] table and its [sweep.space] "
                          "(examples/configs/sweep_*.toml)")
    dataset_options(run, required=False,
                    what=" (default: the config's path, else the demo's offline twin)")
    _storage_options(run, required=False)
    run.add_argument("--workers", type=positive_int, default=1, metavar="W",
                     help="worker processes on this machine (more can join from anywhere with "
                          "`lsm sweep worker`)")
    run.add_argument("--n-trials", type=positive_int, default=None, metavar="N",
                     help="COMPLETE trials wanted, all workers together (default: the "
                          "config's)")
    run.add_argument("--resume", metavar="RUN_DIR", type=path_arg,
                     help="continue the study in a sweep's run directory (its study.db)")
    _runs_option(run, "the config's runs_dir, runs")
    run.add_argument("--workdir", metavar="DIR", type=path_arg, default=None,
                     help="where the demo's offline twins are made when no dataset path is "
                          "given (default: the config's workdir, lsm-demo)")
    run.set_defaults(func=_cmd_run)

    wk = sw_sub.add_parser("worker", help="join a study and run trials until it is complete",
                           parents=common)
    _storage_options(wk, required=True)
    dataset_options(wk, required=False,
                    what=" on this machine (default: the path stored with the study)")
    wk.set_defaults(func=_cmd_worker)

    best = sw_sub.add_parser("best", help="re-run the best trial on validation, then score it "
                                          "on the test split once; run directory + plots",
                             parents=common)
    _storage_options(best, required=True)
    dataset_options(best, required=False,
                    what=" on this machine (default: the path stored with the study)")
    best.add_argument("--force-test", action="store_true",
                      help="evaluate the test split again although it was evaluated before "
                           "(recorded: repeated looks at the test split are selection on it)")
    _runs_option(best, "runs")
    best.set_defaults(func=_cmd_best)

    rr = sw_sub.add_parser("rerun", help="re-run one trial's configuration on validation; "
                                         "check that it reproduces the stored value",
                           parents=common)
    _storage_options(rr, required=True)
    rr.add_argument("--trial", type=_trial_number, required=True, metavar="N",
                    help="the trial's number")
    dataset_options(rr, required=False,
                    what=" on this machine (default: the path stored with the study)")
    rr.set_defaults(func=_cmd_rerun)
