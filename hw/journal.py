"""The lab journal: every pulse and read in a SQLite database (WAL mode), and resumable jobs.

Tables: ``ops`` (timestamp, instrument, command, parameters, result, status, job, chunk),
``jobs`` (id, kind, parameters, status) and ``chunks`` (job, chunk, status: pending / done).
A chunk is marked *pending* before its pulse is sent and *done* after the instrument confirmed
it; a chunk found pending on resume is checked on the instrument before anything is re-sent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

__all__ = ["Journal", "JobMismatch", "export_map"]

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


class JobMismatch(ValueError):
    """A job id reused with different parameters."""


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
            "INSERT INTO ops (ts, instrument, command, params, result, status, job_id, chunk) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), instrument, command, json.dumps(params, default=str),
             None if result is None else json.dumps(result, default=str), status, job_id,
             chunk))
        return int(cur.lastrowid)

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
        self._exec("INSERT INTO chunks VALUES (?, ?, ?, ?) ON CONFLICT(job_id, chunk) DO "
                   "UPDATE SET status = excluded.status, ts = excluded.ts",
                   (job_id, chunk, status, time.time()))


def export_map(path: str | os.PathLike, g_us: np.ndarray, settings: dict) -> Path:
    """Write a conductance map with the settings of its run: ``.npz`` or ``.h5``/``.hdf5``."""
    from lsm._io import atomic_path, atomic_savez

    path = Path(path)
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("g_us", data=np.asarray(g_us, dtype=np.float32))
            f.attrs["settings"] = json.dumps(settings, default=str)
        return path
    return atomic_savez(path, g_us=np.asarray(g_us, dtype=np.float32),
                        settings=np.array(json.dumps(settings, default=str)))
