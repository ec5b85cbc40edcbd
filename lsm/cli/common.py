"""What every command group shares: the parser class, the option vocabulary as parent parsers
and helpers, typed converters, and how results and user errors are printed.

The vocabulary (also in the README):

- a dataset is named by its option, ``--nmnist DIR`` (the N-MNIST folder, Train/ and Test/) or
  ``--ntidigits FILE`` (the N-TIDIGITS .hdf5 file); ``--split train|test`` picks a split;
- ``--out FILE`` is always one file a command writes (features, a map, codes, a PNG);
- ``--runs DIR`` is always the parent of run directories: each run makes a fresh
  ``DIR/<job>-<time>/`` holding config.toml, metrics.json and PNGs;
- ``--workdir DIR`` is the demo's working folder (twins, feature cache, runs);
- ``--seed N`` is one seed (a config, a twin, the emulator); ``--n-seeds N`` is a number of
  repetitions, run with seeds 0 .. N-1, each a fresh reservoir draw;
- ``--json`` prints one JSON object; ``--no-progress`` turns progress bars off; ``--cache DIR``
  is a feature cache folder; lists are comma-separated (``--unseen 8,9``).
"""

from __future__ import annotations

import argparse
import json

__all__ = ["CLIError", "Parser", "RETIRED_OPTIONS", "HelpFormatter", "comma_list", "path_arg",
           "digit_list", "positive_int", "region", "json_parent", "progress_parent", "seed_parent",
           "n_seeds_parent", "form_pulse_parent",
           "runs_parent", "cache_parent", "weights_parent", "features_parent", "dataset_options",
           "chosen_dataset",
           "print_result", "emit"]


class CLIError(Exception):
    """A user-facing error: printed without a traceback. Exit status 2 for bad input or a
    refused request; 3 when the instrument or its link failed (a lab job can be resumed)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default when it has one worth showing (not None, not a flag's False)."""

    def _get_help_string(self, action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


#: options of earlier versions -> what replaced them (named when one is used)
RETIRED_OPTIONS = {"--seeds": "--n-seeds", "--dir": "--workdir", "--root": "--nmnist/--ntidigits",
                   "--dataset": "--nmnist DIR or --ntidigits FILE", "--train": "--n-train",
                   "--test": "--n-test", "--speakers": "--n-speakers", "--takes": "--n-takes"}


class Parser(argparse.ArgumentParser):
    """No prefix matching (``--seed`` must never run as ``--n-seeds``); help shows defaults;
    an option of an earlier version is named with what replaced it. Subcommand parsers are of
    the same class."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            hints = [f"{old} is now {new}" for old, new in RETIRED_OPTIONS.items()
                     if old in message.split()]
            if hints:
                message += f" ({'; '.join(hints)})"
        super().error(message)


# ---------------------------------------------------------------------- typed converters
def comma_list(kind: type, what: str = ""):
    """An argparse ``type`` for a comma-separated list of ``kind`` (a tuple); a bad entry is
    reported by argparse with the option's name (``argument --unseen: ...``)."""

    def convert(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what or kind.__name__} values, got {text!r}"
            ) from None
        return values

    convert.__name__ = f"{kind.__name__} list"
    return convert


def path_arg(text: str) -> str:
    """An argparse ``type`` for a path: never empty (an empty string would silently mean the
    current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def digit_list(text: str) -> tuple:
    """An argparse ``type``: comma-separated digit classes 0-9, no duplicates."""
    values = comma_list(int, "class")(text)
    bad = [v for v in values if not 0 <= v <= 9]
    if bad:
        raise argparse.ArgumentTypeError(f"classes are digits 0-9, got {bad}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"a class is listed twice in {text!r}")
    return values


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1 (a count: seeds, epochs, rows, vectors ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def region(text: str) -> tuple[int, int, int, int]:
    """An argparse ``type``: ``r0,r1,c0,c1``, rows r0:r1 and columns c0:c1, half-open."""
    try:
        r0, r1, c0, c1 = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected r0,r1,c0,c1 (four integers, half-open), got {text!r}") from None
    if not (0 <= r0 < r1 and 0 <= c0 < c1):
        raise argparse.ArgumentTypeError(
            f"{text}: rows r0:r1 and columns c0:c1 need 0 <= r0 < r1 and 0 <= c0 < c1")
    return r0, r1, c0, c1


# ---------------------------------------------------------------------- shared options
def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False, allow_abbrev=False)


def json_parent() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def progress_parent() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (off a terminal they are plain periodic lines)")
    return p


def seed_parent(default: int | None = 0, what: str = "the random draw") -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--seed", type=int, default=default, metavar="N", help=f"seed of {what}")
    return p


def n_seeds_parent(default: int) -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--n-seeds", type=positive_int, default=default, metavar="N",
                   help="repetitions, with seeds 0 .. N-1, each a fresh reservoir weight draw")
    return p


def form_pulse_parent() -> argparse.ArgumentParser:
    """The FORM pulse of a command that forms cells (simulated or on the chip)."""
    p = _parent()
    p.add_argument("--amplitude-v", type=float, default=3.0, help="FORM amplitude, V")
    p.add_argument("--width-ns", type=float, default=1000.0, help="FORM pulse width, ns")
    p.add_argument("--compliance-ua", type=float, default=100.0, help="compliance current, uA")
    return p


def runs_parent() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--runs", default="runs", metavar="DIR", type=path_arg,
                   help="parent folder of run directories (each run: a new <job>-<time>/ with "
                        "config.toml, metrics.json and PNGs)")
    return p


def cache_parent() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--cache", metavar="DIR", type=path_arg,
                   help="feature cache folder (keyed by data, preprocessing, config and weights)")
    return p


def weights_parent() -> argparse.ArgumentParser:
    from lsm.experiments.common import WEIGHT_SOURCES

    p = _parent()
    p.add_argument("--weights", choices=WEIGHT_SOURCES, default="gaussian",
                   help="reservoir weights: a Gaussian draw, a simulated RRAM crossbar, or "
                        "the emulated macro (a fresh die per reservoir, formed and read over "
                        "the lab protocol)")
    return p


def features_parent(kinds: tuple | None = None, default: str = "windows"
                    ) -> argparse.ArgumentParser:
    """``--features KIND`` and ``--windows K``: what a readout sees (:mod:`lsm.features`)."""
    from lsm.features import DEFAULT_N_WINDOWS, READOUT_FEATURES

    p = _parent()
    p.add_argument("--features", choices=kinds or READOUT_FEATURES, default=default,
                   help="readout features: spike counts in --windows time windows, spike "
                        "rates, or spike counts")
    p.add_argument("--windows", type=positive_int, default=DEFAULT_N_WINDOWS, metavar="K",
                   dest="n_windows", help="time windows of --features windows")
    return p


def dataset_options(parser: argparse.ArgumentParser, both: bool = False,
                    required: bool = True, what: str = "") -> None:
    """``--nmnist DIR`` and ``--ntidigits FILE``: exactly one of them (``both=False``), or both
    (``both=True``)."""
    from lsm.data.registry import DATASETS

    group = parser if both else parser.add_mutually_exclusive_group(required=required)
    for spec in DATASETS.values():
        metavar = "DIR" if spec.path_kind == "folder" else "FILE"
        group.add_argument(f"--{spec.name}", metavar=metavar, required=both and required,
                           type=path_arg,
                           help=f"{spec.path_help()}{what}")


def chosen_dataset(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(name, path) of the one dataset option given, or (None, None)."""
    from lsm.data.registry import DATASET_NAMES

    for name in DATASET_NAMES:
        if getattr(args, name, None) is not None:
            return name, getattr(args, name)
    return None, None


# ---------------------------------------------------------------------- output
def print_result(result: dict, as_json: bool) -> None:
    """One JSON object, or one ``key: value`` line per entry."""
    if as_json:
        print(json.dumps(result, default=str))
        return
    width = max(map(len, result), default=0)
    for k, v in result.items():
        print(f"{k:>{width}}: {v}")


def emit(result: dict, as_json: bool, text: str, leave_out: tuple = ("per_seed",)) -> None:
    """``result`` as one JSON object (without the ``leave_out`` keys), or ``text``."""
    if as_json:
        print(json.dumps({k: v for k, v in result.items() if k not in leave_out}, default=str))
    else:
        print(text)
