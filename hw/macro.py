"""hw.Macro: the typed commands of the IMC40 RRAM macro (or of its emulator), over a
:class:`hw.transport.Transport`.

Safety: every pulse, read voltage, region and batch size is checked against the lab's limits
(:class:`hw.limits.Limits`) before anything is sent. Leaving the context manager, normally, by an
exception or by Ctrl-C, aborts and brings the outputs to 0 V (and checks that they are); when
that fails after another error, both are reported, the first one first.

Verified pulsing: a pulse is never re-sent blindly and never reported applied on faith. Before a
pulse the driver reads the instrument's pulse counter (``PULS:COUN?``, protocol >= 1.1) and
records the pulse as *pending* in the journal; afterwards it asks the instrument what happened,
whatever happened to the link or to the ``SYST:ERR?`` reply in between. A FORM pulse is decided
by reading its cells back (a formed cell reads above the lab's ``formed_threshold_us``, a virgin
one far below); the counter (+1: it ran, +0: it did not) tells stuck cells from cells the pulse
never reached, and decides SET / RESET. Without the counter, SET / RESET are resolved by the error
queue, trusted only when its reply came through the first time. What cannot be resolved is
reported as ``unresolved``, never as done. See :class:`PulseOutcome`.

Resumable jobs (``program_random``) live in :mod:`hw.jobs`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from hw.journal import Journal
from hw.limits import Limits
from hw.protocol import check_version, format_args, parse_idn
from hw.transport import InstrumentError, LinkError, Transport

__all__ = ["Macro", "InstrumentError", "LinkError", "SafeStateError", "PulseOutcome",
           "DEFAULT_RESOURCE", "PULSE_HEADERS", "check_spike_inputs", "column_offsets",
           "COUNTER_SINCE"]

DEFAULT_RESOURCE = "TCPIP0::127.0.0.1::5025::SOCKET"

#: SCPI header of each pulse kind.
PULSE_HEADERS = {"form": "PULS:FORM", "set": "PULS:SET", "reset": "PULS:RES"}

#: Protocol version from which the instrument has the ``PULS:COUN?`` pulse counter.
COUNTER_SINCE = (1, 1)


class SafeStateError(LinkError):
    """The instrument could not be brought to a safe state (possibly after another error,
    which is reported first)."""


@dataclass(frozen=True)
class PulseOutcome:
    """What became of one pulse command.

    Attributes
    ----------
    status : str
        ``ok`` (sent, every reply came through, and the instrument confirms it ran), ``failed``
        (the instrument refused it: ``error`` says why), ``verified-applied`` /
        ``verified-not-applied`` (the link failed somewhere, and the instrument was asked what
        happened), ``unresolved`` (nobody can tell: the command may or may not have run).
    applied : bool or None
        Whether the pulse ran; None when unresolved.
    how : str
        What decided: ``counter``, ``read-back``, ``error-queue`` or ``none``.
    error : tuple or None
        ``(code, message)`` the instrument reported, if any.
    unformed : tuple of int
        FORM: column offsets (within the region's row) of cells still virgin although others
        formed, when nothing says the pulse reached them (they are to be pulsed).
    counter : tuple of int
        ``PULS:COUN?`` before and after, when read.
    stuck : tuple of int
        FORM: column offsets of cells that did not form although the counter says the pulse
        ran (stuck cells: not to be pulsed again).
    """

    status: str
    applied: bool | None
    how: str
    error: tuple | None = None
    unformed: tuple = field(default=())
    counter: tuple = field(default=())
    stuck: tuple = field(default=())

    def as_dict(self) -> dict:
        return {"applied": self.applied, "how": self.how, "error": self.error,
                "unformed": list(self.unformed), "counter": list(self.counter),
                "stuck": list(self.stuck)}


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
        VISA timeout per reply, ms.
    retries : int
        Extra attempts for read-only queries.
    backend : str
        PyVISA backend, ``"@py"`` (pyvisa-py) by default.
    use_counter : bool or None
        Resolve pulses with the instrument's ``PULS:COUN?``: None (default) when its protocol
        version has it, False to resolve by read-back and error queue only (as for an older
        instrument).
    vmm_batch : int
        Input vectors per ``VMM?`` call (at most the limits' ``max_vectors``).
    vmm_us_per_cell : float
        Expected multiply time per input vector and cell, us; the reply timeout of a ``VMM?``
        call is ``timeout_ms`` plus this times the work of the call.
    safe_state_timeout_ms : int
        How long the safe-state step waits for the outputs' reading (an instrument may still be
        busy with a command whose reply timed out).
    """

    def __init__(self, resource: str = DEFAULT_RESOURCE, limits=None, journal=None,
                 timeout_ms: int = 5000, retries: int = 3, backend: str = "@py",
                 use_counter: bool | None = None, vmm_batch: int = 512,
                 vmm_us_per_cell: float = 0.05, safe_state_timeout_ms: int = 10000) -> None:
        self.resource_name = resource
        self.limits = (limits if isinstance(limits, Limits) else
                       Limits.load(limits) if limits is not None else Limits())
        self.journal = (journal if isinstance(journal, Journal) or journal is None
                        else Journal(journal))
        self.transport = Transport(resource, timeout_ms, retries, backend)
        if isinstance(vmm_batch, bool) or not isinstance(vmm_batch, int) or vmm_batch < 1:
            raise ValueError(f"vmm_batch must be a positive integer, got {vmm_batch!r}")
        if not vmm_us_per_cell >= 0:
            raise ValueError(f"vmm_us_per_cell must be >= 0, got {vmm_us_per_cell!r}")
        self.vmm_batch = vmm_batch
        self.vmm_us_per_cell = float(vmm_us_per_cell)
        self.safe_state_timeout_ms = int(safe_state_timeout_ms)
        self._use_counter = use_counter
        self._counter_floor: int | None = None
        self.has_counter = False
        self.idn: dict | None = None
        self.geometry: tuple[int, int] | None = None

    @property
    def timeout_ms(self) -> int:
        return self.transport.timeout_ms

    @property
    def instrument(self) -> str | None:
        """``model serial`` of the instrument, as the journal records it."""
        return None if self.idn is None else f"{self.idn['model']} {self.idn['serial']}"

    # ------------------------------------------------------------------ connection
    def open(self) -> Macro:
        self.transport.open()
        self.identify()
        self.geometry = self.query("GEOM?", _parse_geometry)
        version = tuple(int(v) for v in self.idn["protocol"].split(".")[:2])
        self.has_counter = (version >= COUNTER_SINCE if self._use_counter is None
                            else bool(self._use_counter) and version >= COUNTER_SINCE)
        return self

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Macro:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.safe_state(reason=None if exc_type is None else exc_type.__name__)
        except (LinkError, InstrumentError) as safe_exc:
            if exc is None:
                raise
            raise SafeStateError(f"{exc_type.__name__}: {exc}; and then {safe_exc}") from exc
        finally:
            self.close()

    def safe_state(self, reason: str | None = None) -> float:
        """ABOR and outputs to 0 V; returns the output voltage read back (0.0)."""
        try:
            self.transport.write("ABOR")
            # an instrument still busy (a long multiply whose reply timed out) answers late
            v = self.query("OUTP:VOLT?", float,
                           timeout_ms=max(self.timeout_ms, self.safe_state_timeout_ms))
        except LinkError as exc:
            self._record("ABOR", {"reason": reason}, str(exc), "error")
            raise SafeStateError(f"could not bring the instrument to a safe state: {exc}") \
                from exc
        self._record("ABOR", {"reason": reason}, {"vout": v}, "ok" if v == 0 else "error")
        if v != 0:
            raise InstrumentError(-300, f"outputs at {v} V after ABOR", "ABOR")
        return v

    # ------------------------------------------------------------------ low level
    def _record(self, command, params, result, status, job_id=None, chunk=None) -> None:
        if self.journal is not None:
            self.journal.record(command, params, result, status, self.instrument, job_id, chunk)

    def query(self, command: str, parse=str, timeout_ms: int | None = None):
        """A read-only ASCII query with bounded retries; ``parse`` validates the reply."""
        return self.transport.query(command, parse, timeout_ms)

    def query_block(self, command: str, dtype, shape, payload: bytes | None = None,
                    timeout_ms: int | None = None) -> np.ndarray:
        """A read-only query answered by a binary block (validated length and terminator)."""
        return self.transport.query_block(command, dtype, shape, payload, timeout_ms)

    def check_errors(self, command: str) -> None:
        """Read the error queue; raise the first error. A lost reply (the entry it popped is
        gone) is a :class:`LinkError`: the command's outcome is then unknown."""
        code, message, reliable = self.transport.pop_error()
        if code != 0:
            raise InstrumentError(code, message, command)
        if not reliable:
            raise LinkError(f"the error queue's reply was lost after {command!r}: whether it "
                            "succeeded is unknown")

    def _write_checked(self, command: str, params=None) -> None:
        """Send a command that changes the instrument (not a pulse): never retried, errors
        checked."""
        head = command.split(" ")[0]
        try:
            self.transport.write(command)
            self.check_errors(command)
        except (InstrumentError, LinkError) as exc:
            self._record(head, params, str(exc), "error")
            raise
        self._record(head, params, None, "ok")

    # ------------------------------------------------------------------ identity
    def identify(self) -> dict:
        """``*IDN?`` parsed; refuses another major protocol version."""
        self.idn = self.query("*IDN?", parse_idn)
        check_version(self.idn["protocol"])
        return self.idn

    def _region(self, region) -> tuple[int, int, int, int]:
        if hasattr(region, "row_start"):
            region = (region.row_start, region.row_stop, region.col_start, region.col_stop)
        try:
            values = tuple(region)
        except TypeError:
            raise ValueError(f"region must be (r0, r1, c0, c1), got {region!r}") from None
        if len(values) != 4 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                   for v in values):
            raise ValueError(f"region must be four integers (r0, r1, c0, c1), got {region!r}")
        r0, r1, c0, c1 = (int(v) for v in values)
        if self.geometry and not (0 <= r0 < r1 <= self.geometry[0]
                                  and 0 <= c0 < c1 <= self.geometry[1]):
            raise ValueError(f"region rows {r0}:{r1}, cols {c0}:{c1} is outside the "
                             f"{self.geometry[0]} x {self.geometry[1]} array")
        self.limits.check_region(r0, r1, c0, c1)
        return r0, r1, c0, c1

    # ------------------------------------------------------------------ pulses
    def pulse_counter(self) -> int | None:
        """The instrument's count of applied pulse commands (``PULS:COUN?``), or None when it
        has none.

        The count never decreases, so a reading below the last one of this session is a
        corrupted reply and is read again. When every attempt reads low (the instrument was
        power-cycled, or the link keeps corrupting replies), the counter is not used for the
        rest of the session and pulses are resolved by reading the cells back.
        """
        if not self.has_counter:
            return None
        floor = self._counter_floor or 0
        low = []

        def parse(reply):
            n = _parse_count(reply)
            if n < floor:
                low.append(n)
                raise ValueError(f"PULS:COUN? read {n}, below the last count {floor}")
            return n

        try:
            n = self.query("PULS:COUN?", parse)
        except LinkError as exc:
            if len(low) < self.transport.retries + 1:
                raise
            self.has_counter = False
            self._record("PULS:COUN?", None, f"not used from now on: {exc}", "error")
            return None
        self._counter_floor = n
        return n

    def check_pulse(self, region, pulse) -> tuple[int, int, int, int]:
        """Validate a pulse against the array and the lab limits; returns the region."""
        box = self._region(region)
        self.limits.check_pulse(pulse.amplitude_v, pulse.width_ns, pulse.compliance_ua)
        return box

    def send_pulse(self, region, pulse, job_id: str | None = None,
                   chunk: int | None = None, extra: dict | None = None) -> PulseOutcome:
        """Send one pulse, recorded write-ahead, and resolve what became of it.

        Never raises for the instrument's refusal or a broken link once the pulse is on its
        way: the outcome says so (``failed`` / ``unresolved`` ...). Raises LimitError before
        anything is sent, and LinkError when the link is down before the pulse is sent.
        ``extra`` is recorded with the pulse's parameters (a job's round, say).
        """
        r0, r1, c0, c1 = box = self.check_pulse(region, pulse)
        args = [r0, r1, c0, c1, float(pulse.amplitude_v), float(pulse.width_ns)]
        if pulse.kind != "reset":
            args.append(float(pulse.compliance_ua))
        head = PULSE_HEADERS[pulse.kind]
        n0 = self.pulse_counter()
        params = {"region": list(box), "kind": pulse.kind,
                  "amplitude_v": float(pulse.amplitude_v), "width_ns": float(pulse.width_ns),
                  "compliance_ua": float(pulse.compliance_ua), "counter_before": n0,
                  **(extra or {})}
        op = (None if self.journal is None else
              self.journal.begin(head, params, self.instrument, job_id, chunk))
        before = self.transport.recoveries
        try:
            self.transport.write(f"{head} {format_args(*args)}")
            acked = True
        except LinkError:
            acked = False
        outcome = self.resolve_pulse(pulse.kind, box, n0, clean=acked, since=before)
        if op is not None:
            self.journal.settle(op, outcome.status, outcome.as_dict())
        return outcome

    def resolve_pulse(self, kind: str, region, counter_before: int | None,
                      clean: bool = False, since: int | None = None,
                      pulses_since: int = 0) -> PulseOutcome:
        """Find out whether a pulse ran.

        Parameters
        ----------
        kind : {"form", "set", "reset"}
        region : (r0, r1, c0, c1)
        counter_before : int or None
            ``PULS:COUN?`` read before the pulse was sent (None: not known).
        clean : bool
            The command went out without a link error (and, with ``since``, no reply was lost
            since then): a refusal is then ``failed``, a success ``ok``.
        since : int, optional
            :attr:`Transport.recoveries` when the pulse was sent.
        pulses_since : int
            Pulses known to have been applied since this one (a resumed job's later records).
        """
        tr = self.transport
        since = tr.recoveries if since is None else since
        applied, how, error, unformed, stuck, counter = None, "none", None, (), (), ()
        try:
            d = None
            if counter_before is not None and self.has_counter:
                n1 = self.pulse_counter()
                counter = (counter_before, n1)
                d = None if n1 is None else n1 - counter_before - pulses_since
                if d not in (0, 1):
                    d = None  # another client pulsed, or the instrument was reset
            if kind == "form":
                # a formed cell reads high, a virgin one far below: the cells decide (the
                # counter is instrument-wide, so its +1 may be another client's pulse)
                formed = self.formed_mask(region)
                how = "read-back"
                if formed.all():
                    applied = True
                elif not formed.any():
                    applied = False
                elif d == 1:  # it ran, and these cells did not form: stuck, not to be pulsed
                    applied, stuck, how = True, column_offsets(~formed), "counter+read-back"
                elif formed.shape[0] == 1:  # part of the row formed: pulse the rest
                    applied, unformed = True, column_offsets(~formed)
            elif d is not None:
                applied, how = d == 1, "counter"
            elif clean and counter_before is None:
                code, message, reliable = tr.pop_error()
                if reliable:
                    applied, how = code == 0, "error-queue"
                    error = None if code == 0 else (code, message)
            if applied is False and clean and error is None:
                code, message, _ = tr.pop_error()  # why it did not run (best effort)
                error = None if code == 0 else (code, message)
        except LinkError:
            applied = None
        clean = clean and tr.recoveries == since
        if applied is None:
            status = "unresolved"
        elif applied:
            status = "ok" if clean else "verified-applied"
        else:
            status = "failed" if clean and error is not None else "verified-not-applied"
        return PulseOutcome(status, applied, how, error, unformed, counter, stuck)

    def formed_mask(self, region) -> np.ndarray:
        """Which cells of ``region`` read as formed (above ``formed_threshold_us``)."""
        return self.read_map(region) >= self.limits.formed_threshold_us

    def pulse(self, region, pulse, job_id=None, chunk=None) -> PulseOutcome:
        """One FORM / SET / RESET pulse on every cell of ``region`` (limits checked first).

        Returns the :class:`PulseOutcome` when the pulse ran. Raises
        :class:`InstrumentError` when the instrument refused it, and :class:`LinkError` when it
        did not run or nobody can tell whether it ran (never re-sent here).
        """
        out = self.send_pulse(region, pulse, job_id, chunk)
        if out.applied:
            return out
        if out.status == "failed":
            raise InstrumentError(out.error[0], out.error[1], PULSE_HEADERS[pulse.kind])
        if out.applied is False:
            raise LinkError(f"{PULSE_HEADERS[pulse.kind]} on {list(self._region(region))} did "
                            f"not run (verified by {out.how}); the link failed")
        raise LinkError(f"{PULSE_HEADERS[pulse.kind]} on {list(self._region(region))}: "
                        "whether it ran could not be resolved")

    def program_random(self, region, pulse=None, job_id: str | None = None,
                       progress: bool = True, on_chunk=None, max_attempts: int = 3) -> str:
        """Form ``region`` into the random state, one row per command, resumable and verified:
        see :func:`hw.jobs.program_random`."""
        from hw.jobs import program_random

        return program_random(self, region, pulse, job_id=job_id, progress=progress,
                              on_chunk=on_chunk, max_attempts=max_attempts)

    # ------------------------------------------------------------------ reads
    def read_map(self, region, repeats: int = 1, v_read: float = 0.2) -> np.ndarray:
        """Conductance map (uS) of ``region``, averaged over ``repeats`` reads."""
        r0, r1, c0, c1 = self._region(region)
        self.limits.check_read(v_read)
        if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) \
                or repeats < 1:
            raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
        shape = (r1 - r0, c1 - c0)
        acc = np.zeros(shape)
        for _ in range(repeats):
            cmd = f"READ:BLOCK? {format_args(r0, r1, c0, c1, float(v_read), 'G')}"
            g = self.query_block(cmd, "<f4", shape)
            acc += g
            self._record("READ:BLOCK?", {"region": [r0, r1, c0, c1], "v_read": v_read},
                         {"mean_us": float(g.mean())}, "ok")
        return acc / repeats

    def vmm(self, rows, cols, inputs: np.ndarray, v_read: float = 0.2) -> np.ndarray:
        """ADC codes (n, n_cols) of binary ``inputs`` (n, n_rows) driven on rows ``rows``
        (a (start, stop) pair) and read on columns ``cols`` (a (start, stop) pair).

        Sent in calls of at most ``vmm_batch`` vectors, each with a reply timeout scaled to
        its work (see ``vmm_us_per_cell``)."""
        r0, r1 = int(rows[0]), int(rows[1])
        c0, c1 = int(cols[0]), int(cols[1])
        self._region((r0, r1, c0, c1))
        self.limits.check_read(v_read)
        x = check_spike_inputs(inputs, r1 - r0)
        out = np.empty((len(x), c1 - c0), dtype=np.int64)
        step = min(self.vmm_batch, self.limits.max_vectors)
        for lo in range(0, len(x), step):
            chunk = np.ascontiguousarray(x[lo:lo + step], dtype=np.uint8)
            self.limits.check_vectors(len(chunk))
            cmd = f"VMM? {format_args(r0, r1, c0, c1, float(v_read), len(chunk))}"
            work_ms = self.vmm_us_per_cell * len(chunk) * (r1 - r0) * (c1 - c0) / 1000.0
            out[lo:lo + len(chunk)] = self.query_block(
                cmd, "<u2", (len(chunk), c1 - c0), payload=chunk.tobytes(),
                timeout_ms=int(self.timeout_ms + work_ms))
        self._record("VMM?", {"rows": [r0, r1], "cols": [c0, c1], "vectors": len(x)}, None,
                     "ok")
        return out

    @property
    def emulated(self) -> bool:
        """Whether the instrument is the emulator (its serial starts with ``EMU``): its time
        is a simulated clock."""
        return bool(self.idn and self.idn["serial"].startswith("EMU"))

    def clock_s(self) -> float:
        """The instrument's time, s: the emulator's simulated clock (``SIM:TIME?``), or the
        wall clock for a chip."""
        if self.emulated:
            return self.query("SIM:TIME?", float)
        return time.time()

    def advance_time(self, dt_s: float) -> None:
        """Let ``dt_s`` seconds pass: the emulator's simulated clock, or a real wait."""
        if self.emulated:
            self._write_checked(f"SIM:ADV {format_args(float(dt_s))}", {"dt_s": float(dt_s)})
        else:
            time.sleep(dt_s)

    def adc(self):
        """The instrument's readout chain (``ADC?``) as an :class:`lsm.crossbar.ADC`."""
        from lsm.crossbar import ADC

        def parse(reply):
            bits, r, lo, hi = reply.split(",")
            return ADC(int(bits), float(r), float(lo), float(hi))

        return self.query("ADC?", parse)

    def status(self) -> dict:
        def parse(reply):
            state, vout, pulses = reply.split(",")
            if state not in ("IDLE", "BUSY"):
                raise ValueError(f"garbled STAT? reply {reply!r}")
            return {"state": state, "vout": float(vout), "pulses": int(pulses)}

        return self.query("STAT?", parse)


def _parse_geometry(reply: str) -> tuple[int, int]:
    rows, cols = (int(v) for v in reply.split(","))
    if rows < 1 or cols < 1:
        raise ValueError(f"garbled GEOM? reply {reply!r}")
    return rows, cols


def _parse_count(reply: str) -> int:
    text = reply.strip()
    if not text.isdigit():
        raise ValueError(f"garbled PULS:COUN? reply {reply!r}")
    return int(text)


def check_spike_inputs(inputs, n_rows: int) -> np.ndarray:
    """Input vectors of a multiply: integer or boolean 0/1 spikes of shape (n_vectors,
    n_rows); ValueError saying what is wrong otherwise."""
    x = np.asarray(inputs)
    if x.dtype.kind not in "biu":
        raise ValueError(f"inputs must be integer or boolean 0/1 spikes, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != n_rows:
        raise ValueError(f"inputs must have shape (n_vectors, {n_rows}) for the region's "
                         f"{n_rows} rows, got {x.shape}")
    if x.size and not np.isin(x, (0, 1)).all():
        raise ValueError("inputs must be 0/1 spikes")
    return x


def column_offsets(mask: np.ndarray) -> tuple:
    """Column offsets of the True cells of a one-row mask."""
    return tuple(int(j) for j in np.flatnonzero(mask.reshape(-1)))
