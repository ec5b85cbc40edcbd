"""The link to the controller: one VISA session, bounded retries, binary blocks, the error queue.

This layer knows the wire (hw/PROTOCOL.md) and nothing of pulses, regions or jobs:

- :meth:`Transport.query` / :meth:`Transport.query_block`: read-only exchanges, retried a bounded
  number of times over a fresh connection when the reply is lost, short or garbled (every reply
  is validated: the caller's parser, block length, terminator);
- :meth:`Transport.write`: a command that changes the instrument; never retried. When the link
  breaks while sending, :class:`LinkError` says the command may or may not have arrived;
- :meth:`Transport.pop_error`: one ``SYST:ERR?`` entry, with a flag saying whether an earlier
  attempt's reply was lost (``SYST:ERR?`` pops the queue, so a lost reply is a lost error);
- ``*CLS`` on every (re)connection, so that errors left by an earlier client are not blamed on
  this one's first command.

:attr:`Transport.recoveries` counts the exchanges that needed a retry or a reconnection: a caller
compares it before and after a sequence of exchanges to know whether every reply of the sequence
came through the first time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np

from hw.protocol import BlockError, block_header_length, decode_array, encode_block

__all__ = ["Transport", "InstrumentError", "LinkError", "parse_error", "check_resource"]


class InstrumentError(RuntimeError):
    """The instrument reported an error (from its SYST:ERR? queue)."""

    def __init__(self, code: int, message: str, command: str) -> None:
        super().__init__(f"instrument error {code} ({message}) after {command!r}")
        self.code, self.message, self.command = code, message, command


class LinkError(RuntimeError):
    """No usable reply after the allowed retries, or the link broke during a write."""


def parse_error(reply: str) -> tuple[int, str]:
    """``<code>,"<message>"`` -> (code, message); ValueError on anything else."""
    code, _, msg = reply.partition(",")
    if len(msg) < 2 or not msg.startswith('"') or not msg.endswith('"'):
        raise ValueError(f"garbled SYST:ERR? reply {reply!r}")
    return int(code), json.loads(msg) if msg.count('"') == 2 else msg.strip('"')


def check_resource(resource) -> str:
    """A VISA resource string, parsed: ValueError naming it when it is not one."""
    from pyvisa import rname

    if not isinstance(resource, str):
        raise ValueError(f"VISA resource must be a string, got {resource!r}")
    try:
        parsed = rname.parse_resource_name(resource)
    except rname.InvalidResourceName as exc:
        raise ValueError(f"invalid VISA resource {resource!r}: {exc}") from None
    port = getattr(parsed, "port", None)
    if port is not None and not (str(port).isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"invalid VISA resource {resource!r}: port {port} is not in "
                         "1-65535")
    return resource


def _link_errors():
    import pyvisa

    return (pyvisa.errors.VisaIOError, BlockError, ValueError, ConnectionError, OSError,
            UnicodeDecodeError, EOFError)


class Transport:
    """One VISA session to the controller.

    Parameters
    ----------
    resource : str
        VISA resource string.
    timeout_ms : int
        Time allowed for each reply, in ms (> 0).
    retries : int
        Extra attempts of a read-only query (>= 0).
    backend : str
        PyVISA backend: ``"@py"`` (pyvisa-py) or a pyvisa-sim description ``"file.yaml@sim"``.
    """

    def __init__(self, resource: str, timeout_ms: int = 5000, retries: int = 3,
                 backend: str = "@py") -> None:
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, np.integer)) \
                or timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be a positive integer, got {timeout_ms!r}")
        if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        self.resource = check_resource(resource)
        self.timeout_ms = int(timeout_ms)
        self.retries = int(retries)
        self.backend = backend
        self.recoveries = 0
        self._rm = None
        self._inst = None

    # ------------------------------------------------------------------ connection
    @property
    def is_open(self) -> bool:
        return self._inst is not None

    def open(self) -> Transport:
        import pyvisa

        if self._rm is None:
            try:
                self._rm = pyvisa.ResourceManager(self.backend)
            except (OSError, ValueError) as exc:
                raise LinkError(f"VISA backend {self.backend!r}: {exc}") from exc
        self._connect()
        return self

    def _connect(self) -> None:
        import pyvisa

        try:
            self._inst = self._rm.open_resource(self.resource, read_termination="\n",
                                                write_termination="\n", timeout=self.timeout_ms)
            if self.resource.upper().startswith("TCPIP"):
                _set_nodelay(self._rm, self._inst, pyvisa)
            # errors queued by an earlier client (or before a reconnection) are not ours
            self._inst.write("*CLS")
        except Exception as exc:  # noqa: BLE001 - pyvisa-py raises bare Exception on connect
            self._drop()
            raise LinkError(f"cannot connect to {self.resource}: {exc}") from exc

    def _drop(self) -> None:
        try:
            if self._inst is not None:
                self._inst.close()
        except Exception:  # noqa: BLE001 - the link is already broken
            pass
        self._inst = None

    def reconnect(self) -> None:
        self._drop()
        self._connect()

    def close(self) -> None:
        # only this session: pyvisa's resource managers of one backend share their library,
        # and closing one would invalidate the sessions of another Macro in this process
        self._drop()
        self._rm = None

    # ------------------------------------------------------------------ exchanges
    def _attempts(self, what: str, fn: Callable, retries: int | None = None):
        """Run a read-only exchange, retrying over a fresh connection on failure."""
        errors = _link_errors()
        retries = self.retries if retries is None else retries
        last = None
        for attempt in range(retries + 1):
            try:
                if self._inst is None:
                    self._connect()
                return fn()
            except (LinkError, *errors) as exc:
                last = exc
                self.recoveries += 1
                if attempt < retries:
                    time.sleep(0.02 * (attempt + 1))
                    try:
                        self.reconnect()
                    except LinkError as exc2:
                        last = exc2
        # a reply may still arrive late on this link: never read it as the next one's
        self._drop()
        raise LinkError(f"{what}: no valid reply after {retries + 1} attempts ({last})")

    def _with_timeout(self, timeout_ms: int | None, fn: Callable):
        if timeout_ms is None or self._inst is None:
            return fn()
        old = self._inst.timeout
        self._inst.timeout = int(timeout_ms)
        try:
            return fn()
        finally:
            if self._inst is not None:
                self._inst.timeout = old

    def query(self, command: str, parse: Callable[[str], object] = str,
              timeout_ms: int | None = None):
        """A read-only ASCII query with bounded retries; ``parse`` validates the reply."""

        def once():
            self._inst.write(command)
            return parse(self._inst.read())

        return self._attempts(command, lambda: self._with_timeout(timeout_ms, once))

    def query_block(self, command: str, dtype, shape, payload: bytes | None = None,
                    timeout_ms: int | None = None, retries: int | None = None) -> np.ndarray:
        """A read-only query answered by a binary block (validated length and terminator)."""

        def once():
            if payload is None:
                self._inst.write(command)
            else:
                self._inst.write_raw(command.encode() + b"," + encode_block(payload) + b"\n")
            return decode_array(self._read_block(), dtype, shape)

        return self._attempts(command.split(" ")[0],
                              lambda: self._with_timeout(timeout_ms, once), retries)

    def _read_block(self) -> bytes:
        head = self._inst.read_bytes(2)
        if head[:1] != b"#" or not head[1:2].isdigit():
            raise BlockError(f"expected a binary block, got {head!r}")
        digits = self._inst.read_bytes(int(head[1:2]))
        _, length = block_header_length(head + digits)
        payload = self._inst.read_bytes(length) if length else b""
        term = self._inst.read_bytes(1)
        if term != b"\n":
            raise BlockError(f"block not terminated by a newline (got {term!r})")
        return payload

    def write(self, command: str) -> None:
        """Send a command that changes the instrument, once.

        Raises
        ------
        LinkError
            The link broke while sending: the command may or may not have arrived.
        """
        try:
            if self._inst is None:
                self._connect()
            self._inst.write(command)
        except (LinkError, *_link_errors()) as exc:
            self.recoveries += 1
            self._drop()
            raise LinkError(f"link broke while sending {command!r}: {exc}; the command may or "
                            "may not have run") from exc

    def pop_error(self) -> tuple[int, str, bool]:
        """The oldest entry of the error queue: ``(code, message, reliable)``.

        ``reliable`` is False when an earlier attempt's reply was lost: that attempt popped an
        entry nobody saw, so "No error" then proves nothing.
        """
        before = self.recoveries
        code, message = self.query("SYST:ERR?", parse_error)
        return code, message, self.recoveries == before


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
