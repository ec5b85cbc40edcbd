"""hw.Macro: the PyVISA driver of the IMC40 RRAM macro (or of its emulator).

Safety: every pulse, read voltage, region and batch size is checked against the lab's limits
(:class:`hw.limits.Limits`) before anything is sent. Leaving the context manager, normally, by an
exception or by Ctrl-C, aborts and brings the outputs to 0 V (and checks that they are).

Robustness: timeouts; queries that only read (``*IDN?``, ``READ?``, ``READ:BLOCK?``, ``GEOM?``,
``STAT?``, ``SYST:ERR?`` ...) are retried a bounded number of times, over a fresh connection;
pulses are never retried; the error queue is read after every write; garbled or short replies are
detected (parse, length and terminator checks). One limitation: ``SYST:ERR?`` pops the
instrument's error queue, so if its reply is lost and the query retried, that error is not seen
(the retry reports the next entry, usually "No error").

Journal: with a :class:`hw.journal.Journal`, every pulse and read is recorded, and long jobs
(``program_random``) are resumable by job id without pulsing any cell twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import numpy as np

from hw.journal import Journal
from hw.limits import Limits
from hw.protocol import (
    BlockError,
    block_header_length,
    check_version,
    decode_array,
    encode_block,
    format_args,
    parse_idn,
)

__all__ = ["Macro", "InstrumentError", "LinkError", "DEFAULT_RESOURCE"]

DEFAULT_RESOURCE = "TCPIP0::127.0.0.1::5025::SOCKET"


class InstrumentError(RuntimeError):
    """The instrument reported an error (from its SYST:ERR? queue)."""

    def __init__(self, code: int, message: str, command: str) -> None:
        super().__init__(f"instrument error {code} ({message}) after {command!r}")
        self.code, self.message, self.command = code, message, command


class LinkError(RuntimeError):
    """No usable reply after the allowed retries, or the link broke during a write."""


class Macro:
    """The macro over VISA.

    Parameters
    ----------
    resource : str
        Any VISA resource string; default the local emulator on port 5025.
    limits : Limits or path, optional
        Lab limits (a TOML file path or a Limits); default the built-in, conservative ones.
    journal : Journal or path, optional
        Where pulses and reads are recorded; needed for resumable jobs.
    timeout_ms : int
        VISA timeout per reply.
    retries : int
        Extra attempts for read-only queries.
    backend : str
        PyVISA backend, ``"@py"`` (pyvisa-py) by default.
    """

    def __init__(self, resource: str = DEFAULT_RESOURCE, limits=None, journal=None,
                 timeout_ms: int = 5000, retries: int = 3, backend: str = "@py") -> None:
        self.resource_name = resource
        self.limits = (limits if isinstance(limits, Limits) else
                       Limits.load(limits) if limits is not None else Limits())
        self.journal = (journal if isinstance(journal, Journal) or journal is None
                        else Journal(journal))
        self.timeout_ms = int(timeout_ms)
        self.retries = int(retries)
        self.backend = backend
        self._rm = None
        self._inst = None
        self.idn: dict | None = None
        self.geometry: tuple[int, int] | None = None

    # ------------------------------------------------------------------ connection
    def open(self) -> Macro:
        import pyvisa

        if self._rm is None:
            self._rm = pyvisa.ResourceManager(self.backend)
        self._connect()
        self.identify()
        self.geometry = self.query("GEOM?", _parse_geometry)
        return self

    def _connect(self) -> None:
        import pyvisa

        self._inst = self._rm.open_resource(self.resource_name, read_termination="\n",
                                            write_termination="\n", timeout=self.timeout_ms)
        if self.resource_name.upper().startswith("TCPIP"):
            _set_nodelay(self._rm, self._inst, pyvisa)

    def _reconnect(self) -> None:
        try:
            if self._inst is not None:
                self._inst.close()
        except Exception:  # noqa: BLE001 - the link is already broken
            pass
        self._inst = None
        self._connect()

    def close(self) -> None:
        if self._inst is not None:
            try:
                self._inst.close()
            finally:
                self._inst = None
        if self._rm is not None:
            self._rm.close()
            self._rm = None

    def __enter__(self) -> Macro:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.safe_state(reason=None if exc_type is None else exc_type.__name__)
        finally:
            self.close()

    def safe_state(self, reason: str | None = None) -> float:
        """ABOR and outputs to 0 V; returns the output voltage read back (0.0)."""
        try:
            self._inst.write("ABOR")
            v = self.query("OUTP:VOLT?", float)
        except Exception as exc:  # noqa: BLE001 - best effort, then report
            self._record("ABOR", {"reason": reason}, str(exc), "error")
            raise LinkError(f"could not bring the instrument to a safe state: {exc}") from exc
        self._record("ABOR", {"reason": reason}, {"vout": v}, "ok" if v == 0 else "error")
        if v != 0:
            raise InstrumentError(-300, f"outputs at {v} V after ABOR", "ABOR")
        return v

    # ------------------------------------------------------------------ low level
    def _record(self, command, params, result, status, job_id=None, chunk=None) -> None:
        if self.journal is not None:
            ident = None if self.idn is None else f"{self.idn['model']} {self.idn['serial']}"
            self.journal.record(command, params, result, status, ident, job_id, chunk)

    def _read_line(self) -> str:
        return self._inst.read()

    def _read_block(self) -> bytes:
        head = self._inst.read_bytes(2)
        if head[:1] != b"#" or not head[1:2].isdigit():
            raise BlockError(f"expected a binary block, got {head!r}")
        digits = self._inst.read_bytes(int(head[1:2]))
        hlen, length = block_header_length(head + digits)
        payload = self._inst.read_bytes(length) if length else b""
        term = self._inst.read_bytes(1)
        if term != b"\n":
            raise BlockError(f"block not terminated by a newline (got {term!r})")
        return payload

    def _attempts(self, what: str, fn: Callable):
        """Run a read-only exchange, retrying over a fresh connection on failure."""
        import pyvisa

        last = None
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (pyvisa.errors.VisaIOError, BlockError, ValueError, ConnectionError,
                    OSError, UnicodeDecodeError) as exc:
                last = exc
                if attempt < self.retries:
                    time.sleep(0.05 * (attempt + 1))
                    self._reconnect()
        raise LinkError(f"{what}: no valid reply after {self.retries + 1} attempts ({last})")

    def query(self, command: str, parse: Callable[[str], object] = str):
        """A read-only ASCII query with bounded retries; ``parse`` validates the reply."""

        def once():
            self._inst.write(command)
            reply = self._read_line()
            return parse(reply)

        return self._attempts(command, once)

    def query_block(self, command: str, dtype, shape, payload: bytes | None = None) -> np.ndarray:
        """A read-only query answered by a binary block (validated length and terminator)."""

        def once():
            if payload is None:
                self._inst.write(command)
            else:
                self._inst.write_raw(command.encode() + b"," + encode_block(payload) + b"\n")
            return decode_array(self._read_block(), dtype, shape)

        return self._attempts(command, once)

    def check_errors(self, command: str) -> None:
        """Read the error queue; raise the first error."""
        reply = self.query("SYST:ERR?", _parse_error)
        if reply[0] != 0:
            raise InstrumentError(reply[0], reply[1], command)

    def _write_checked(self, command: str, params=None, job_id=None, chunk=None) -> None:
        """Send a command that changes the instrument: never retried, errors checked."""
        head = command.split(" ")[0]
        try:
            self._inst.write(command)
        except Exception as exc:
            self._record(head, params, str(exc), "unknown", job_id, chunk)
            raise LinkError(f"link broke while sending {command!r}: {exc}; the command may or "
                            "may not have run") from exc
        try:
            self.check_errors(command)
        except InstrumentError as exc:
            self._record(head, params, str(exc), "error", job_id, chunk)
            raise
        self._record(head, params, None, "ok", job_id, chunk)

    # ------------------------------------------------------------------ high level
    def identify(self) -> dict:
        """``*IDN?`` parsed; refuses another major protocol version."""
        self.idn = self.query("*IDN?", parse_idn)
        check_version(self.idn["protocol"])
        return self.idn

    def _region(self, region) -> tuple[int, int, int, int]:
        r0, r1, c0, c1 = (int(v) for v in (region if not hasattr(region, "row_start") else
                                           (region.row_start, region.row_stop,
                                            region.col_start, region.col_stop)))
        if self.geometry and not (0 <= r0 < r1 <= self.geometry[0]
                                  and 0 <= c0 < c1 <= self.geometry[1]):
            raise ValueError(f"region rows {r0}:{r1}, cols {c0}:{c1} is outside the "
                             f"{self.geometry[0]} x {self.geometry[1]} array")
        self.limits.check_region(r0, r1, c0, c1)
        return r0, r1, c0, c1

    def pulse(self, region, pulse, job_id=None, chunk=None) -> None:
        """One FORM / SET / RESET pulse on every cell of ``region`` (limits checked first)."""
        r0, r1, c0, c1 = self._region(region)
        self.limits.check_pulse(pulse.amplitude_v, pulse.width_ns, pulse.compliance_ua)
        head = {"form": "PULS:FORM", "set": "PULS:SET", "reset": "PULS:RES"}[pulse.kind]
        args = [r0, r1, c0, c1, float(pulse.amplitude_v), float(pulse.width_ns)]
        if pulse.kind != "reset":
            args.append(float(pulse.compliance_ua))
        params = {"region": [r0, r1, c0, c1], "amplitude_v": float(pulse.amplitude_v),
                  "width_ns": float(pulse.width_ns), "compliance_ua": float(pulse.compliance_ua)}
        self._write_checked(f"{head} {format_args(*args)}", params, job_id, chunk)

    def program_random(self, region, pulse=None, job_id: str | None = None,
                       progress: bool = True, on_chunk: Callable[[int], None] | None = None
                       ) -> str:
        """Form ``region`` into the random state, one row per command, resumable.

        With a journal, the job is recorded under ``job_id`` (a new id when None); running it
        again with the same id continues where it stopped. A row found *pending* (its command
        may or may not have run) is read first, and only cells still below the lab's
        ``formed_threshold_us`` are pulsed: no cell gets a second forming pulse. A *new* job id
        does not look at the cells first: on cells that are already formed its pulses act as
        SET pulses, so reuse the id that formed a block.

        Returns
        -------
        str : the job id.
        """
        from tqdm.auto import tqdm

        from lsm.crossbar import Pulse

        pulse = Pulse.form() if pulse is None else pulse
        if pulse.kind != "form":
            raise ValueError("program_random needs a FORM pulse")
        r0, r1, c0, c1 = self._region(region)
        self.limits.check_pulse(pulse.amplitude_v, pulse.width_ns, pulse.compliance_ua)
        job_id = job_id or uuid.uuid4().hex[:12]
        params = {"region": [r0, r1, c0, c1], "pulse": [pulse.amplitude_v, pulse.width_ns,
                                                        pulse.compliance_ua]}
        status = {}
        if self.journal is not None:
            self.journal.start_job(job_id, "program_random", params)
            status = self.journal.chunk_status(job_id)
        try:
            for k in tqdm(range(r1 - r0), desc=f"program_random {job_id}", unit="row",
                          disable=not progress):
                st = status.get(k)
                if st == "done":
                    continue
                row = r0 + k
                if st == "pending":
                    self._finish_pending_row(row, c0, c1, pulse, job_id, k)
                else:
                    if self.journal is not None:
                        self.journal.set_chunk(job_id, k, "pending")
                    self.pulse((row, row + 1, c0, c1), pulse, job_id, k)
                if self.journal is not None:
                    self.journal.set_chunk(job_id, k, "done")
                if on_chunk is not None:
                    on_chunk(k)
        except BaseException:
            if self.journal is not None:
                self.journal.finish_job(job_id, "interrupted")
            raise
        if self.journal is not None:
            self.journal.finish_job(job_id, "done")
        return job_id

    def _finish_pending_row(self, row, c0, c1, pulse, job_id, k) -> None:
        g = self.read_map((row, row + 1, c0, c1))[0]
        todo = np.flatnonzero(g < self.limits.formed_threshold_us)
        self._record("RESUME-CHECK", {"row": row, "unformed": int(todo.size)}, None, "ok",
                     job_id, k)
        # contiguous runs of unformed cells, one command each
        if todo.size:
            breaks = np.flatnonzero(np.diff(todo) > 1) + 1
            for run in np.split(todo, breaks):
                self.pulse((row, row + 1, c0 + int(run[0]), c0 + int(run[-1]) + 1), pulse,
                           job_id, k)

    def read_map(self, region, repeats: int = 1, v_read: float = 0.2) -> np.ndarray:
        """Conductance map (uS) of ``region``, averaged over ``repeats`` reads."""
        r0, r1, c0, c1 = self._region(region)
        self.limits.check_read(v_read)
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        shape = (r1 - r0, c1 - c0)
        acc = np.zeros(shape)
        for _ in range(repeats):
            cmd = f"READ:BLOCK? {format_args(r0, r1, c0, c1, float(v_read), 'G')}"
            acc += self.query_block(cmd, "<f4", shape)
            self._record("READ:BLOCK?", {"region": [r0, r1, c0, c1], "v_read": v_read},
                         {"mean_us": float(acc.mean())}, "ok")
        return acc / repeats

    def vmm(self, rows, cols, inputs: np.ndarray, v_read: float = 0.2) -> np.ndarray:
        """ADC codes (n, n_cols) of binary ``inputs`` (n, n_rows) driven on rows ``rows``
        (a (start, stop) pair) and read on columns ``cols`` (a (start, stop) pair)."""
        r0, r1 = int(rows[0]), int(rows[1])
        c0, c1 = int(cols[0]), int(cols[1])
        self._region((r0, r1, c0, c1))
        self.limits.check_read(v_read)
        x = np.asarray(inputs)
        if x.ndim != 2 or x.shape[1] != r1 - r0:
            raise ValueError(f"inputs must have shape (n, {r1 - r0}), got {x.shape}")
        if x.size and not np.isin(x, (0, 1)).all():
            raise ValueError("inputs must be binary spikes (0/1)")
        out = np.empty((len(x), c1 - c0), dtype=np.int64)
        step = self.limits.max_vectors
        for lo in range(0, len(x), step):
            chunk = np.ascontiguousarray(x[lo:lo + step], dtype=np.uint8)
            self.limits.check_vectors(len(chunk))
            cmd = f"VMM? {format_args(r0, r1, c0, c1, float(v_read), len(chunk))}"
            out[lo:lo + len(chunk)] = self.query_block(cmd, "<u2", (len(chunk), c1 - c0),
                                                       payload=chunk.tobytes())
        self._record("VMM?", {"rows": [r0, r1], "cols": [c0, c1], "vectors": len(x)}, None,
                     "ok")
        return out

    def program_verify(self, targets_us: np.ndarray, region, tol_us: float = 0.5,
                       max_iter: int = 60, v_start: float = 0.6, v_step: float = 0.02,
                       width_ns: float = 200.0, compliance_ua: float = 150.0,
                       progress: bool = True) -> dict:
        """Incremental-step write-verify (ISPP) of every cell of ``region``.

        Each round reads the region; a cell outside ``tol_us`` of its target gets a SET (below)
        or RESET (above) pulse whose amplitude starts at ``v_start`` and grows by ``v_step``
        every round the cell stays on that side (reset to ``v_start`` when it crosses over).
        Amplitudes never exceed the lab limit. Returns convergence statistics and the cells
        that did not converge.
        """
        from tqdm.auto import tqdm

        from lsm.crossbar import Pulse

        r0, r1, c0, c1 = self._region(region)
        t = np.asarray(targets_us, dtype=np.float64)
        if t.shape != (r1 - r0, c1 - c0) or not np.isfinite(t).all():
            raise ValueError(f"targets_us must be finite with shape {(r1 - r0, c1 - c0)}")
        amp = np.full(t.shape, v_start)
        side = np.zeros(t.shape, dtype=np.int8)
        pulses = np.zeros(t.shape, dtype=np.int64)
        done = np.zeros(t.shape, dtype=bool)
        it = 0
        for it in tqdm(range(max_iter), desc="program_verify", disable=not progress):  # noqa: B007
            g = self.read_map((r0, r1, c0, c1))
            err = g - t
            done = np.abs(err) <= tol_us
            if done.all():
                break
            for i, j in zip(*np.nonzero(~done), strict=True):
                s = -1 if err[i, j] < 0 else 1
                if side[i, j] != s:
                    amp[i, j] = v_start
                    side[i, j] = s
                a = min(amp[i, j], self.limits.max_abs_v)
                p = (Pulse.set(a, width_ns, compliance_ua) if s < 0
                     else Pulse.reset(-a, width_ns))
                self.pulse((r0 + i, r0 + i + 1, c0 + j, c0 + j + 1), p)
                pulses[i, j] += 1
                amp[i, j] += v_step
        else:
            g = self.read_map((r0, r1, c0, c1))
            done = np.abs(g - t) <= tol_us
        failed = [(int(r0 + i), int(c0 + j)) for i, j in zip(*np.nonzero(~done), strict=True)]
        return {"converged_fraction": float(done.mean()), "iterations": it + 1,
                "pulses": int(pulses.sum()), "failed_cells": failed}

    def advance_time(self, dt_s: float) -> None:
        """Let ``dt_s`` seconds pass: the emulator's simulated clock, or a real wait."""
        if self.idn and self.idn["serial"].startswith("EMU"):
            self._write_checked(f"SIM:ADV {format_args(float(dt_s))}", {"dt_s": float(dt_s)})
        else:
            time.sleep(dt_s)

    def readout(self):
        """The instrument's readout chain (``ADC?``) as an :class:`lsm.crossbar.Readout`."""
        from lsm.crossbar import Readout

        def parse(reply):
            bits, r, lo, hi = reply.split(",")
            return Readout(int(bits), float(r), float(lo), float(hi))

        return self.query("ADC?", parse)

    def status(self) -> dict:
        def parse(reply):
            state, vout, pulses = reply.split(",")
            if state not in ("IDLE", "BUSY"):
                raise ValueError(f"garbled STAT? reply {reply!r}")
            return {"state": state, "vout": float(vout), "pulses": int(pulses)}

        return self.query("STAT?", parse)


def _set_nodelay(rm, inst, pyvisa) -> None:
    """TCP_NODELAY on a socket resource: command/reply exchanges are small, and Nagle's
    algorithm with delayed ACKs would add ~40 ms to every write followed by a query.

    pyvisa-py 0.8 maps the setter of VI_ATTR_TCPIP_NODELAY to a method that always raises, so
    for that backend the option is set on its socket directly."""
    import socket

    try:
        inst.set_visa_attribute(pyvisa.constants.VI_ATTR_TCPIP_NODELAY, True)
        return
    except Exception:  # noqa: BLE001 - fall through to the pyvisa-py socket
        pass
    session = getattr(getattr(rm, "visalib", None), "sessions", {}).get(inst.session)
    sock = getattr(session, "interface", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _parse_geometry(reply: str) -> tuple[int, int]:
    rows, cols = (int(v) for v in reply.split(","))
    if rows < 1 or cols < 1:
        raise ValueError(f"garbled GEOM? reply {reply!r}")
    return rows, cols


def _parse_error(reply: str) -> tuple[int, str]:
    code, _, msg = reply.partition(",")
    if not msg.startswith('"') or not msg.endswith('"'):
        raise ValueError(f"garbled SYST:ERR? reply {reply!r}")
    return int(code), json.loads(msg) if msg.count('"') == 2 else msg.strip('"')
