"""The job store: job records in SQLite that every process may read and write, and pages poll.

Each job is one command line (studio.jobs.commands builds them) run by a worker process
(studio.jobs.worker) that the dispatcher (studio.jobs.dispatcher) starts; the store is where all
three meet.
"""

import contextlib
import dataclasses
import enum
import functools
import json
import os
import secrets
import shutil
import signal
import sqlite3
import time
from pathlib import Path

from .farm import farm_of
from .processes import signal_job_group, worker_alive


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED)


@dataclasses.dataclass(frozen=True)
class Job:
    id: str
    kind: str
    title: str
    argv: list[str]
    status: JobStatus
    stage: str | None
    progress: float
    message: str | None
    artifact: str | None
    validation_passed: bool | None
    exit_code: int | None
    pid: int | None  # the worker's pid, which is also the job's process-group id
    pid_create_time: float | None  # tells the worker apart from a later process that reuses its pid
    cancel_requested: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    log_path: str
    events_path: str
    metadata: dict
    # Recorded from the job's events since the stage timeline came in (a job row from before has None / []):
    backend: str | None  # the backend the engine chose, "auto" resolved
    stages: list[dict]  # each stage as it started: {"stage", "component", "index", "total", "at"}, oldest first

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def heartbeat_path(self) -> Path:
        """A file the worker touches every beat, database or not: a locked database must not make a
        healthy worker look hung."""
        return Path(self.log_path).parent / "heartbeat"

    def last_beat(self) -> float:
        """When the worker last showed it is alive (time.time()), from the store or its heartbeat file."""
        try:
            touched = self.heartbeat_path.stat().st_mtime
        except OSError:
            touched = 0.0
        return max(self.heartbeat_at or 0.0, touched)

    @property
    def elapsed_s(self) -> float:
        """Seconds spent running so far (or in total once finished); 0 while queued."""
        if self.started_at is None:
            return 0.0
        return max(0.0, (self.finished_at or time.time()) - self.started_at)


# A busy database (another process holds its lock) must never fail a healthy job: SQLite itself
# waits BUSY_TIMEOUT_S for a lock, then the store retries with back-off for up to BUSY_RETRY_S.
BUSY_TIMEOUT_S = 5.0
BUSY_RETRY_S = 120.0
_MAX_RETRY_PAUSE_S = 2.0

_COLUMNS = tuple(field.name for field in dataclasses.fields(Job))
_JSON_COLUMNS = ("argv", "metadata", "stages")
_BOOL_COLUMNS = ("validation_passed", "cancel_requested")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    argv TEXT NOT NULL,
    status TEXT NOT NULL,
    stage TEXT,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT,
    artifact TEXT,
    validation_passed INTEGER,
    exit_code INTEGER,
    pid INTEGER,
    pid_create_time REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL,
    log_path TEXT NOT NULL,
    events_path TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    backend TEXT,
    stages TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);  -- the workspace's (e.g. the farm's address)
"""
# Columns added after the first release: a database made before gets them (old rows keep their data).
_ADDED_COLUMNS = {"backend": "TEXT", "stages": "TEXT NOT NULL DEFAULT '[]'"}


def is_busy(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite failed because another connection holds a lock (worth retrying)."""
    return any(text in str(error) for text in ("database is locked", "database is busy", "database table is locked"))


def _retry_when_busy(method):
    """Run a store operation again, with back-off, while the database is locked by another process."""

    @functools.wraps(method)
    def retrying(self, *args, **kwargs):
        pause, deadline = 0.05, time.monotonic() + self.busy_retry_s
        while True:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.OperationalError as error:
                if not is_busy(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _MAX_RETRY_PAUSE_S)

    return retrying


class JobStore:
    """Job records in SQLite (WAL mode, one short-lived connection per call: safe across threads and processes).

    Each job gets a folder `jobs_dir/ID/` (default: `jobs/` next to the database) with `log.txt` and `events.jsonl`.
    """

    def __init__(self, db_path: str | os.PathLike, jobs_dir: str | os.PathLike | None = None,
                 busy_retry_s: float = BUSY_RETRY_S):
        self.db_path = Path(db_path).resolve()
        self.jobs_dir = Path(jobs_dir).resolve() if jobs_dir else self.db_path.parent / "jobs"
        self.busy_retry_s = busy_retry_s
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._create()

    @_retry_when_busy
    def _create(self) -> None:
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            present = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            for column, declaration in _ADDED_COLUMNS.items():
                if column not in present:
                    try:
                        conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {declaration}")
                    except sqlite3.OperationalError as error:
                        if "duplicate column" not in str(error):  # another process added it meanwhile
                            raise

    @_retry_when_busy
    def submit(self, kind: str, argv: list[str], title: str, artifact: str | None = None,
               metadata: dict | None = None) -> Job:
        """Queue a job; the dispatcher starts it. `argv` is the full command, e.g. [python, -m, neuron_export, ...]."""
        if not argv or not all(isinstance(arg, str) for arg in argv):
            raise ValueError(f"argv must be a non-empty list of strings, got {argv!r}")
        job_id = secrets.token_urlsafe(6)  # 8 url-safe characters: fits a ?job= query parameter
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True)
        row = {
            "id": job_id, "kind": kind, "title": title, "argv": list(argv), "status": JobStatus.QUEUED,
            "artifact": None if artifact is None else str(artifact), "created_at": time.time(),
            "log_path": str(job_dir / "log.txt"), "events_path": str(job_dir / "events.jsonl"),
            "metadata": metadata or {},
        }
        with self._connect() as conn:
            conn.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                         [_to_sql(column, value) for column, value in row.items()])
        return self.get(job_id)

    @_retry_when_busy
    def get(self, job_id: str) -> Job | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job_from_row(row)

    @_retry_when_busy
    def list(self, limit: int | None = 100, statuses: list[str] | None = None) -> list[Job]:
        """Jobs newest first, optionally only those with one of `statuses`; limit=None for all."""
        where, params = "", []
        if statuses:
            where = f"WHERE status IN ({', '.join('?' * len(statuses))})"
            params = [str(status) for status in statuses]
        query = f"SELECT {', '.join(_COLUMNS)} FROM jobs {where} ORDER BY seq DESC LIMIT ?"
        with self._connect() as conn:
            rows = conn.execute(query, [*params, -1 if limit is None else limit]).fetchall()
        return [_job_from_row(row) for row in rows]

    def update(self, job_id: str, **fields) -> None:
        """Set columns of a job (used by the worker and dispatcher)."""
        self._set(job_id, fields)

    def finish(self, job_id: str, status: JobStatus, **fields) -> bool:
        """Give a job its final status unless it already has one; False if someone else finished it first."""
        return self._set(job_id, {**fields, "status": status, "finished_at": time.time()},
                         only_if_status=ACTIVE_STATUSES)

    @_retry_when_busy
    def claim_next(self, max_running: int) -> Job | None:
        """Mark the oldest queued job running, if fewer than `max_running` run; atomic across processes."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                running = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = ?",
                                       (JobStatus.RUNNING,)).fetchone()[0]
                row = conn.execute("SELECT id FROM jobs WHERE status = ? ORDER BY seq LIMIT 1",
                                   (JobStatus.QUEUED,)).fetchone()
                if running >= max_running or row is None:
                    conn.execute("ROLLBACK")
                    return None
                now = time.time()
                conn.execute("UPDATE jobs SET status = ?, started_at = ?, heartbeat_at = ? WHERE id = ?",
                             (JobStatus.RUNNING, now, now, row[0]))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # BEGIN itself may have failed (busy): nothing to roll back
                    conn.execute("ROLLBACK")
                raise
        return self.get(row[0])

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job now, or ask a running one to stop (SIGTERM to its process group).

        The worker escalates to SIGKILL after ~5 s and records the final status `cancelled`. A farm
        job's worker asks Ray to stop its Ray job instead and waits up to 60 s for it to end (a worker that
        gives up says the Ray job may still run, and how to stop it); a farm job whose worker is gone is
        stopped by the worker the dispatcher starts to follow it again.
        False if the job is unknown or already finished.
        """
        if self._set(job_id, {"status": JobStatus.CANCELLED, "message": "cancelled", "finished_at": time.time()},
                     only_if_status=(JobStatus.QUEUED,)):
            return True
        if not self._set(job_id, {"cancel_requested": True}, only_if_status=(JobStatus.RUNNING,)):
            return False
        job = self.get(job_id)
        if job.pid is None:
            return True  # its worker is starting; it checks the flag before running anything
        if farm_of(job) and not worker_alive(job):
            return True  # its Ray job runs on: the dispatcher starts a worker to follow it, which sees the flag and stops it
        if worker_alive(job):
            signal_job_group(job, signal.SIGTERM)
        else:
            signal_job_group(job, signal.SIGKILL)
            self.finish(job_id, JobStatus.CANCELLED, message="cancelled")
        return True

    def log_tail(self, job_id: str, max_bytes: int = 64_000) -> str:
        """The end of the job's log (stdout + stderr of worker and job), at most `max_bytes`, whole lines."""
        job = self.get(job_id)
        if job is None:
            return ""
        try:
            with open(job.log_path, "rb") as log_file:
                size = log_file.seek(0, os.SEEK_END)
                log_file.seek(max(0, size - max_bytes))
                data = log_file.read()
        except FileNotFoundError:
            return ""
        if size > max_bytes:
            data = data.partition(b"\n")[2]  # drop the cut-off first line
        return data.decode("utf-8", errors="replace")

    @_retry_when_busy
    def delete(self, job_id: str) -> bool:
        """Delete a finished job and its folder; False if it is unknown or still active."""
        job = self.get(job_id)
        if job is None or not job.is_finished:
            return False
        with self._connect() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(Path(job.log_path).parent, ignore_errors=True)
        return True

    def delete_finished(self) -> int:
        """Delete every finished job; returns how many."""
        return sum(self.delete(job.id) for job in self.list(limit=None, statuses=list(FINISHED_STATUSES)))

    @_retry_when_busy
    def _set(self, job_id: str, fields: dict, only_if_status: tuple[JobStatus, ...] = ()) -> bool:
        unknown = set(fields) - (set(_COLUMNS) - {"id"})
        if unknown:
            raise ValueError(f"cannot set job columns {sorted(unknown)}")
        query = f"UPDATE jobs SET {', '.join(f'{column} = ?' for column in fields)} WHERE id = ?"
        params = [_to_sql(column, value) for column, value in fields.items()] + [job_id]
        if only_if_status:
            query += f" AND status IN ({', '.join('?' * len(only_if_status))})"
            params += [str(status) for status in only_if_status]
        with self._connect() as conn:
            return conn.execute(query, params).rowcount == 1

    @_retry_when_busy
    def setting(self, name: str) -> str | None:
        """A workspace setting (None: not set)."""
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    @_retry_when_busy
    def set_setting(self, name: str, value: str | None) -> None:
        """Set a workspace setting, or remove it (None)."""
        with self._connect() as conn:
            if value is None:
                conn.execute("DELETE FROM settings WHERE name = ?", (name,))
            else:
                conn.execute("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                             (name, value))

    @contextlib.contextmanager
    def _connect(self):
        # Autocommit mode; the timeout is SQLite's busy timeout, so writers from several processes wait their turn.
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()


def _to_sql(column: str, value):
    if column in _JSON_COLUMNS:
        return json.dumps(value)
    if column in _BOOL_COLUMNS and value is not None:
        return int(bool(value))
    if isinstance(value, JobStatus):
        return str(value)
    return value


def _job_from_row(row) -> Job:
    values = dict(zip(_COLUMNS, row))
    for column in _JSON_COLUMNS:
        values[column] = json.loads(values[column])
    for column in _BOOL_COLUMNS:
        if values[column] is not None:
            values[column] = bool(values[column])
    values["status"] = JobStatus(values["status"])
    return Job(**values)
