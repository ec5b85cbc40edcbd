"""The lab journal: every pulse and read in a SQLite database (WAL mode), and resumable jobs.

Tables: ``ops`` (timestamp, instrument, command, parameters, result, status, job, chunk),
``jobs`` (id, kind, parameters, status) and ``chunks`` (job, chunk, status).

The journal is write-ahead: a pulse is recorded as ``pending`` (with the instrument's pulse
counter read just before, when it has one) *before* the command is sent, in the same transaction
that marks its chunk pending; afterwards the record is settled to one of :data:`PULSE_STATUSES`.
A process killed at any point leaves either nothing (nothing was sent) or a pending record,
which the resumed job resolves on the instrument before anything is re-sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["Journal", "JobMismatch", "JobBusy", "PULSE_STATUSES", "APPLIED", "NOT_APPLIED",
           "SCHEMA"]

#: What a pulse record can say: sent and confirmed (``ok``), refused by the instrument
#: (``failed``), an uncertain outcome resolved on the instrument (``verified-applied`` /
#: ``verified-not-applied``), or not known (``pending``: in flight or the process died;
#: ``unresolved``: the driver could not tell).
PULSE_STATUSES = ("pending", "ok", "failed", "verified-applied", "verified-not-applied",
                  "unresolved")
APPLIED = ("ok", "verified-applied")
NOT_APPLIED = ("failed", "verified-not-applied")

SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    instrument TEXT,
    command TEXT NOT NULL,
    params TEXT,
    result TEXT,
    status TEXT NOT NULL,
    job_id TEXT,
    chunk INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    status TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (job_id, chunk)
);
"""

_INSERT_OP = ("INSERT INTO ops (ts, instrument, command, params, result, status, job_id, chunk) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_SET_CHUNK = ("INSERT INTO chunks VALUES (?, ?, ?, ?) ON CONFLICT(job_id, chunk) DO UPDATE SET "
              "status = excluded.status, ts = excluded.ts")


class JobMismatch(ValueError):
    """A job id reused with different parameters."""


class JobBusy(RuntimeError):
    """A job already running in another process."""


class Journal:
    """A SQLite journal in WAL mode; safe to open from several processes."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False,
                                     isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _exec(self, sql: str, args=()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, args)

    # ------------------------------------------------------------------ operations
    def record(self, command: str, params=None, result=None, status: str = "ok",
               instrument: str | None = None, job_id: str | None = None,
               chunk: int | None = None) -> int:
        cur = self._exec(
            _INSERT_OP,
            (time.time(), instrument, command, json.dumps(params, default=str),
             None if result is None else json.dumps(result, default=str), status, job_id,
             chunk))
        return int(cur.lastrowid)

    def begin(self, command: str, params=None, instrument: str | None = None,
              job_id: str | None = None, chunk: int | None = None) -> int:
        """Record a command as ``pending`` before it is sent (and its chunk, if any, as
        pending, in the same transaction). Returns the record id for :meth:`settle`."""
        row = (time.time(), instrument, command, json.dumps(params, default=str), None,
               "pending", job_id, chunk)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(_INSERT_OP, row)
                if job_id is not None and chunk is not None:
                    self._conn.execute(_SET_CHUNK, (job_id, chunk, "pending", time.time()))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return int(cur.lastrowid)

    def settle(self, op_id: int, status: str, result=None) -> None:
        """Give a pending record its outcome (one of :data:`PULSE_STATUSES`)."""
        if status not in PULSE_STATUSES:
            raise ValueError(f"unknown pulse status {status!r}; expected one of "
                             f"{PULSE_STATUSES}")
        self._exec("UPDATE ops SET status = ?, result = ?, ts = ? WHERE id = ?",
                   (status, None if result is None else json.dumps(result, default=str),
                    time.time(), op_id))

    def last_op(self, job_id: str, chunk: int, command: str = "%") -> dict | None:
        """The latest record of a job's chunk (whose command is LIKE ``command``)."""
        cur = self._exec("SELECT * FROM ops WHERE job_id = ? AND chunk = ? AND command LIKE ? "
                         "ORDER BY id DESC LIMIT 1", (job_id, chunk, command))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row,
                                                 strict=True))

    def pulses_after(self, op_id: int, instrument: str | None) -> tuple[int, int]:
        """Pulse records on ``instrument`` after record ``op_id``: (applied, of unknown
        outcome). Used to account for the instrument's pulse counter on resume."""
        rows = self._exec("SELECT status FROM ops WHERE id > ? AND command LIKE 'PULS:%' AND "
                          "instrument IS ?", (op_id, instrument)).fetchall()
        applied = sum(r[0] in APPLIED for r in rows)
        unknown = sum(r[0] in ("pending", "unresolved") for r in rows)
        return applied, unknown

    def last_counter(self, instrument: str | None, job_id: str) -> int | None:
        """The highest pulse-counter reading recorded by ``job_id`` on ``instrument``."""
        rows = self._exec("SELECT params, result FROM ops WHERE instrument IS ? AND job_id = ? "
                          "AND command LIKE 'PULS:%'", (instrument, job_id)).fetchall()
        seen = []
        for params, result in rows:
            p = json.loads(params or "null")
            r = json.loads(result or "null")
            seen += [p.get("counter_before")] if isinstance(p, dict) else []
            seen += list(r.get("counter", [])) if isinstance(r, dict) else []
        return max((v for v in seen if isinstance(v, int)), default=None)

    @contextlib.contextmanager
    def job_lock(self, job_id: str):
        """Hold job ``job_id`` for this process: a second process (or a second handle in this
        one) running the same job at the same time is refused with :class:`JobBusy`. The lock
        is an OS file lock beside the journal, released when the holder exits, even killed."""
        import fcntl
        import hashlib

        folder = self.path.parent / f".{self.path.name}.locks"
        folder.mkdir(exist_ok=True)
        name = hashlib.sha256(job_id.encode()).hexdigest()[:24]
        fh = open(folder / f"{name}.lock", "a+")  # noqa: SIM115 - held for the whole job
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JobBusy(f"job {job_id!r} is running in another process (journal "
                              f"{self.path}); wait for it, or stop it first") from None
            yield
        finally:
            fh.close()

    def ops(self, job_id: str | None = None, limit: int | None = None) -> list[dict]:
        sql = "SELECT * FROM ops" + (" WHERE job_id = ?" if job_id else "") + " ORDER BY id"
        if limit:
            sql += f" DESC LIMIT {int(limit)}"
        cur = self._exec(sql, (job_id,) if job_id else ())
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        return rows[::-1] if limit else rows

    # ------------------------------------------------------------------ jobs
    def start_job(self, job_id: str, kind: str, params: dict) -> bool:
        """Create the job, or find it again; returns True when resuming. Raises JobMismatch
        when the id exists with other parameters."""
        blob = json.dumps(params, sort_keys=True, default=str)
        row = self._exec("SELECT kind, params FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            self._exec("INSERT INTO jobs VALUES (?, ?, ?, ?, ?)",
                       (job_id, kind, blob, time.time(), "running"))
            return False
        if row[0] != kind or row[1] != blob:
            raise JobMismatch(f"job {job_id!r} exists with other parameters ({row[0]} "
                              f"{row[1]}); use a new job id")
        self._exec("UPDATE jobs SET status = 'running' WHERE job_id = ?", (job_id,))
        return True

    def finish_job(self, job_id: str, status: str = "done") -> None:
        self._exec("UPDATE jobs SET status = ? WHERE job_id = ?", (status, job_id))

    def job(self, job_id: str) -> dict | None:
        cur = self._exec("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row,
                                                 strict=True))

    def chunk_status(self, job_id: str) -> dict[int, str]:
        return dict(self._exec("SELECT chunk, status FROM chunks WHERE job_id = ?",
                               (job_id,)).fetchall())

    def set_chunk(self, job_id: str, chunk: int, status: str) -> None:
        self._exec(_SET_CHUNK, (job_id, chunk, status, time.time()))
