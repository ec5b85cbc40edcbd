"""``lsm hw``: drive the macro over VISA (default: the local emulator), and ``lsm hw emulator``
(also ``lsm emulator``): serve the emulated macro.

The lab packages are imported inside the handlers: ``lsm`` itself never imports ``hw``.
Everything that can be refused (limits, region, pulse, output paths, inputs) is refused before
connecting: not a byte goes out. Exit status 2: bad input; 3: the instrument or its link
failed (a lab job can be resumed by running the command again).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from lsm.cli.common import (
    CLIError,
    form_pulse_parent,
    path_arg,
    positive_int,
    progress_parent,
    region,
)

__all__ = ["register", "add_emulator_parser", "DEFAULT_REGION", "REGION_HELP"]

DEFAULT_REGION = "0,456,0,400"
REGION_HELP = "rows r0:r1 and columns c0:c1 of the array, half-open, as r0,r1,c0,c1"


# ---------------------------------------------------------------------- checks before connecting
def _limits(args: argparse.Namespace):
    from hw import Limits

    limits = Limits.load(args.limits) if args.limits else Limits()
    if getattr(args, "region", None) is not None:
        limits.check_region(*args.region)
    if hasattr(args, "v_read"):
        limits.check_read(args.v_read)
    return limits


def _out_path(path: str, suffixes: tuple[str, ...]) -> Path:
    from lsm.io import check_output_file

    out = check_output_file(path, "--out")
    if out.suffix.lower() not in suffixes:
        raise CLIError(f"--out {out}: the file name must end in one of {list(suffixes)}")
    return out


def _vmm_inputs(path: str, n_rows: int):
    """The binary input vectors of ``lsm hw vmm``: array ``inputs`` of an .npz."""
    from hw.macro import check_spike_inputs
    from lsm.io import load_npz

    arrays = load_npz(path, what="inputs file")
    if "inputs" not in arrays:
        raise CLIError(f"{path}: no array 'inputs' (arrays: {sorted(arrays)})")
    try:
        x = check_spike_inputs(arrays["inputs"], n_rows)
    except ValueError as exc:
        raise CLIError(f"{path}: {exc}") from None
    if x.shape[0] == 0:
        raise CLIError(f"{path}: inputs hold no vectors")
    return x


def _open_journal(path: str | None):
    from hw import Journal

    if path is None:
        return None
    try:
        return Journal(path)
    except (OSError, ValueError) as exc:  # sqlite3.Error is not an OSError
        raise CLIError(f"--journal {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - sqlite3.DatabaseError: not a database
        raise CLIError(f"--journal {path}: not a usable SQLite journal ({exc})") from None


# ---------------------------------------------------------------------- a lab session
@contextlib.contextmanager
def _lab_errors(resource: str, journal_path: str | None) -> Iterator[None]:
    """The lab's errors as one line: exit 2 for a refused request, 3 for the instrument, its
    link or a busy job (shared by every command that talks to the macro)."""
    import sqlite3

    from hw import DEFAULT_RESOURCE, InstrumentError, LimitError, LinkError
    from hw.jobs import JobIncomplete
    from hw.journal import JobBusy, JobMismatch

    try:
        yield
    except (LimitError, JobMismatch, ValueError) as exc:
        raise CLIError(str(exc)) from None
    except (JobIncomplete, InstrumentError, LinkError, JobBusy) as exc:
        message = str(exc)
        if "cannot connect" in message and resource == DEFAULT_RESOURCE:
            message += (" (is the emulator running? `lsm hw emulator --port 5025 &`, or give "
                        "--resource)")
        raise CLIError(message, exit_code=3) from None
    except sqlite3.Error as exc:  # locked by another process for longer than the timeout
        raise CLIError(f"--journal {journal_path}: {exc}", exit_code=3) from None


def _resource(args: argparse.Namespace) -> str:
    from hw import DEFAULT_RESOURCE

    return args.resource or os.environ.get("LSM_HW_RESOURCE") or DEFAULT_RESOURCE


@contextlib.contextmanager
def _macro(args: argparse.Namespace, limits) -> Iterator:
    """The journal (if any) and a connected :class:`hw.Macro`, errors as :func:`_lab_errors`."""
    from hw import Macro

    resource = _resource(args)
    journal = _open_journal(args.journal)
    try:
        with _lab_errors(resource, args.journal), \
                Macro(resource, limits=limits, journal=journal, timeout_ms=args.timeout_ms,
                      retries=args.retries) as m:
            yield m
    finally:
        if journal is not None:
            journal.close()


# ---------------------------------------------------------------------- handlers
def _cmd_idn(args: argparse.Namespace) -> int:
    with _macro(args, _limits(args)) as m:
        print(json.dumps({"idn": m.idn, "geometry": m.geometry, "status": m.status(),
                          "pulse_counter": m.has_counter}))
    return 0


def _cmd_program_random(args: argparse.Namespace) -> int:
    from lsm.crossbar import Pulse

    if not args.journal:
        raise CLIError("lsm hw program-random needs --journal FILE: the journal is what lets a "
                       "re-run resume without pulsing any cell twice")
    if args.job == "":
        raise CLIError("--job must not be empty")
    limits = _limits(args)
    pulse = Pulse.form(args.amplitude_v, args.width_ns, args.compliance_ua)
    limits.check_pulse(pulse.amplitude_v, pulse.width_ns, pulse.compliance_ua)
    with _macro(args, limits) as m:
        job = args.job or "form-{}-{}-{}-{}-{}-{}-{}-{}".format(
            m.idn["serial"], *args.region, pulse.amplitude_v, pulse.width_ns,
            pulse.compliance_ua)
        job = m.program_random(args.region, pulse, job_id=job, progress=not args.no_progress)
    print(json.dumps({"job": job, "region": ",".join(map(str, args.region)), "status": "done",
                      "journal": str(args.journal)}))
    return 0


def _cmd_read_map(args: argparse.Namespace) -> int:
    from hw import export_map
    from lsm.io import check_output_file
    from lsm.plots import conductance_histogram, conductance_map

    limits = _limits(args)
    out = _out_path(args.out, (".npz", ".h5", ".hdf5"))
    pngs = out.with_suffix(".png"), out.with_suffix(".hist.png")
    for png in pngs:  # refused before any instrument time is spent
        check_output_file(png, "--out (its PNG)")
    with _macro(args, limits) as m:
        g = m.read_map(args.region, repeats=args.repeats, v_read=args.v_read)
        settings = {"instrument": m.idn, "region": args.region, "repeats": args.repeats,
                    "v_read": args.v_read, "resource": m.resource_name}
    export_map(out, g, settings)
    r0, r1, c0, c1 = args.region
    png = conductance_map(g, pngs[0], f"rows {r0}:{r1}, cols {c0}:{c1}, {args.repeats} read(s)")
    hist = conductance_histogram(g, pngs[1], title=f"read map {args.region}")
    print(json.dumps({"out": str(out), "png": str(png), "hist_png": str(hist),
                      "mean_us": float(g.mean()), "std_us": float(g.std())}))
    return 0


def _cmd_vmm(args: argparse.Namespace) -> int:
    from lsm.io import atomic_savez

    limits = _limits(args)
    out = _out_path(args.out, (".npz",))
    r0, r1, c0, c1 = args.region
    if out.resolve() == Path(args.inputs).resolve():
        raise CLIError(f"--out {out} is the inputs file: choose another name")
    inputs = _vmm_inputs(args.inputs, r1 - r0)
    with _macro(args, limits) as m:
        codes = m.vmm((r0, r1), (c0, c1), inputs, v_read=args.v_read)
    atomic_savez(out, codes=codes)
    print(json.dumps({"out": str(out), "shape": list(codes.shape)}))
    return 0


def _cmd_journal(args: argparse.Namespace) -> int:
    if args.last is not None and args.last < 1:
        raise CLIError(f"--last must be >= 1, got {args.last}")
    if not Path(args.journal).is_file():
        raise CLIError(f"--journal {args.journal}: no such journal file")
    journal = _open_journal(args.journal)
    try:
        for record in journal.ops(job_id=args.job, limit=args.last):
            print(json.dumps(record))
        if args.job:
            job = journal.job(args.job)
            if job is None:
                raise CLIError(f"no job {args.job!r} in {args.journal}")
            chunks = journal.chunk_status(args.job)
            counts = {st: sum(v == st for v in chunks.values()) for st in set(chunks.values())}
            print(json.dumps({"job": job, "chunks": counts}))
    finally:
        journal.close()
    return 0


def _device_file(path: str | None):
    """The emulated cells and readout from a TOML file: tables ``[programming]``, ``[read]``,
    ``[drift]``, ``[faults]`` (:class:`lsm.crossbar.DeviceParams`) and ``[adc]``
    (:class:`lsm.crossbar.ADC`); (None, None) without one."""
    from lsm.config import tomllib
    from lsm.crossbar import ADC, DeviceParams
    from lsm.io import read_text_file

    if path is None:
        return None, None
    try:
        doc = tomllib.loads(read_text_file(path, "--device file"))
    except tomllib.TOMLDecodeError as exc:
        raise CLIError(f"--device {path}: not valid TOML: {exc}") from None
    table = dict(doc)
    adc_table = table.pop("adc", None)
    device = DeviceParams.from_dict(table, where=f"--device {path}")
    adc = None
    if adc_table is not None:
        if not isinstance(adc_table, dict):
            raise CLIError(f"--device {path}: [adc] must be a table")
        try:
            adc = ADC(**adc_table)
        except (TypeError, ValueError) as exc:
            raise CLIError(f"--device {path}: [adc]: {exc}") from None
    return device, adc


def _cmd_emulator(args: argparse.Namespace) -> int:
    from hw.emulator import FaultConfig, serve

    device, adc = _device_file(args.device)
    try:
        faults = FaultConfig(latency_s=args.latency_ms / 1000.0, drop_rate=args.drop_rate,
                             garble_rate=args.garble_rate, disconnect_rate=args.disconnect_rate,
                             error_rate=args.error_rate)
        serve(args.port, args.seed, faults, wall_clock=args.wall_clock, host=args.host,
              idle_timeout_s=args.idle_timeout_s, max_line_bytes=args.max_line_bytes,
              max_connections=args.max_connections, device=device, adc=adc)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:  # address in use, unknown host, no permission
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    return 0


# ---------------------------------------------------------------------- parsers
def _instrument_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--resource", default=None,
                   help="VISA resource of the controller (default: $LSM_HW_RESOURCE, else the "
                        "local emulator TCPIP0::127.0.0.1::5025::SOCKET)")
    p.add_argument("--limits", help="lab limits TOML (see hw/limits.example.toml; default: the "
                                    "built-in ones, the same values)")
    p.add_argument("--timeout-ms", type=int, default=5000, help="reply timeout, ms")
    p.add_argument("--retries", type=int, default=3,
                   help="extra attempts of a read-only query over a fresh connection")
    p.add_argument("--journal", help="SQLite lab journal (every pulse and read)")
    return p


def _region_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", type=region, default=DEFAULT_REGION, metavar="R0,R1,C0,C1",
                   help=REGION_HELP)


def add_emulator_parser(sub, name: str, help_text: str) -> None:
    em = sub.add_parser(name, help=help_text)
    em.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (127.0.0.1: this machine only)")
    em.add_argument("--port", type=int, default=5025, help="TCP port")
    em.add_argument("--idle-timeout-s", type=float, default=60.0,
                    help="close a connection with no complete command for this long, s")
    em.add_argument("--max-line-bytes", type=int, default=65536,
                    help="longest command line kept (longer: discarded, error -223)")
    em.add_argument("--max-connections", type=int, default=64,
                    help="simultaneous connections (more are closed at once)")
    em.add_argument("--seed", type=int, default=0, help="seed of the array and of the faults")
    em.add_argument("--wall-clock", action="store_true", help="drift with real time")
    em.add_argument("--device", metavar="FILE", type=path_arg,
                    help="TOML of the emulated cells and readout: tables [programming], [read], "
                         "[drift], [faults] (lsm.crossbar.DeviceParams fields) and [adc] "
                         "(lsm.crossbar.ADC fields); default: the paper's macro")
    em.add_argument("--latency-ms", type=float, default=0.0, help="fault: reply latency, ms")
    em.add_argument("--drop-rate", type=float, default=0.0, help="fault: dropped replies")
    em.add_argument("--garble-rate", type=float, default=0.0, help="fault: garbled replies")
    em.add_argument("--disconnect-rate", type=float, default=0.0, help="fault: disconnects")
    em.add_argument("--error-rate", type=float, default=0.0, help="fault: instrument errors")
    em.set_defaults(func=_cmd_emulator)


def register(sub) -> None:
    hwp = sub.add_parser("hw", help="drive the macro over VISA (default: local emulator)")
    hw_sub = hwp.add_subparsers(dest="hw_command", required=True)
    inst = _instrument_parent()
    hw_sub.add_parser("idn", help="identify the instrument", parents=[inst]).set_defaults(
        func=_cmd_idn)
    pr = hw_sub.add_parser("program-random", help="form a region, verified and resumable: "
                                                  "re-run with the same --job to resume",
                           parents=[inst, form_pulse_parent(), progress_parent()])
    _region_option(pr)
    pr.add_argument("--job", help="job id (default: from the instrument, region and pulse)")
    pr.set_defaults(func=_cmd_program_random)
    rm = hw_sub.add_parser("read-map", help="read a conductance map: the map file, and PNGs "
                                            "beside it (map.h5: map.png, map.hist.png)",
                           parents=[inst])
    _region_option(rm)
    rm.add_argument("--repeats", type=positive_int, default=1, metavar="N",
                    help="reads averaged per cell")
    rm.add_argument("--v-read", type=float, default=0.2, help="read voltage, V")
    rm.add_argument("--out", default="read_map.npz", metavar="FILE",
                    help="map file (.npz, .h5 or .hdf5)")
    rm.set_defaults(func=_cmd_read_map)
    vm = hw_sub.add_parser("vmm", help="multiply binary inputs in the array: ADC codes",
                           parents=[inst])
    vm.add_argument("inputs", help=".npz holding 'inputs': 0/1 spikes, (n_vectors, region rows)")
    _region_option(vm)
    vm.add_argument("--v-read", type=float, default=0.2, help="read voltage of the inputs, V")
    vm.add_argument("--out", default="vmm_codes.npz", metavar="FILE",
                    help=".npz receiving 'codes'")
    vm.set_defaults(func=_cmd_vmm)
    jn = hw_sub.add_parser("journal", help="print journal records (JSON lines), then a job's "
                                           "row counts")
    jn.add_argument("--journal", required=True, help="SQLite lab journal")
    jn.add_argument("--job", help="only this job's records")
    jn.add_argument("--last", type=int, help="only the last N records")
    jn.set_defaults(func=_cmd_journal)
    add_emulator_parser(hw_sub, "emulator", "serve the emulated macro over TCP (Ctrl-C stops)")
