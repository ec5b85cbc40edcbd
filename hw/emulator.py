"""An emulated IMC40 controller: a real TCP server speaking hw/PROTOCOL.md over lsm.crossbar.

The same driver code talks to it and to the chip. Clients are served one after the other. The
array physics is :class:`lsm.crossbar.CrossbarArray` (stochastic forming, read noise, drift with
simulated or wall-clock time, stuck cells) with the macro's 14-bit readout. Faults can be
injected: reply latency, dropped replies, garbled replies, disconnects, instrument errors.
Everything random (array and faults) follows the seed.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from dataclasses import dataclass

import numpy as np

from hw.protocol import PROTOCOL_VERSION, BlockError, block_header_length, encode_block
from lsm.crossbar import CrossbarArray, DeviceParams, InputDAC, Pulse, Readout

__all__ = ["Faults", "EmulatedMacro", "EmulatorServer", "serve"]

LIMITS = {"amp_v": 5.0, "width_ns": (1.0, 1e6), "comp_ua": (1.0, 1000.0),
          "v_read": (0.01, 0.5), "n_vec": 4096}


@dataclass
class Faults:
    """Fault injection (rates are per reply, or per write for ``error_rate``)."""

    latency_s: float = 0.0
    drop_rate: float = 0.0
    garble_rate: float = 0.0
    disconnect_rate: float = 0.0
    error_rate: float = 0.0


#: marks a command line whose binary block was malformed
BAD_BLOCK = b"\x00malformed"


class CommandError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class EmulatedMacro:
    """Instrument state and command semantics (no I/O)."""

    def __init__(self, rows: int = 512, cols: int = 512, device: DeviceParams | None = None,
                 seed: int = 0, wall_clock: bool = False, serial: str = "EMU-0") -> None:
        t0 = time.monotonic()
        self.array = CrossbarArray(rows, cols, device, seed=seed,
                                   clock=(lambda: time.monotonic() - t0) if wall_clock else None)
        self.readout = Readout()
        self.errors: list[tuple[int, str]] = []
        self.pulse_counts = np.zeros((rows, cols), dtype=np.uint32)
        self.vout = 0.0
        self.rx = 0
        self.log: list[str] = []
        self.serial = serial
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
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
        self.vout = 0.0

    # ------------------------------------------------------------------ dispatch
    def handle(self, line: str, block: bytes | None) -> bytes | None:
        """Execute one command; returns the reply (without terminator) or None."""
        self.rx += 1
        self.log.append(line)
        head, _, rest = line.strip().partition(" ")
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        cmd = head.upper()
        try:
            return self._dispatch(cmd, args, block)
        except CommandError as exc:
            self.errors.append((exc.code, exc.message))
            return b"" if cmd.endswith("?") else None

    def _dispatch(self, cmd, args, block):
        rows, cols = self.array.shape
        if cmd == "*IDN?":
            return f"RRAM-LAB,IMC40-512,{self.serial},PROTO {PROTOCOL_VERSION}".encode()
        if cmd == "*RST":
            self.errors.clear()
            self.vout = 0.0
            return None
        if cmd == "*OPC?":
            return b"1"
        if cmd == "SYST:ERR?":
            if self.errors:
                code, msg = self.errors.pop(0)
                return f'{code},"{msg}"'.encode()
            return b'0,"No error"'
        if cmd == "SYST:VERS?":
            return PROTOCOL_VERSION.encode()
        if cmd == "GEOM?":
            return f"{rows},{cols}".encode()
        if cmd == "STAT?":
            return f"IDLE,{self.vout:.3f},{self.array.pulse_count}".encode()
        if cmd == "OUTP:VOLT?":
            return f"{self.vout:.3f}".encode()
        if cmd == "ABOR":
            self.vout = 0.0
            return None
        if cmd == "PULS:FORM":
            self._pulse("form", args)
            return None
        if cmd == "PULS:SET":
            self._pulse("set", args)
            return None
        if cmd == "PULS:RES":
            self._pulse("reset", args)
            return None
        if cmd == "READ?":
            try:
                r, c = int(args[0]), int(args[1])
            except (ValueError, IndexError):
                raise CommandError(-109, "Missing parameter") from None
            if not (0 <= r < rows and 0 <= c < cols):
                raise CommandError(-222, "Data out of range")
            v = self._float(args, 2, *LIMITS["v_read"])
            return repr(float(self.array.read(np.array([r]), np.array([c]), v)[0])).encode()
        if cmd == "READ:BLOCK?":
            r0, r1, c0, c1 = self._region(args)
            v = self._float(args, 4, *LIMITS["v_read"])
            fmt = args[5].upper() if len(args) > 5 else "G"
            rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
            g = self.array.read(rr.ravel(), cc.ravel(), v)
            if fmt == "G":
                return encode_block(g.astype("<f4").tobytes())
            if fmt == "CODE":
                return encode_block(self.readout.codes(g * v).astype("<u2").tobytes())
            raise CommandError(-222, "Data out of range")
        if cmd == "VMM?":
            r0, r1, c0, c1 = self._region(args)
            v = self._float(args, 4, *LIMITS["v_read"])
            try:
                n = int(args[5])
            except (ValueError, IndexError):
                raise CommandError(-109, "Missing parameter") from None
            if not 1 <= n <= LIMITS["n_vec"]:
                raise CommandError(-222, "Data out of range")
            if block is None or block is BAD_BLOCK or len(block) != n * (r1 - r0):
                raise CommandError(-160, "Block data error")
            x = np.frombuffer(block, dtype=np.uint8).reshape(n, r1 - r0)
            if x.max(initial=0) > 1:
                raise CommandError(-222, "Data out of range")
            codes = self.array.vmm(np.arange(r0, r1), np.arange(c0, c1), x,
                                   dac=InputDAC(v), readout=self.readout)
            return encode_block(codes.astype("<u2").tobytes())
        if cmd == "ADC?":
            r = self.readout
            return f"{r.bits},{r.r_tia_kohm!r},{r.v_min!r},{r.v_max!r}".encode()
        if cmd == "SIM:ADV":
            dt = self._float(args, 0, 0.0, 1e12)
            self.array.advance(dt)
            return None
        if cmd == "SIM:TIME?":
            return repr(self.array.now_s).encode()
        if cmd == "DIAG:PCOUN?":
            r0, r1, c0, c1 = self._region(args)
            return encode_block(self.pulse_counts[r0:r1, c0:c1].astype("<u4").tobytes())
        if cmd == "DIAG:RX?":
            return str(self.rx).encode()
        raise CommandError(-113, "Undefined header")


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:  # one client
        server: EmulatorServer = self.server  # type: ignore[assignment]
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = self.rfile
        while True:
            try:
                msg = _read_message(rfile)
            except (ConnectionError, OSError):
                return
            if msg is None:
                return
            line, block = msg
            f = server.faults
            with server.macro.lock:
                if line.strip().upper().startswith("PULS") and server.rng.random() < f.error_rate:
                    # an injected instrument error: the pulse is not applied
                    server.macro.rx += 1
                    server.macro.log.append(line)
                    server.macro.errors.append((-300, "Device-specific error"))
                    continue
                reply = server.macro.handle(line, block)
            if reply is None:
                continue
            if f.latency_s:
                time.sleep(f.latency_s)
            u = server.rng.random()
            if u < f.disconnect_rate:
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            u -= f.disconnect_rate
            if u < f.drop_rate:
                continue
            u -= f.drop_rate
            out = reply + b"\n"
            if u < f.garble_rate and len(out) > 1:
                b = bytearray(out)
                k = int(server.rng.integers(0, max(1, len(b) - 1)))
                b[k] ^= 0x5A
                out = bytes(b[: max(1, len(b) // 2)]) + b"\n"
            try:
                self.wfile.write(out)
                self.wfile.flush()
            except OSError:
                return


def _read_message(rfile) -> tuple[str, bytes | None] | None:
    """One command line, with its binary block when the line carries one (``#`` argument)."""
    buf = bytearray()
    while True:
        ch = rfile.read(1)
        if not ch:
            return None
        if ch == b"#":
            head = b"#" + rfile.read(1)
            try:
                n = int(head[1:2]) if head[1:2].isdigit() else -1
                digits = rfile.read(n) if n > 0 else b""
                hlen, length = block_header_length(head + digits)
            except BlockError:
                rfile.readline()  # drop the rest of the malformed line
                return buf.decode(errors="replace").rstrip(", "), BAD_BLOCK
            payload = rfile.read(length)
            rest = rfile.readline()
            if len(payload) != length or rest not in (b"\n", b"\r\n"):
                return buf.decode(errors="replace").rstrip(", "), BAD_BLOCK
            return buf.decode(errors="replace").rstrip(", "), payload
        if ch == b"\n":
            return buf.decode(errors="replace").rstrip("\r"), None
        buf += ch


class EmulatorServer(socketserver.TCPServer):
    """A TCP server on 127.0.0.1 serving one client at a time."""

    allow_reuse_address = True

    def __init__(self, port: int = 0, macro: EmulatedMacro | None = None,
                 faults: Faults | None = None, seed: int = 0) -> None:
        self.macro = macro or EmulatedMacro(seed=seed)
        self.faults = faults or Faults()
        self.rng = np.random.default_rng([seed, 7])
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def resource(self) -> str:
        return f"TCPIP0::127.0.0.1::{self.port}::SOCKET"

    def start(self) -> EmulatorServer:
        """Serve in a background thread (for tests and notebooks)."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def serve(port: int = 5025, seed: int = 0, faults: Faults | None = None,
          wall_clock: bool = False) -> None:
    """Run the emulator in the foreground until interrupted."""
    server = EmulatorServer(port, EmulatedMacro(seed=seed, wall_clock=wall_clock), faults, seed)
    print(f"IMC40 emulator (protocol {PROTOCOL_VERSION}, seed {seed}) on {server.resource}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
