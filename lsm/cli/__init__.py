"""The ``lsm`` command line: one module per command group, each registering its subcommands.

    lsm demo                                  twins -> emulated chip -> supervised and zero-shot
    lsm encode INPUT.npz --out FEATURES.npz   events -> reservoir features
    lsm encode --nmnist DIR --out F.npz       dataset split -> preprocessing -> LSM -> features
    lsm config [--preset nmnist|ntidigits]    print a config as TOML
    lsm data make-twin --nmnist DIR           offline twins in the real on-disk formats
    lsm data info --nmnist DIR                counts, events, durations + a PNG of samples
    lsm data download --nmnist DIR            fetch a real dataset (checksummed)
    lsm train --nmnist DIR                    supervised readout, test accuracy vs the paper's
    lsm zeroshot --nmnist DIR --ntidigits F   contrastive heads, zero-shot retrieval, seeds
    lsm study features|size|nonideality|splits   accuracy studies, each a run directory + PNG
    lsm sweep run|worker|best|rerun           reservoir searches on Optuna (SQLite, PostgreSQL)
    lsm energy --nmnist DIR                   energy per inference: macro vs digital vs GPU
    lsm bench encode|pipeline|train-cost      benchmarks, measured side by side
    lsm crossbar sample|verify|vmm-error      the simulated RRAM crossbar
    lsm hw idn|program-random|read-map|vmm|journal|emulator   the macro (default: the emulator)

The option vocabulary shared by every command is in :mod:`lsm.cli.common`.
"""

from __future__ import annotations

import argparse
import errno
import sys

from lsm.cli import (
    bench,
    calibrate,
    crossbar,
    data,
    encode,
    energy,
    experiments,
    hw,
    study,
    sweep,
)
from lsm.cli.common import CLIError, Parser

__all__ = ["main", "build_parser", "CLIError", "Terminated", "EXAMPLES", "GROUPS"]

EXAMPLES = """examples:
  lsm demo                                      offline twins -> supervised and zero-shot results
  lsm data make-twin --nmnist twins/nmnist      an offline N-MNIST twin in the real format
  lsm train --nmnist twins/nmnist --n-seeds 3   supervised readout over 3 reservoir draws,
                                                beside the same readout on the input events
  lsm study features --n-seeds 3                readout features: LSM vs no reservoir
  lsm sweep run --config examples/configs/sweep_ntidigits.toml --workers 2
  lsm hw emulator --port 5025 &                 the emulated macro; then: lsm hw idn
  lsm --debug encode events.npz --out f.npz     show the traceback of an error
"""

#: command groups, in the order of ``lsm --help``
GROUPS = (experiments, study, encode, energy, data, bench, crossbar, hw, calibrate, sweep)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="lsm", description="Liquid state machines on RRAM weights.",
               epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true",
                   help="on an error, show the Python traceback instead of one line")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.register(sub)
    hw.add_emulator_parser(sub, "emulator", "the same as `lsm hw emulator` (kept alias)")
    return p


def _user_error_types() -> tuple:
    """What bad input raises: reported as one line, exit 2. Anything else is a bug: traceback.

    ValueError covers the library's validation errors (BadSampleError, InvalidTypeError,
    MemoryBudgetError are ValueErrors); the OSErrors are those of a bad path given by the user.
    """
    from lsm.data.datasets import DownloadError

    return (CLIError, ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
            NotADirectoryError, PermissionError, DownloadError)


#: OSErrors that say something about the machine or the paths given, not about the program
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP, errno.EROFS,
                       errno.EMFILE, errno.ENFILE, errno.EIO, errno.EXDEV}


def _message(exc: BaseException) -> str:
    """One line for the user: an OSError raised by Python itself names its file."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds like Ctrl-C: temporary files
    and unfinished run directories are removed on the way out."""


def _terminate_like_interrupt() -> None:
    import signal
    import threading

    def handler(signum, frame):
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _interrupt_of(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (or :class:`Terminated`) that ``exc`` is or was caused by."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    """Run ``lsm`` with ``argv``; bad input prints ``lsm: error: ...`` and returns 2 (with
    ``--debug``, its traceback instead). A genuine bug keeps its traceback."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or argparse refused an option (2; it printed why)
        return exc.code if isinstance(exc.code, int) else 2
    _terminate_like_interrupt()
    if getattr(args, "weights", None) == "chip" or getattr(args, "needs_lab", False):
        import hw.weights  # noqa: F401  (registers the "chip" weight source)
    if args.debug:
        return args.func(args)
    try:
        return args.func(args)
    except _user_error_types() as exc:
        print(f"lsm: error: {_message(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:  # the machine's limits (a full disk, a name too long): not a bug
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        print(f"lsm: error: {_message(exc)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemError) as exc:
        # outputs are atomic and run directories removed on the way out: nothing is half written.
        # A signal that lands inside compiled (numba) code comes back as a SystemError whose
        # cause is the interrupt.
        interrupt = _interrupt_of(exc)
        if interrupt is None:
            raise
        terminated = isinstance(interrupt, Terminated)
        print(f"lsm: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130


