"""The embedded job store: one SQLite file (WAL) shared by every worker and every training child.

Each call opens its own short connection, so the store is safe from any thread or process, and
every state change that depends on what is already there (queue limit, claim, cancel, reap)
happens inside one ``BEGIN IMMEDIATE`` transaction: SQLite's write lock makes it atomic across
processes. The store is just the file: a restart finds every job as it was left. The file (and
its folder) is created by the first job submitted; until then every read finds no jobs.
"""

from __future__ import annotations

import builtins
import fcntl
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from service.jobs.record import (
    CANCELLED_BEFORE_START,
    INTERRUPTED,
    STATUSES,
    TERMINAL,
    Job,
    JobStatus,
    outcome,
)
from service.jobs.store import QueueFull
from trainer.timestamps import utc_now_iso

if TYPE_CHECKING:  # not at run time: the training child opens this store before NumPy loads
    from service.modelstore import ModelStore, Promotion
    from trainer.artifacts import Artifact

__all__ = ["SQLiteJobStore"]

_TERMINAL_SQL = "(" + ", ".join(f"'{status}'" for status in sorted(TERMINAL)) + ")"
BUSY_TIMEOUT = 10.0  # seconds a call waits for another process's write lock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order: the ids are random
    id TEXT NOT NULL UNIQUE, model TEXT NOT NULL, params TEXT NOT NULL, force INTEGER NOT NULL,
    status TEXT NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, updated_at TEXT NOT NULL,
    owner TEXT, heartbeat REAL,  -- unix time of the owner's or the child's last sign of life
    progress TEXT, history TEXT NOT NULL DEFAULT '[]',  -- JSON
    error TEXT, version TEXT, promoted INTEGER, promotion_reason TEXT,
    request_id TEXT  -- of the request that submitted it
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
"""
_ADDED_COLUMNS = (("request_id", "TEXT"),)  # columns the table gained after its first release


_FIELDS = tuple(field.name for field in fields(Job))


def _job(row: sqlite3.Row) -> Job:
    values = {name: row[name] for name in _FIELDS}
    for name in ("params", "progress", "history"):
        if values[name] is not None:
            values[name] = orjson.loads(values[name])
    for name in ("force", "promoted", "cancel_requested"):  # SQLite has no booleans
        if values[name] is not None:
            values[name] = bool(values[name])
    return Job(**values)


def _count(conn: sqlite3.Connection, status: str) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0])


def _get(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _job(row)


class SQLiteJobStore:
    """The job table in ``path``; every method is one short transaction (a `JobStore`)."""

    transient: tuple[type[Exception], ...] = (sqlite3.OperationalError,)  # locked too long

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        self._ready = False

    def _exists(self) -> bool:
        """Whether the database is there (made ready for use if so): a store nobody has
        submitted to yet has no jobs to read, claim or reap, and no file."""
        if not self._ready and self.path.exists():
            self._create()
        return self._ready

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Workers starting together would race to create the file and switch it to WAL; SQLite
        # answers that switch with "database is locked" at once, without waiting, so they take
        # turns on a lock file instead.
        with self.path.with_name(self.path.name + ".init-lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            with closing(self._connect()) as conn:
                # WAL lets readers (status polls, event streams) run while a writer commits; the
                # mode is stored in the file, but must be set outside a transaction.
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
            with self._write() as conn:
                for statement in _SCHEMA.split(";"):
                    conn.execute(statement)
                columns = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
                for column, kind in _ADDED_COLUMNS:  # a file written before they existed
                    if column not in columns:
                        conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        self._ready = True

    def submit(
        self, model: str, params: dict[str, Any], force: bool, *, queue_limit: int,
        request_id: str | None = None,
    ) -> Job:  # fmt: skip
        """Queue a job, or raise QueueFull when ``queue_limit`` jobs are already waiting."""
        if not self._ready:
            self._create()
        now = utc_now_iso()
        with self._write() as conn:
            if (queued := _count(conn, "queued")) >= queue_limit:
                jobs = "1 job is" if queued == 1 else f"{queued} jobs are"
                raise QueueFull(f"{jobs} already queued (limit {queue_limit}); try again later")
            job_id = uuid.uuid4().hex
            conn.execute(
                "INSERT INTO jobs (id, model, params, force, status, created_at, updated_at,"
                " request_id) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                (job_id, model, orjson.dumps(params).decode(), int(force), now,
                 utc_now_iso(precise=True), request_id),
            )  # fmt: skip
            return _job(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def get(self, job_id: str) -> Job | None:
        if not self._exists():
            return None
        with closing(self._connect()) as conn:
            return _get(conn, job_id)

    def list(self, *, limit: int = 50, status: str | None = None) -> builtins.list[Job]:
        """The newest ``limit`` jobs, newest first, optionally only those in ``status``."""
        if not self._exists():
            return []
        where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
        with closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT * FROM jobs {where} ORDER BY seq DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [_job(row) for row in rows]

    def request_cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job at once; flag a running one (its child stops at the next batch).
        A finished job is left as it is. Returns the job after, or None if there is none."""
        if not self._exists():
            return None
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', error = ?, cancel_requested = 1,"
                " finished_at = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
                (CANCELLED_BEFORE_START, utc_now_iso(), utc_now_iso(precise=True), job_id),
            )
            conn.execute(
                "UPDATE jobs SET cancel_requested = 1, updated_at = ?"
                " WHERE id = ? AND status = 'running' AND cancel_requested = 0",
                (utc_now_iso(precise=True), job_id),
            )
            return _get(conn, job_id)

    def claim(self, owner: str, *, concurrency: int) -> Job | None:
        """Take the oldest queued job for ``owner``, if fewer than ``concurrency`` jobs run
        (counted over every worker). The write lock makes each job go to exactly one caller."""
        if not self._exists():
            return None
        with self._write() as conn:
            if _count(conn, "running") >= concurrency:
                return None
            row = conn.execute(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'running', owner = ?, started_at = ?, heartbeat = ?,"
                " updated_at = ? WHERE id = ?",
                (owner, utc_now_iso(), time.time(), utc_now_iso(precise=True), row["id"]),
            )
            return _get(conn, row["id"])

    def heartbeat(self, owner: str) -> None:
        """Mark ``owner``'s running jobs alive (not an update a watcher needs to see)."""
        if not self._exists():
            return
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET heartbeat = ? WHERE owner = ? AND status = 'running'",
                (time.time(), owner),
            )

    def reap(
        self, *, owner: str, stale_after: float, owner_alive: Callable[[str], bool] | None = None
    ) -> builtins.list[Job]:
        """Fail the running jobs of other owners that are gone: silent for ``stale_after``
        seconds, or owned by a process ``owner_alive`` says is dead. ``owner``'s own jobs are
        left alone: it watches their processes itself. Returns the jobs changed."""
        if not self._exists():
            return []
        cutoff = time.time() - stale_after
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, owner, heartbeat FROM jobs WHERE status = 'running' AND owner != ?",
                (owner,),
            ).fetchall()
            gone = [
                _end(conn, row["id"], "failed", INTERRUPTED)
                for row in rows
                if row["heartbeat"] <= cutoff
                or (owner_alive is not None and not owner_alive(row["owner"]))
            ]
        return [job for job in gone if job is not None]

    def update_progress(
        self, job_id: str, progress: dict[str, Any], epoch_record: dict[str, Any] | None = None,
        *, owner: str | None = None,
    ) -> None:  # fmt: skip
        """Record where a running job is (and a finished epoch, if given); bumps its heartbeat.
        With ``owner``, only while that owner runs it."""
        if not self._exists():
            return
        with self._write() as conn:
            row = conn.execute(
                "SELECT history FROM jobs WHERE id = ? AND status = 'running'"
                " AND (? IS NULL OR owner = ?)",
                (job_id, owner, owner),
            ).fetchone()
            if row is None:  # ended meanwhile (cancelled, reaped): nothing to add
                return
            history = row["history"]
            if epoch_record is not None:
                history = orjson.dumps([*orjson.loads(history), epoch_record]).decode()
            conn.execute(
                "UPDATE jobs SET progress = ?, history = ?, heartbeat = ?, updated_at = ?"
                " WHERE id = ?",
                (
                    orjson.dumps(progress).decode(),
                    history,
                    time.time(),
                    utc_now_iso(precise=True),
                    job_id,
                ),
            )

    def is_cancel_requested(self, job_id: str) -> bool:
        """Whether whoever runs the job should stop: a cancel was asked for, or the job has
        already ended (reaped as stale, say), so nobody waits for its result."""
        if not self._exists():
            return True
        with closing(self._connect()) as conn:
            row = conn.execute(
                "SELECT cancel_requested, status FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return row is None or bool(row["cancel_requested"]) or row["status"] in TERMINAL

    def finish(
        self, job_id: str, status: JobStatus, *, error: str | None = None,
        promotion: Promotion | None = None, owner: str | None = None,
    ) -> bool:  # fmt: skip
        if status not in TERMINAL:
            raise ValueError(f"finish needs a terminal status, got {status!r}")
        if not self._exists():
            return False
        with self._write() as conn:
            return _end(conn, job_id, status, error, promotion, owner) is not None

    def promote(
        self, job_id: str, owner: str, models: ModelStore, artifact: Artifact, *, force: bool
    ) -> Promotion | None:
        """The version kept and the job ended in one write transaction: the job's row cannot
        change (be cancelled or reaped) between the fence's check and the end."""
        if not self._exists():
            return None
        with self._write() as conn:
            row = conn.execute(
                "SELECT model FROM jobs WHERE id = ? AND owner = ? AND status = 'running'"
                " AND cancel_requested = 0",
                (job_id, owner),
            ).fetchone()
            if row is None:
                return None
            promotion = models.promote(row["model"], artifact, force=force)
            _end(conn, job_id, "succeeded", None, promotion, owner)
        return promotion

    def counts(self) -> dict[str, int]:
        """Jobs per status, every status present (zero included)."""
        if not self._exists():
            return dict.fromkeys(STATUSES, 0)
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return dict.fromkeys(STATUSES, 0) | {row[0]: row[1] for row in rows}

    def prune(self, keep: int) -> int:
        """Forget all but the newest ``keep`` finished jobs; returns how many were deleted."""
        if not self._exists():
            return 0
        with self._write() as conn:
            return conn.execute(
                f"DELETE FROM jobs WHERE status IN {_TERMINAL_SQL} AND seq NOT IN"
                f" (SELECT seq FROM jobs WHERE status IN {_TERMINAL_SQL}"
                "  ORDER BY seq DESC LIMIT ?)",
                (max(keep, 0),),
            ).rowcount

    def close(self) -> None:
        """Nothing to let go: each call opens and closes its own connection."""

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; _write issues BEGIN IMMEDIATE itself
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        conn.row_factory = sqlite3.Row
        # WAL + NORMAL survives a crashed process; a power cut may lose the last updates only
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A transaction holding the write lock from its first statement, so what it reads
        cannot change before it writes."""
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _end(
    conn: sqlite3.Connection,
    job_id: str,
    status: JobStatus,
    error: str | None,
    promotion: Promotion | None = None,
    owner: str | None = None,
) -> Job | None:
    """End a job that has not ended yet (and, with ``owner``, that owner holds); returns it, or
    None if it had ended (or is unknown, or another's)."""
    version, promoted, promotion_reason = outcome(promotion)
    changed = conn.execute(
        "UPDATE jobs SET status = ?, error = ?, version = ?, promoted = ?, promotion_reason = ?,"
        " finished_at = ?, updated_at = ? WHERE id = ? AND (? IS NULL OR owner = ?)"
        f" AND status NOT IN {_TERMINAL_SQL}",
        (status, error, version, promoted, promotion_reason, utc_now_iso(),
         utc_now_iso(precise=True), job_id, owner, owner),
    ).rowcount  # fmt: skip
    return _get(conn, job_id) if changed else None
