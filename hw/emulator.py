"""An emulated IMC40 controller: a real TCP server speaking hw/PROTOCOL.md over lsm.crossbar.

The same driver code talks to it and to the chip. The array physics is
:class:`lsm.crossbar.CrossbarArray` (stochastic forming, read noise, drift with simulated or
wall-clock time, stuck cells) with the macro's 14-bit readout.

As an instrument server it behaves like a networked bench instrument:

- clients are served concurrently, one thread per connection, up to ``max_connections`` (more are
  refused by closing them); the instrument state (array, pulse counts, counters, outputs) is
  shared under one lock, while the command parser and the SCPI error queue belong to each
  connection;
- the error queue is bounded (``error_queue_size``); on overflow its newest entry becomes
  ``-350,"Queue overflow"``;
- a connection that sends no complete command for ``idle_timeout_s`` (idle, or stuck in a half
  line) is closed; an ASCII line longer than ``max_line_bytes`` is discarded as it arrives (never
  stored) and answered by ``-223,"Too much data"``; a binary block is read by its declared length,
  and one larger than the biggest legal ``VMM?`` payload is skipped without being allocated;
- only the most recent received lines are kept (:attr:`EmulatedMacro.log`, each truncated).

Faults can be injected (:class:`FaultConfig`): reply latency, dropped and garbled replies, dropped
links (on replies, and on pulses before or after they are applied), instrument errors. Everything
random (array and faults) follows the seed.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hw.protocol import PROTOCOL_VERSION, BlockError, block_header_length, encode_block
from lsm.crossbar import ADC, CrossbarArray, DeviceParams, InputDAC, Pulse

__all__ = ["FaultConfig", "EmulatedMacro", "EmulatorServer", "serve", "ErrorQueue", "Command",
           "COMMANDS", "DEFAULT_HOST", "DEFAULT_IDLE_TIMEOUT_S", "DEFAULT_MAX_LINE_BYTES",
           "DEFAULT_MAX_CONNECTIONS", "DEFAULT_ERROR_QUEUE_SIZE", "CommandError", "RecentLines",
           "header_of", "LIMITS", "DEFAULT_LOG_LINES", "DEFAULT_LOG_LINE_CHARS", "NO_ERROR",
           "QUEUE_OVERFLOW", "TOO_MUCH_DATA", "DEVICE_ERROR", "BAD_BLOCK", "BIG_BLOCK"]

LIMITS = {"amp_v": 5.0, "width_ns": (1.0, 1e6), "comp_ua": (1.0, 1000.0),
          "v_read": (0.01, 0.5), "n_vec": 4096}

DEFAULT_HOST = "127.0.0.1"
DEFAULT_IDLE_TIMEOUT_S = 60.0
DEFAULT_MAX_LINE_BYTES = 64 * 1024
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_ERROR_QUEUE_SIZE = 16
#: how many received lines :attr:`EmulatedMacro.log` keeps, and how many characters of each
DEFAULT_LOG_LINES = 1000
DEFAULT_LOG_LINE_CHARS = 200
#: bytes asked of the socket per ``recv``
_RECV_BYTES = 64 * 1024

NO_ERROR = (0, "No error")
QUEUE_OVERFLOW = (-350, "Queue overflow")
TOO_MUCH_DATA = (-223, "Too much data")
DEVICE_ERROR = (-300, "Device-specific error")


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"FaultConfig.{name} must be a probability in [0, 1], got {value!r}")


@dataclass
class FaultConfig:
    """Fault injection, drawn from the server's seeded generator; each fault independently of
    the others (a reply is lost to a disconnect, else dropped, else garbled).

    Parameters
    ----------
    latency_s : float
        Delay before every reply is sent (not before pulses).
    drop_rate : float
        Probability that a reply is not sent at all.
    garble_rate : float
        Probability that a reply is corrupted (a flipped byte, cut in half).
    disconnect_rate : float
        Probability that the link is dropped: for a query, instead of its reply; for a pulse
        (``PULS:FORM|SET|RES``), half of those times *before* the pulse is executed (not applied)
        and half *after* (applied), so the broken link says nothing about whether it ran.
    error_rate : float
        Probability that a pulse fails with ``-300,"Device-specific error"`` in the connection's
        error queue; the pulse is not applied and ``PULS:COUN?`` does not advance.
    """

    latency_s: float = 0.0
    drop_rate: float = 0.0
    garble_rate: float = 0.0
    disconnect_rate: float = 0.0
    error_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.latency_s <= 60.0:
            raise ValueError(f"FaultConfig.latency_s must be in [0, 60] s, got {self.latency_s!r}")
        for name in ("drop_rate", "garble_rate", "disconnect_rate", "error_rate"):
            _check_rate(name, getattr(self, name))


class _BlockMark(bytes):
    """A marker standing in for a binary block that could not be used."""


#: a command line whose binary block was malformed (short, bad header, bad terminator)
BAD_BLOCK = _BlockMark(b"\x00malformed")
#: a command line whose binary block was larger than the instrument accepts (skipped unread)
BIG_BLOCK = _BlockMark(b"\x00too-large")


class CommandError(Exception):
    """A command refused by the instrument: its SCPI code and message go to the error queue."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ErrorQueue:
    """A bounded SCPI error queue (each connection has its own).

    Parameters
    ----------
    capacity : int
        Entries held at most. When the queue is full, a new error is discarded and the newest
        entry is replaced by ``-350,"Queue overflow"`` (SCPI-99, 21.8.1): the oldest errors stay.
    """

    def __init__(self, capacity: int = DEFAULT_ERROR_QUEUE_SIZE) -> None:
        if int(capacity) < 1:
            raise ValueError(f"error queue capacity must be >= 1, got {capacity!r}")
        self.capacity = int(capacity)
        self._entries: deque[tuple[int, str]] = deque()

    def push(self, code: int, message: str) -> None:
        """Queue an error (or mark the overflow)."""
        if len(self._entries) >= self.capacity:
            self._entries[-1] = QUEUE_OVERFLOW
        else:
            self._entries.append((int(code), str(message)))

    def pop(self) -> tuple[int, str]:
        """The oldest error, removed; ``(0, "No error")`` when empty."""
        return self._entries.popleft() if self._entries else NO_ERROR

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(list(self._entries))

    def __repr__(self) -> str:
        return f"ErrorQueue({list(self._entries)!r}, capacity={self.capacity})"


class RecentLines(deque):
    """The most recent received command lines: bounded in count, each truncated.

    Supports slicing (``log[-3:]`` gives a list), unlike a plain deque.
    """

    def __init__(self, maxlen: int = DEFAULT_LOG_LINES,
                 max_chars: int = DEFAULT_LOG_LINE_CHARS) -> None:
        super().__init__((), maxlen)
        self.max_chars = int(max_chars)

    def append(self, line: str) -> None:
        if len(line) > self.max_chars:
            line = f"{line[:self.max_chars]}...(+{len(line) - self.max_chars} chars)"
        super().append(line)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return list(self)[k]
        return super().__getitem__(k)


@dataclass(frozen=True)
class Command:
    """One entry of the command table.

    Parameters
    ----------
    handler : callable
        ``handler(macro, args, block, errors) -> reply bytes or None``.
    params : tuple of str
        Argument names, in order (missing required ones give ``-109``).
    optional : int
        How many trailing ``params`` may be left out.
    pulse : bool
        A pulse command (``PULS:FORM|SET|RES``): subject to the pulse faults, counted by
        ``PULS:COUN?`` when applied.
    """

    handler: Callable[..., bytes | None]
    params: tuple[str, ...] = ()
    optional: int = 0
    pulse: bool = False

    @property
    def required(self) -> int:
        return len(self.params) - self.optional


def header_of(line: str) -> str:
    """The command header of a line, upper case (``"puls:set 0,1,..."`` -> ``"PULS:SET"``)."""
    return line.strip().partition(" ")[0].upper()


class EmulatedMacro:
    """Instrument state and command semantics (no I/O).

    Parameters
    ----------
    rows, cols : int
        Array size.
    device : DeviceParams, optional
        Device model of the cells.
    seed : int
        Seed of the array's randomness.
    wall_clock : bool
        Drift with real time instead of the simulated clock (``SIM:ADV``).
    serial : str
        Serial number in ``*IDN?``.
    log_lines : int
        How many received lines :attr:`log` keeps (each truncated).
    adc : ADC, optional
        The readout chain (TIA + ADC) of ``READ:BLOCK? ...,CODE`` and ``VMM?``; default the
        macro's 14-bit one.

    Attributes
    ----------
    array : CrossbarArray
        The cells.
    pulse_counts : numpy.ndarray of uint32
        Pulses received by each cell.
    pulse_commands : int
        Pulse commands applied since power-up (``PULS:COUN?``).
    rx : int
        Command lines received since start, over all connections (``DIAG:RX?``).
    log : RecentLines
        The most recent received lines.
    errors : ErrorQueue
        The error queue of :meth:`handle` calls made without a connection's own queue.
    lock : threading.RLock
        Guards the instrument state; :meth:`handle` takes it.
    """

    def __init__(self, rows: int = 512, cols: int = 512, device: DeviceParams | None = None,
                 seed: int = 0, wall_clock: bool = False, serial: str = "EMU-0",
                 log_lines: int = DEFAULT_LOG_LINES, adc: ADC | None = None) -> None:
        t0 = time.monotonic()
        self.array = CrossbarArray(rows, cols, device, seed=seed,
                                   clock=(lambda: time.monotonic() - t0) if wall_clock else None)
        if adc is not None and not isinstance(adc, ADC):
            raise TypeError(f"adc must be an lsm.crossbar.ADC, got {type(adc).__name__}")
        self.adc = adc if adc is not None else ADC()
        self.errors = ErrorQueue()
        self.pulse_counts = np.zeros((rows, cols), dtype=np.uint32)
        self.pulse_commands = 0
        self.vout = 0.0
        self.rx = 0
        self.log = RecentLines(log_lines)
        self.serial = serial
        self.lock = threading.RLock()

    @property
    def max_block_bytes(self) -> int:
        """The biggest legal binary block: a full ``VMM?`` (4096 vectors x all rows)."""
        return LIMITS["n_vec"] * self.array.shape[0]

    # ------------------------------------------------------------------ dispatch
    def receive(self, line: str) -> None:
        """Count and log a received line (without executing it)."""
        with self.lock:
            self.rx += 1
            self.log.append(line)

    def handle(self, line: str, block: bytes | None = None, errors: ErrorQueue | None = None,
               fail: tuple[int, str] | None = None) -> bytes | None:
        """Receive and execute one command line.

        Parameters
        ----------
        line : str
            The command line, without terminator (and without its binary block).
        block : bytes, optional
            The payload of the line's binary block (or :data:`BAD_BLOCK` / :data:`BIG_BLOCK`).
        errors : ErrorQueue, optional
            The connection's error queue (default :attr:`errors`).
        fail : (int, str), optional
            Refuse the command with this error instead of executing it (injected faults, data
            that was too long).

        Returns
        -------
        bytes or None
            The reply without terminator (``b""`` for a failed query), or None for commands
            that do not answer.
        """
        errors = self.errors if errors is None else errors
        with self.lock:
            self.receive(line)
            head, _, rest = line.strip().partition(" ")
            header = head.upper()
            try:
                if fail is not None:
                    raise CommandError(*fail)
                cmd = COMMANDS.get(header)
                if cmd is None:
                    raise CommandError(-113, "Undefined header")
                args = [a.strip() for a in rest.split(",")] if rest.strip() else []
                if len(args) < cmd.required:
                    raise CommandError(-109, "Missing parameter")
                return cmd.handler(self, args, block, errors)
            except CommandError as exc:
                errors.push(exc.code, exc.message)
                return b"" if header.endswith("?") else None

    # ------------------------------------------------------------------ argument helpers
    def _region(self, args, k=0):
        try:
            r0, r1, c0, c1 = (int(a) for a in args[k:k + 4])
        except (ValueError, IndexError):
            raise CommandError(-109, "Missing parameter") from None
        rows, cols = self.array.shape
        if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
            raise CommandError(-222, "Data out of range")
        return r0, r1, c0, c1

    @staticmethod
    def _float(args, k, lo, hi):
        try:
            v = float(args[k])
        except (ValueError, IndexError):
            raise CommandError(-109, "Missing parameter") from None
        if not (lo <= v <= hi):
            raise CommandError(-222, "Data out of range")
        return v

    def _pulse(self, kind, args):
        r0, r1, c0, c1 = self._region(args)
        amp = self._float(args, 4, -LIMITS["amp_v"], LIMITS["amp_v"])
        width = self._float(args, 5, *LIMITS["width_ns"])
        comp = self._float(args, 6, *LIMITS["comp_ua"]) if kind != "reset" else 100.0
        try:
            pulse = Pulse(kind, amp, width, comp)
        except ValueError:
            raise CommandError(-222, "Data out of range") from None
        rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
        self.vout = amp
        self.array.program(rr.ravel(), cc.ravel(), pulse)
        self.pulse_counts[r0:r1, c0:c1] += 1
        self.pulse_commands += 1
        self.vout = 0.0

    # ------------------------------------------------------------------ command handlers
    # each: (args, block, errors) -> reply bytes or None; see COMMANDS below
    def _cmd_idn(self, args, block, errors):
        return f"RRAM-LAB,IMC40-512,{self.serial},PROTO {PROTOCOL_VERSION}".encode()

    def _cmd_rst(self, args, block, errors):
        errors.clear()
        self.vout = 0.0
        return None

    def _cmd_cls(self, args, block, errors):
        errors.clear()
        return None

    def _cmd_opc(self, args, block, errors):
        return b"1"

    def _cmd_err(self, args, block, errors):
        code, msg = errors.pop()
        return f'{code},"{msg}"'.encode()

    def _cmd_vers(self, args, block, errors):
        return PROTOCOL_VERSION.encode()

    def _cmd_geom(self, args, block, errors):
        rows, cols = self.array.shape
        return f"{rows},{cols}".encode()

    def _cmd_stat(self, args, block, errors):
        return f"IDLE,{self.vout:.3f},{self.array.pulse_count}".encode()

    def _cmd_volt(self, args, block, errors):
        return f"{self.vout:.3f}".encode()

    def _cmd_abor(self, args, block, errors):
        self.vout = 0.0
        return None

    def _cmd_form(self, args, block, errors):
        self._pulse("form", args)
        return None

    def _cmd_set(self, args, block, errors):
        self._pulse("set", args)
        return None

    def _cmd_reset(self, args, block, errors):
        self._pulse("reset", args)
        return None

    def _cmd_pulse_count(self, args, block, errors):
        return str(self.pulse_commands).encode()

    def _cmd_read(self, args, block, errors):
        rows, cols = self.array.shape
        try:
            r, c = int(args[0]), int(args[1])
        except (ValueError, IndexError):
            raise CommandError(-109, "Missing parameter") from None
        if not (0 <= r < rows and 0 <= c < cols):
            raise CommandError(-222, "Data out of range")
        v = self._float(args, 2, *LIMITS["v_read"])
        return repr(float(self.array.read(np.array([r]), np.array([c]), v)[0])).encode()

    def _cmd_read_block(self, args, block, errors):
        r0, r1, c0, c1 = self._region(args)
        v = self._float(args, 4, *LIMITS["v_read"])
        fmt = args[5].upper() if len(args) > 5 else "G"
        if fmt not in ("G", "CODE"):
            raise CommandError(-222, "Data out of range")
        rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
        g = self.array.read(rr.ravel(), cc.ravel(), v)
        if fmt == "G":
            return encode_block(g.astype("<f4").tobytes())
        return encode_block(self.adc.codes(g * v).astype("<u2").tobytes())

    def _cmd_vmm(self, args, block, errors):
        r0, r1, c0, c1 = self._region(args)
        v = self._float(args, 4, *LIMITS["v_read"])
        try:
            n = int(args[5])
        except (ValueError, IndexError):
            raise CommandError(-109, "Missing parameter") from None
        if not 1 <= n <= LIMITS["n_vec"]:
            raise CommandError(-222, "Data out of range")
        if block is BIG_BLOCK:
            raise CommandError(*TOO_MUCH_DATA)
        if block is None or block is BAD_BLOCK or len(block) != n * (r1 - r0):
            raise CommandError(-160, "Block data error")
        x = np.frombuffer(block, dtype=np.uint8).reshape(n, r1 - r0)
        if x.max(initial=0) > 1:
            raise CommandError(-222, "Data out of range")
        codes = self.array.vmm(np.arange(r0, r1), np.arange(c0, c1), x,
                               dac=InputDAC(v), adc=self.adc)
        return encode_block(codes.astype("<u2").tobytes())

    def _cmd_adc(self, args, block, errors):
        r = self.adc
        return f"{r.bits},{r.r_tia_kohm!r},{r.v_min!r},{r.v_max!r}".encode()

    def _cmd_sim_adv(self, args, block, errors):
        self.array.advance(self._float(args, 0, 0.0, 1e12))
        return None

    def _cmd_sim_time(self, args, block, errors):
        return repr(self.array.now_s).encode()

    def _cmd_diag_pcount(self, args, block, errors):
        r0, r1, c0, c1 = self._region(args)
        return encode_block(self.pulse_counts[r0:r1, c0:c1].astype("<u4").tobytes())

    def _cmd_diag_rx(self, args, block, errors):
        return str(self.rx).encode()


_REGION = ("r0", "r1", "c0", "c1")
_M = EmulatedMacro

#: the command table: header -> :class:`Command` (hw/PROTOCOL.md lists the same)
COMMANDS: dict[str, Command] = {
    "*IDN?": Command(_M._cmd_idn),
    "*RST": Command(_M._cmd_rst),
    "*CLS": Command(_M._cmd_cls),
    "*OPC?": Command(_M._cmd_opc),
    "SYST:ERR?": Command(_M._cmd_err),
    "SYST:VERS?": Command(_M._cmd_vers),
    "GEOM?": Command(_M._cmd_geom),
    "STAT?": Command(_M._cmd_stat),
    "OUTP:VOLT?": Command(_M._cmd_volt),
    "ADC?": Command(_M._cmd_adc),
    "ABOR": Command(_M._cmd_abor),
    "PULS:FORM": Command(_M._cmd_form, (*_REGION, "amp_v", "width_ns", "comp_ua"), pulse=True),
    "PULS:SET": Command(_M._cmd_set, (*_REGION, "amp_v", "width_ns", "comp_ua"), pulse=True),
    "PULS:RES": Command(_M._cmd_reset, (*_REGION, "amp_v", "width_ns"), pulse=True),
    "PULS:COUN?": Command(_M._cmd_pulse_count),
    "READ?": Command(_M._cmd_read, ("r", "c", "v_read")),
    "READ:BLOCK?": Command(_M._cmd_read_block, (*_REGION, "v_read", "format"), optional=1),
    "VMM?": Command(_M._cmd_vmm, (*_REGION, "v_read", "n_vec")),
    # emulator only
    "SIM:ADV": Command(_M._cmd_sim_adv, ("dt_s",)),
    "SIM:TIME?": Command(_M._cmd_sim_time),
    "DIAG:PCOUN?": Command(_M._cmd_diag_pcount, _REGION),
    "DIAG:RX?": Command(_M._cmd_diag_rx),
}
del _M


# ---------------------------------------------------------------------- framing
class _Closed(Exception):
    """The connection ended: peer closed, link error, or the idle limit."""


@dataclass
class _Message:
    line: str
    block: bytes | None
    too_long: bool = False


_DELIMITER = re.compile(rb"[#\n]")


class _Framer:
    """Cuts one connection's byte stream into command lines (with their binary blocks).

    Memory is bounded: an ASCII line is kept only up to ``max_line_bytes`` (the rest is dropped
    as it arrives), a block only up to ``max_block_bytes`` (a larger one is skipped by its
    declared length).
    """

    def __init__(self, sock: socket.socket, max_line_bytes: int, max_block_bytes: int,
                 log_chars: int = DEFAULT_LOG_LINE_CHARS) -> None:
        self.sock = sock
        self.max_line_bytes = max_line_bytes
        self.max_block_bytes = max_block_bytes
        self.log_chars = log_chars
        self.buf = bytearray()
        self.deadline = 0.0

    def _fill(self) -> None:
        remaining_s = self.deadline - time.monotonic()
        if remaining_s <= 0:
            raise _Closed("idle")
        try:
            self.sock.settimeout(remaining_s)
            data = self.sock.recv(_RECV_BYTES)
        except OSError as exc:  # includes the timeout
            raise _Closed(str(exc)) from None
        if not data:
            raise _Closed("peer closed")
        self.buf += data

    def _need(self, n: int) -> None:
        while len(self.buf) < n:
            self._fill()

    def _skip(self, n: int) -> None:
        """Drop the next ``n`` bytes of the stream (arriving or not yet), storing none."""
        while n > 0:
            if not self.buf:
                self._fill()
            k = min(n, len(self.buf))
            del self.buf[:k]
            n -= k

    def _skip_line(self) -> None:
        """Drop everything up to and including the next newline."""
        while True:
            k = self.buf.find(b"\n")
            if k >= 0:
                del self.buf[:k + 1]
                return
            self.buf.clear()
            self._fill()

    def next(self, idle_timeout_s: float) -> _Message:
        """The next complete command; raises :class:`_Closed` when the connection ends or no
        complete command arrives within ``idle_timeout_s``."""
        self.deadline = time.monotonic() + idle_timeout_s
        kept: bytes | None = None  # the start of a line too long to keep
        dropped = 0                # bytes of that line dropped so far
        scan = 0
        while True:
            m = _DELIMITER.search(self.buf, scan)
            if m is None:
                if kept is None and len(self.buf) > self.max_line_bytes:
                    kept = bytes(self.buf[:self.log_chars])
                if kept is not None:
                    dropped += len(self.buf)
                    self.buf.clear()
                    scan = 0
                else:
                    scan = len(self.buf)
                self._fill()
                continue
            i = m.start()
            if kept is None and i > self.max_line_bytes:
                kept = bytes(self.buf[:self.log_chars])
            delimiter = self.buf[i:i + 1]
            if kept is None:
                raw = bytes(self.buf[:i])
            else:
                dropped += i
                raw = kept + f"...({dropped} bytes dropped)".encode()
            del self.buf[:i + 1]
            line = raw.decode(errors="replace")
            if delimiter == b"\n":
                return _Message(line.rstrip("\r"), None, kept is not None)
            return _Message(line.rstrip(", "), self._block(), kept is not None)

    def _block(self) -> bytes:
        """The block after a ``#`` (already consumed), through its line terminator."""
        self._need(1)
        n = self.buf[0] - 0x30
        if not 1 <= n <= 9:
            self._skip_line()
            return BAD_BLOCK
        self._need(1 + n)
        try:
            _, length = block_header_length(b"#" + bytes(self.buf[:1 + n]))
        except BlockError:
            self._skip_line()
            return BAD_BLOCK
        del self.buf[:1 + n]
        if length > self.max_block_bytes:
            self._skip(length)
            self._skip_line()
            return BIG_BLOCK
        self._need(length + 1)
        payload = bytes(self.buf[:length])
        del self.buf[:length]
        if self.buf[:1] == b"\n":
            del self.buf[:1]
            return payload
        if self.buf[:1] == b"\r":
            self._need(2)
            if self.buf[:2] == b"\r\n":
                del self.buf[:2]
                return payload
        self._skip_line()
        return BAD_BLOCK


# ---------------------------------------------------------------------- server
class _Handler(socketserver.BaseRequestHandler):
    """One connection: its own framer and error queue; commands run under the macro's lock."""

    def handle(self) -> None:
        server: EmulatorServer = self.server  # type: ignore[assignment]
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        framer = _Framer(sock, server.max_line_bytes, server.macro.max_block_bytes)
        errors = ErrorQueue(server.error_queue_size)
        while True:
            try:
                msg = framer.next(server.idle_timeout_s)
            except _Closed:
                return
            out = server._execute(msg, errors)
            if out is _DROP:
                return
            if out is None:
                continue
            try:
                sock.settimeout(server.idle_timeout_s)  # a client that never reads is dropped
                sock.sendall(out)
            except OSError:
                return


#: marks "drop the connection now"
_DROP = b"\x00drop"


class EmulatorServer(socketserver.ThreadingTCPServer):
    """The emulated instrument on a TCP socket, one thread per connection.

    Parameters
    ----------
    port : int
        TCP port; 0 picks a free one (see :attr:`port`).
    macro : EmulatedMacro, optional
        The instrument state (default a fresh one with ``seed``).
    faults : FaultConfig, optional
        Fault injection (default none).
    seed : int
        Seed of the default macro and of the fault draws.
    host : str
        Address to listen on; ``"127.0.0.1"`` (this machine only) by default.
    idle_timeout_s : float
        A connection with no complete command for this long is closed.
    max_line_bytes : int
        Longest ASCII command line kept; a longer one is discarded with ``-223``.
    max_connections : int
        Simultaneous connections; more are refused by closing them.
    error_queue_size : int
        Entries of each connection's error queue.
    """

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, port: int = 0, macro: EmulatedMacro | None = None,
                 faults: FaultConfig | None = None, seed: int = 0, host: str = DEFAULT_HOST,
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 error_queue_size: int = DEFAULT_ERROR_QUEUE_SIZE) -> None:
        if not 0 < idle_timeout_s <= 86400:
            raise ValueError(f"idle_timeout_s must be in (0, 86400] s, got {idle_timeout_s!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0-65535, got {port!r}")
        if int(max_line_bytes) < 64:
            raise ValueError(f"max_line_bytes must be >= 64, got {max_line_bytes!r}")
        if int(max_connections) < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        if int(error_queue_size) < 1:
            raise ValueError(f"error_queue_size must be >= 1, got {error_queue_size!r}")
        self.macro = macro or EmulatedMacro(seed=seed)
        self.faults = faults or FaultConfig()
        self.rng = np.random.default_rng([seed, 7])
        self.host = host
        self.idle_timeout_s = float(idle_timeout_s)
        self.max_line_bytes = int(max_line_bytes)
        self.max_connections = int(max_connections)
        self.error_queue_size = int(error_queue_size)
        #: connections refused because ``max_connections`` were open
        self.refused = 0
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    # ------------------------------------------------------------------ connections
    @property
    def connections(self) -> int:
        """Connections open now."""
        with self._open_lock:
            return len(self._open)

    def process_request(self, request, client_address) -> None:
        with self._open_lock:
            full = len(self._open) >= self.max_connections
            if full:
                self.refused += 1
            else:
                self._open.add(request)
        if full:
            self.shutdown_request(request)  # refused: closed at once
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    # ------------------------------------------------------------------ one command
    def _execute(self, msg: _Message, errors: ErrorQueue) -> bytes | None:
        """Run a command with its faults; returns the bytes to send, None, or :data:`_DROP`."""
        f = self.faults
        macro = self.macro
        header = header_of(msg.line)
        cmd = COMMANDS.get(header)
        fail = TOO_MUCH_DATA if msg.too_long or msg.block is BIG_BLOCK else None
        with macro.lock:
            if cmd is not None and cmd.pulse and fail is None:
                u_error, u_link = self.rng.random(), self.rng.random()
                if u_link < f.disconnect_rate / 2:  # link lost before the pulse ran
                    macro.receive(msg.line)
                    return _DROP
                reply = macro.handle(msg.line, msg.block, errors,
                                     DEVICE_ERROR if u_error < f.error_rate else None)
                if u_link < f.disconnect_rate:      # ... or after it ran
                    return _DROP
                return None if reply is None else reply + b"\n"
            reply = macro.handle(msg.line, msg.block, errors, fail)
            if reply is None:
                return None
            # each fault is drawn on its own: at 30 % of each, 34 % of replies arrive intact
            u_link, u_drop, u_garble = self.rng.random(3)
            k = int(self.rng.integers(0, max(1, len(reply))))
        if f.latency_s:
            time.sleep(f.latency_s)
        if u_link < f.disconnect_rate:
            return _DROP
        if u_drop < f.drop_rate:
            return None
        out = reply + b"\n"
        if u_garble < f.garble_rate and len(out) > 1:
            b = bytearray(out)
            b[k] ^= 0x5A
            out = bytes(b[: max(1, len(b) // 2)]) + b"\n"
        return out

    # ------------------------------------------------------------------ life cycle
    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def resource(self) -> str:
        """The VISA resource string of this server."""
        return f"TCPIP0::{self.server_address[0]}::{self.port}::SOCKET"

    def start(self) -> EmulatorServer:
        """Serve in a background thread (for tests and notebooks)."""
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the listening socket and every open connection."""
        self.shutdown()
        self.server_close()
        self.close_connections()

    def close_connections(self) -> None:
        """Break every open connection (their threads end)."""
        with self._open_lock:
            conns = list(self._open)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(port: int = 5025, seed: int = 0, faults: FaultConfig | None = None,
          wall_clock: bool = False, host: str = DEFAULT_HOST,
          idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
          max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
          max_connections: int = DEFAULT_MAX_CONNECTIONS,
          device: DeviceParams | None = None, adc: ADC | None = None) -> None:
    """Run the emulator in the foreground until interrupted.

    Parameters are those of :class:`EmulatorServer` (and ``wall_clock``, ``device`` and ``adc``
    of :class:`EmulatedMacro`).
    """
    macro = EmulatedMacro(seed=seed, wall_clock=wall_clock, device=device, adc=adc)
    server = EmulatorServer(port, macro, faults, seed,
                            host=host, idle_timeout_s=idle_timeout_s,
                            max_line_bytes=max_line_bytes, max_connections=max_connections)
    print(f"IMC40 emulator (protocol {PROTOCOL_VERSION}, seed {seed}) on {server.resource}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.close_connections()
