"""The emulator as an instrument server: raw TCP on 127.0.0.1, speaking hw/PROTOCOL.md directly.

Concurrent clients, per-connection error queues, line/block/idle/connection limits, bounded
memory, the pulse counter (protocol 1.1) and the pulse faults. Every loop is bounded and every
socket has a timeout, so no test can hang.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from hw.emulator import COMMANDS, EmulatedMacro, EmulatorServer, ErrorQueue, FaultConfig
from hw.protocol import PROTOCOL_VERSION, encode_block, parse_block

ROOT = Path(__file__).parents[1]
FORM = "PULS:FORM {r},{r1},{c},{c1},3.0,1000.0,100.0"
TIMEOUT_S = 5.0


@contextmanager
def running(macro: EmulatedMacro | None = None, **kwargs):
    srv = EmulatorServer(0, macro or EmulatedMacro(rows=64, cols=64, seed=1), **kwargs).start()
    try:
        yield srv
    finally:
        srv.stop()


class Client:
    """A raw-socket client: one line out, one line (or block) back."""

    def __init__(self, srv: EmulatorServer, timeout_s: float = TIMEOUT_S) -> None:
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() + b"\n" if isinstance(data, str) else data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the emulator")
        self.buf += data

    def line(self) -> str:
        while b"\n" not in self.buf:
            self._fill()
        out, _, self.buf = self.buf.partition(b"\n")
        return out.decode()

    def query(self, command: str) -> str:
        self.send(command)
        return self.line()

    def query_block(self, data: bytes | str) -> bytes:
        self.send(data)
        while len(self.buf) < 2:
            self._fill()
        n = int(self.buf[1:2])
        while len(self.buf) < 2 + n:
            self._fill()
        end = 2 + n + int(self.buf[2:2 + n]) + 1
        while len(self.buf) < end:
            self._fill()
        out, self.buf = self.buf[:end], self.buf[end:]
        return parse_block(out)

    def errors(self) -> list[str]:
        """Drain this connection's error queue (bounded)."""
        out = []
        for _ in range(64):
            e = self.query("SYST:ERR?")
            if e.startswith("0,"):
                return out
            out.append(e)
        raise AssertionError(f"error queue did not drain: {out}")

    def closed_by_peer(self) -> bool:
        """True when the emulator has closed this connection (EOF or reset) within the timeout."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _wait_for(predicate, timeout_s: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------- one client cannot block others
def test_misbehaving_clients_do_not_block_a_well_behaved_one():
    ten_mb = memoryview(b"A" * 10_000_000)
    with running() as srv:
        idle = Client(srv)                       # connects, says nothing
        half = Client(srv)
        half.send(b"*IDN")                       # half a line, never finished
        big = Client(srv, timeout_s=20)
        big.send(ten_mb[:5_000_000])             # the first half of a 10 MB line
        crowd_ready, release = threading.Barrier(51), threading.Event()
        crowd_replies: list[list[str]] = []

        def polite():
            with Client(srv) as c:
                c.send("BOGUS")                  # an error of its own
                crowd_replies.append([c.query(q) for q in ("*IDN?", "SYST:ERR?", "SYST:ERR?",
                                                           "*IDN?")])
                crowd_ready.wait(TIMEOUT_S)
                release.wait(TIMEOUT_S)

        crowd = [threading.Thread(target=polite, daemon=True) for _ in range(50)]
        for t in crowd:
            t.start()
        crowd_ready.wait(TIMEOUT_S)              # all 50 connected and served
        with Client(srv, timeout_s=2.0) as good:  # served while all of them are connected
            idn = good.query("*IDN?")
            assert idn.startswith("RRAM-LAB,IMC40-512,")
            assert srv.connections == 54
            big.send(ten_mb[5_000_000:])
            big.send(b"\n")
            assert good.query("GEOM?") == "64,64"
            assert good.errors() == []           # the others' errors are not ours
        release.set()
        for t in crowd:
            t.join(TIMEOUT_S)
        assert len(crowd_replies) == 50
        assert all(r == [idn, '-113,"Undefined header"', '0,"No error"', idn]
                   for r in crowd_replies)
        # the 10 MB line was discarded with -223, and its connection goes on working
        assert big.errors() == ['-223,"Too much data"']
        assert big.query("*OPC?") == "1"
        assert max(len(line) for line in srv.macro.log) < 300  # logged truncated
        for c in (idle, half, big):
            c.close()


def _send_big_lines(port: int, n_lines: int, chunk: memoryview) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        f = s.makefile("rb")
        for _ in range(n_lines):
            s.sendall(chunk)
            s.sendall(b"\n")
        s.sendall(b"SYST:ERR?\n")
        return f.readline().decode().strip()


def test_ten_mb_lines_do_not_grow_the_servers_memory():
    """tracemalloc around twenty 10 MB lines: the server keeps none of them (tolerance 1 MB
    retained; the peak stays within a few receive buffers, far below one line)."""
    with running() as srv:
        with Client(srv) as c:
            assert c.query("*IDN?")
        line = memoryview(b"B" * 10_000_000)  # the client's data, allocated before tracing
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            first_error = _send_big_lines(srv.port, 20, line)
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert first_error == '-223,"Too much data"'
        print(f"traced: before {before / 1e6:.2f} MB, after {after / 1e6:.2f} MB, "
              f"peak {peak / 1e6:.2f} MB over 200 MB received")
        assert after - before < 1_000_000
        assert peak - before < 4 * srv.max_line_bytes + 1_000_000  # never a whole line
        assert srv.macro.rx >= 21


def _rss_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_ten_mb_lines_do_not_grow_a_subprocess_emulators_rss():
    """The issue's measurement: RSS of an emulator process around twenty 10 MB lines.
    Tolerance 16 MB (allocator noise); before the fix it grew by about 350 MB."""
    code = ("import sys; from hw.emulator import EmulatorServer, EmulatedMacro\n"
            "srv = EmulatorServer(0, EmulatedMacro(rows=64, cols=64))\n"
            "print(srv.port, flush=True); srv.serve_forever()\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        port = int(proc.stdout.readline())
        assert _send_big_lines(port, 1, memoryview(b"*OPC?")) == "1"  # warm up
        before = _rss_kb(proc.pid)
        assert _send_big_lines(port, 20, memoryview(b"B" * 10_000_000)) == \
            '-223,"Too much data"'
        after = _rss_kb(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    print(f"RSS before {before / 1024:.1f} MB, after {after / 1024:.1f} MB")
    assert after - before < 16 * 1024


def test_line_limit_is_per_line_and_the_connection_recovers():
    with running(max_line_bytes=1024) as srv, Client(srv) as c:
        c.send("*IDN?" + " " * 2000)                 # a query that is too long:
        assert c.line() == ""                         # fails like any failed query
        c.send("PULS:FORM 0,1,0,1,3.0,1000.0,100.0" + "," * 5000)
        assert c.query("*IDN?").startswith("RRAM-LAB")
        assert c.errors() == ['-223,"Too much data"'] * 2
        assert srv.macro.pulse_commands == 0          # the long pulse line did not run
        c.send(" " * 1000 + "*OPC?")                  # just under the limit: fine
        assert c.line() == "1"


# ---------------------------------------------------------------- binary blocks
def test_blocks_are_framed_by_their_declared_length():
    with running() as srv, Client(srv) as c:
        # a payload holding newlines and '#': read by length, refused by value, framing intact
        c.send(b"VMM? 0,2,0,3,0.2,1," + encode_block(b"\n#") + b"\n")
        assert c.line() == ""
        assert c.errors() == ['-222,"Data out of range"']
        codes = c.query_block(b"VMM? 0,2,0,3,0.2,1," + encode_block(b"\x01\x00") + b"\n")
        assert len(codes) == 3 * 2
        c.send(b"VMM? 0,2,0,3,0.2,1,#2x1\n")          # malformed header
        assert c.line() == ""
        assert c.errors() == ['-160,"Block data error"']
        assert c.query("*OPC?") == "1"


def test_a_block_larger_than_any_legal_one_is_skipped_unstored():
    macro = EmulatedMacro(seed=1)                      # 512 x 512, as the chip
    limit = macro.max_block_bytes
    assert limit == 4096 * 512                         # a full VMM?: 4096 vectors x 512 rows
    too_big, filler = memoryview(b"\x01" * (limit + 1)), memoryview(b"\x00" * 300_000)
    with running(macro, idle_timeout_s=1.0) as srv, Client(srv) as c:
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            c.send(b"VMM? 0,512,0,4,0.2,4096,#7" + str(limit + 1).encode())
            c.send(too_big)
            c.send(b"\n")
            assert c.line() == ""
            assert c.errors() == ['-223,"Too much data"']
            assert c.query("*OPC?") == "1"
            # an absurd declared length: skipped as it arrives, until the idle limit
            c.send(b"VMM? 0,1,0,1,0.2,1,#9999999999")
            c.send(filler)
            assert c.closed_by_peer()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        print(f"traced peak while skipping a {limit + 1} byte block: {peak / 1e3:.0f} kB")
        assert peak - before < limit // 4              # neither block was ever held


# ---------------------------------------------------------------- error queues
def test_error_queues_are_per_connection_and_cleared():
    with running() as srv:
        a, b = Client(srv), Client(srv)
        a.send("NOPE")
        a.send("PULS:SET 0,1,0,1,9.0,100.0,100.0")      # out of range
        assert b.errors() == []                          # A's errors are A's
        assert a.query("SYST:ERR?") == '-113,"Undefined header"'
        a.send("*CLS")
        assert a.errors() == []                          # *CLS emptied it
        a.send("NOPE")
        a.close()                                        # leaves an error behind ...
        with Client(srv) as fresh:
            assert fresh.errors() == []                  # ... which no new client sees
        b.send("READ? 0,0")                              # missing parameter
        assert b.line() == ""
        b.send("*RST")
        assert b.errors() == []                          # *RST clears the queue too
        b.close()


def test_error_queue_overflow_keeps_the_oldest_and_marks_minus_350():
    with running() as srv, Client(srv) as c:
        for k in range(20):
            c.send(f"BAD{k}")
        assert c.errors() == ['-113,"Undefined header"'] * 15 + ['-350,"Queue overflow"']
    with running(error_queue_size=3) as srv, Client(srv) as c:
        c.send("X")
        c.send("PULS:FORM 0,1")
        c.send("PULS:FORM 0,1,0,1,9,1000,100")
        assert c.errors() == ['-113,"Undefined header"', '-109,"Missing parameter"',
                              '-222,"Data out of range"']            # exactly full: no overflow
    q = ErrorQueue(2)
    for code in (-1, -2, -3, -4):
        q.push(code, "e")
    assert list(q) == [(-1, "e"), (-350, "Queue overflow")]
    assert q.pop() == (-1, "e") and q.pop() == (-350, "Queue overflow") and q.pop()[0] == 0


# ---------------------------------------------------------------- PULS:COUN?
def test_pulse_counter_counts_applied_pulse_commands_only():
    with running() as srv:
        a, b = Client(srv), Client(srv)
        assert a.query("PULS:COUN?") == "0"
        a.send(FORM.format(r=0, r1=4, c=0, c1=4))        # 16 cells, one command
        a.send("PULS:SET 0,1,0,1,1.5,100.0,100.0")
        a.send("PULS:RES 0,1,0,1,-1.5,100.0")
        assert a.query("PULS:COUN?") == "3"
        a.send("PULS:SET 0,1,0,1,9.0,100.0,100.0")       # range error
        a.send("PULS:RES 0,1,0,1,1.5,100.0")             # wrong sign
        a.send("PULS:FORM 0,1,0,99,3.0,1000.0,100.0")    # outside the array
        a.send("PULS:FORM 0,1,0,1")                      # missing parameters
        assert a.query("PULS:COUN?") == "3"
        assert len(a.errors()) == 4
        a.send("*RST")
        a.send("*CLS")
        assert a.query("PULS:COUN?") == "3"              # not reset
        assert b.query("PULS:COUN?") == "3"              # instrument-wide
        assert a.query("STAT?") == "IDLE,0.000,18"       # cell pulses: 16 + 1 + 1
        assert int(srv.macro.pulse_counts.sum()) == 18
        a.close()
        b.close()


def test_injected_pulse_errors_do_not_apply_or_count():
    with running(faults=FaultConfig(error_rate=1.0)) as srv, Client(srv) as c:
        c.send(FORM.format(r=0, r1=1, c=0, c1=1))
        assert c.errors() == ['-300,"Device-specific error"']
        assert c.query("PULS:COUN?") == "0"
        assert srv.macro.pulse_counts.sum() == 0
        assert c.query("READ? 0,0,0.2") != ""            # queries are not affected


def test_concurrent_pulses_are_each_applied_once():
    with running() as srv:
        def worker(k):
            with Client(srv) as c:
                for col in range(8):
                    c.send(FORM.format(r=k, r1=k + 1, c=col, c1=col + 1))
                assert c.errors() == []

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT_S)
        np.testing.assert_array_equal(srv.macro.pulse_counts[:6, :8], 1)
        assert srv.macro.pulse_commands == 48


# ---------------------------------------------------------------- pulse disconnects
def _disconnect_trials(seed: int, n: int) -> list[bool]:
    """Pulse ``n`` cells with disconnect_rate=1: for each, whether it was applied."""
    applied = []
    with running(faults=FaultConfig(disconnect_rate=1.0), seed=seed) as srv:
        for k in range(n):
            with Client(srv) as c:
                before = srv.macro.pulse_commands
                c.send(FORM.format(r=k // 64, r1=k // 64 + 1, c=k % 64, c1=k % 64 + 1))
                assert c.closed_by_peer()                 # every pulse loses the link ...
            ran = srv.macro.pulse_commands == before + 1  # ... before or after it ran
            assert bool(srv.macro.pulse_counts[k // 64, k % 64]) == ran
            applied.append(ran)
    return applied


def test_disconnect_on_pulses_happens_before_and_after_execution():
    applied = _disconnect_trials(seed=3, n=60)
    assert 15 <= sum(applied) <= 45                       # both outcomes, about half each
    assert _disconnect_trials(seed=3, n=60) == applied    # and they follow the seed


# ---------------------------------------------------------------- idle limit, connection cap
def test_idle_and_half_line_connections_are_closed():
    with running(idle_timeout_s=0.3) as srv:
        idle, half, busy = Client(srv), Client(srv), Client(srv)
        half.send(b"*IDN")
        for _ in range(4):                                # 0.6 s of regular commands
            assert busy.query("*OPC?") == "1"
            time.sleep(0.15)
        assert idle.closed_by_peer() and half.closed_by_peer()
        assert busy.query("*IDN?").startswith("RRAM-LAB")  # still open
        assert _wait_for(lambda: srv.connections == 1)
        for c in (idle, half, busy):
            c.close()


def test_connections_beyond_the_cap_are_closed_at_once():
    with running(max_connections=3) as srv:
        first = [Client(srv) for _ in range(3)]
        for c in first:
            assert c.query("*OPC?") == "1"
        extra = Client(srv)
        assert extra.closed_by_peer()
        assert srv.refused == 1
        first[0].close()
        assert _wait_for(lambda: srv.connections == 2)
        with Client(srv) as again:
            assert again.query("*OPC?") == "1"
        for c in [*first, extra]:
            c.close()


def test_stop_closes_open_connections():
    srv = EmulatorServer(0, EmulatedMacro(rows=8, cols=8)).start()
    c = Client(srv)
    assert c.query("*OPC?") == "1"
    srv.stop()
    assert c.closed_by_peer()
    c.close()


# ---------------------------------------------------------------- the command set, settings
def test_command_table_matches_protocol_md_and_keeps_its_semantics():
    doc = (ROOT / "hw" / "PROTOCOL.md").read_text()
    documented = set(re.findall(r"^\| `([*A-Z:?]+)` \|", doc, flags=re.M))
    assert documented == set(COMMANDS)
    assert f"version {PROTOCOL_VERSION}" in doc and PROTOCOL_VERSION == "1.1"
    with running() as srv, Client(srv) as c:
        assert c.query("*IDN?").endswith(f",PROTO {PROTOCOL_VERSION}")
        assert c.query("SYST:VERS?") == PROTOCOL_VERSION
        assert c.query("GEOM?") == "64,64"
        assert c.query("ADC?").startswith("14,")
        assert c.query("OUTP:VOLT?") == "0.000"
        assert c.query("SIM:TIME?") == "0.0"
        c.send("SIM:ADV 2.5")
        assert c.query("SIM:TIME?") == "2.5"
        c.send(FORM.format(r=1, r1=3, c=0, c1=2))
        assert 1 < float(c.query("READ? 1,0,0.2")) < 100
        counts = c.query_block("DIAG:PCOUN? 0,3,0,2")
        assert list(np.frombuffer(counts, "<u4")) == [0, 0, 1, 1, 1, 1]
        g = np.frombuffer(c.query_block("READ:BLOCK? 1,3,0,2,0.2,G"), "<f4")
        codes = np.frombuffer(c.query_block("read:block? 1,3,0,2,0.2,CODE"), "<u2")
        assert g.shape == codes.shape == (4,) and (g > 1).all()
        c.send("ABOR")
        assert c.query("STAT?") == "IDLE,0.000,4"
        assert int(c.query("DIAG:RX?")) == srv.macro.rx
        assert "SIM:ADV 2.5" in srv.macro.log[-20:]
        assert c.errors() == []


def test_settings_are_validated():
    for bad in (dict(idle_timeout_s=0), dict(max_line_bytes=10), dict(max_connections=0),
                dict(error_queue_size=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            EmulatorServer(0, EmulatedMacro(rows=8, cols=8), **bad)
    with pytest.raises(ValueError, match="drop_rate"):
        FaultConfig(drop_rate=1.5)


def test_cli_passes_the_server_settings(monkeypatch, capsys):
    import hw.emulator
    from lsm.cli import main

    seen = {}
    monkeypatch.setattr(hw.emulator, "serve", lambda *a, **kw: seen.update(args=a, kw=kw))
    assert main(["hw", "emulator", "--host", "127.0.0.2", "--port", "0", "--idle-timeout-s", "5",
                 "--max-line-bytes", "4096", "--max-connections", "8"]) == 0
    assert seen["kw"] == dict(wall_clock=False, host="127.0.0.2", idle_timeout_s=5.0,
                              max_line_bytes=4096, max_connections=8, device=None, adc=None)
    # --device: the cells and readout of a TOML file; a bad one is refused by name
    from pathlib import Path

    noisy = Path(__file__).parents[1] / "examples" / "devices" / "noisy_chip.toml"
    assert main(["hw", "emulator", "--port", "0", "--device", str(noisy)]) == 0
    assert seen["kw"]["device"].read.read_noise_rel == 0.003 and seen["kw"]["adc"].bits == 12
    monkeypatch.undo()
    assert main(["emulator", "--port", "0", "--idle-timeout-s", "0"]) == 2
    assert "idle_timeout_s must be in (0, 86400] s" in capsys.readouterr().err
    assert main(["emulator", "--port", "99999"]) == 2
    assert "port must be an integer in 0-65535" in capsys.readouterr().err
    assert main(["emulator", "--port", "0", "--latency-ms", "inf"]) == 2
    assert "latency_s must be in [0, 60]" in capsys.readouterr().err
