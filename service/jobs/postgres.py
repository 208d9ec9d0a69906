"""The job store in PostgreSQL (15 or later), for replicas on several hosts sharing one queue: the
same `JobStore` contract as `service.jobs.sqlite`, tested by the same suite.

- Every method is one transaction on a pooled connection (psycopg 3, psycopg_pool).
- Submit and claim take one advisory transaction lock, so that the queue limit and
  ``concurrency`` hold across every replica: two replicas never both see a free slot.
- A claim takes the oldest queued row ``FOR UPDATE SKIP LOCKED``; it goes to one caller.
- Heartbeats and staleness are measured by the database's clock, never a replica's.
- A job's writes are fenced by its state (an ended job is never changed again) and, for its
  owner's writes, by owner. Promotion keeps the version, moves the active pointer and ends the
  job in one transaction with the job's row locked, so an owner given up for dead (its lease
  expired, its job reaped) promotes nothing when it comes back.
- The table is created (and later migrated) under another advisory lock, with a schema-version
  table, so replicas that start together do not race.

``location`` leaves the password out; a child process opening the store again takes the URL
from its environment (`service.pg.env_url`).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg_pool
from psycopg.types.json import Jsonb

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
from service.pg import QUEUE_LOCK, Connection, Tables
from trainer.timestamps import utc_now_iso

if TYPE_CHECKING:
    from service.modelstore import ModelStore, Promotion
    from trainer.artifacts import Artifact

__all__ = ["SCHEMA_VERSION", "PostgresJobStore"]

SCHEMA_VERSION = 1
_TERMINAL = sorted(TERMINAL)
_FIELDS = tuple(field.name for field in fields(Job))
_SCHEMA = """
CREATE TABLE IF NOT EXISTS softserve_jobs (
    seq BIGSERIAL PRIMARY KEY,  -- submission order: the ids are random
    id TEXT NOT NULL UNIQUE, model TEXT NOT NULL, params JSONB NOT NULL, force BOOLEAN NOT NULL,
    status TEXT NOT NULL, cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, updated_at TEXT NOT NULL,
    owner TEXT, heartbeat TIMESTAMPTZ,  -- the database's clock, as leases need
    progress JSONB, history JSONB NOT NULL DEFAULT '[]',
    error TEXT, version TEXT, promoted BOOLEAN, promotion_reason TEXT, request_id TEXT
);
CREATE INDEX IF NOT EXISTS softserve_jobs_by_status ON softserve_jobs (status, seq);
"""


def _job(row: dict[str, Any]) -> Job:
    return Job(**{name: row[name] for name in _FIELDS})


class PostgresJobStore(Tables):
    """The ``softserve_jobs`` table of the database at ``url`` (a `JobStore`)."""

    transient: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg_pool.PoolTimeout)

    component, schema, schema_version = "jobs", _SCHEMA, SCHEMA_VERSION

    def submit(
        self, model: str, params: dict[str, Any], force: bool, *, queue_limit: int,
        request_id: str | None = None,
    ) -> Job:  # fmt: skip
        """Queue a job, or raise QueueFull when ``queue_limit`` jobs are already waiting."""
        with self._tx(QUEUE_LOCK) as conn:
            queued = _count(conn, "queued")
            if queued >= queue_limit:
                jobs = "1 job is" if queued == 1 else f"{queued} jobs are"
                raise QueueFull(f"{jobs} already queued (limit {queue_limit}); try again later")
            row = conn.execute(
                "INSERT INTO softserve_jobs (id, model, params, force, status, created_at,"
                " updated_at, request_id) VALUES (%s, %s, %s, %s, 'queued', %s, %s, %s)"
                " RETURNING *",
                (uuid.uuid4().hex, model, Jsonb(params), force, utc_now_iso(),
                 utc_now_iso(precise=True), request_id),
            ).fetchone()  # fmt: skip
            assert row is not None
            return _job(row)

    def get(self, job_id: str) -> Job | None:
        with self._tx() as conn:
            return _get(conn, job_id)

    def list(self, *, limit: int = 50, status: str | None = None) -> builtins.list[Job]:
        """The newest ``limit`` jobs, newest first, optionally only those in ``status``."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM softserve_jobs WHERE %s::text IS NULL OR status = %s"
                " ORDER BY seq DESC LIMIT %s",
                (status, status, limit),
            ).fetchall()
        return [_job(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per status, every status present (zero included)."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT status, COUNT(*) AS n FROM softserve_jobs GROUP BY status"
            ).fetchall()
        return dict.fromkeys(STATUSES, 0) | {row["status"]: int(row["n"]) for row in rows}

    def request_cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job at once; flag a running one (its child stops at the next batch).
        A finished job is left as it is. Returns the job after, or None if there is none."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE softserve_jobs SET status = 'cancelled', error = %s,"
                " cancel_requested = TRUE, finished_at = %s, updated_at = %s"
                " WHERE id = %s AND status = 'queued'",
                (CANCELLED_BEFORE_START, utc_now_iso(), utc_now_iso(precise=True), job_id),
            )
            conn.execute(
                "UPDATE softserve_jobs SET cancel_requested = TRUE, updated_at = %s"
                " WHERE id = %s AND status = 'running' AND NOT cancel_requested",
                (utc_now_iso(precise=True), job_id),
            )
            return _get(conn, job_id)

    def claim(self, owner: str, *, concurrency: int) -> Job | None:
        """Take the oldest queued job for ``owner``, if fewer than ``concurrency`` jobs run
        across every replica; each job goes to exactly one caller."""
        with self._tx(QUEUE_LOCK) as conn:
            if _count(conn, "running") >= concurrency:
                return None
            row = conn.execute(
                "SELECT id FROM softserve_jobs WHERE status = 'queued' ORDER BY seq LIMIT 1"
                " FOR UPDATE SKIP LOCKED"
            ).fetchone()
            if row is None:
                return None
            claimed = conn.execute(
                "UPDATE softserve_jobs SET status = 'running', owner = %s, started_at = %s,"
                " heartbeat = now(), updated_at = %s WHERE id = %s RETURNING *",
                (owner, utc_now_iso(), utc_now_iso(precise=True), row["id"]),
            ).fetchone()
            return None if claimed is None else _job(claimed)

    def heartbeat(self, owner: str) -> None:
        """Mark ``owner``'s running jobs alive, by the database's clock."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE softserve_jobs SET heartbeat = now()"
                " WHERE owner = %s AND status = 'running'",
                (owner,),
            )

    def reap(
        self, *, owner: str, stale_after: float, owner_alive: Callable[[str], bool] | None = None
    ) -> builtins.list[Job]:
        """Fail the running jobs of other owners that are gone: silent for ``stale_after``
        seconds by the database's clock, or owned by a process ``owner_alive`` says is dead.
        ``owner``'s own jobs are left alone. Returns the jobs changed."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id, owner, heartbeat <= now() - make_interval(secs => %s) AS stale"
                " FROM softserve_jobs WHERE status = 'running' AND owner IS DISTINCT FROM %s"
                " FOR UPDATE SKIP LOCKED",
                (stale_after, owner),
            ).fetchall()
            gone = [
                _end(conn, row["id"], "failed", INTERRUPTED)
                for row in rows
                if row["stale"] or (owner_alive is not None and not owner_alive(row["owner"]))
            ]
        return [job for job in gone if job is not None]

    def update_progress(
        self, job_id: str, progress: dict[str, Any], epoch_record: dict[str, Any] | None = None,
        *, owner: str | None = None,
    ) -> None:  # fmt: skip
        """Record where a running job is (and a finished epoch, if given); bumps its heartbeat.
        Nothing changes once the job has ended (cancelled or reaped meanwhile), nor, with
        ``owner``, while another owner holds it."""
        added = Jsonb([epoch_record] if epoch_record is not None else [])
        with self._tx() as conn:
            conn.execute(
                "UPDATE softserve_jobs SET progress = %s, history = history || %s,"
                " heartbeat = now(), updated_at = %s WHERE id = %s AND status = 'running'"
                " AND (%s::text IS NULL OR owner = %s)",
                (Jsonb(progress), added, utc_now_iso(precise=True), job_id, owner, owner),
            )

    def is_cancel_requested(self, job_id: str) -> bool:
        """Whether whoever runs the job should stop: a cancel was asked for, or the job has
        already ended (reaped as stale, say), so nobody waits for its result."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT cancel_requested, status FROM softserve_jobs WHERE id = %s", (job_id,)
            ).fetchone()
        return row is None or bool(row["cancel_requested"]) or row["status"] in TERMINAL

    def finish(
        self, job_id: str, status: JobStatus, *, error: str | None = None,
        promotion: Promotion | None = None, owner: str | None = None,
    ) -> bool:  # fmt: skip
        if status not in TERMINAL:
            raise ValueError(f"finish needs a terminal status, got {status!r}")
        with self._tx() as conn:
            return _end(conn, job_id, status, error, promotion, owner) is not None

    def promote(
        self, job_id: str, owner: str, models: ModelStore, artifact: Artifact, *, force: bool
    ) -> Promotion | None:
        """With the job's row locked: the fence checked, the version kept and made active as the
        rule says, and the job ended, in one transaction when ``models`` is this database (the
        pointer's NOTIFY goes out at its commit); else the row stays locked while ``models``
        keeps the version, so no cancel or reap slips in between."""
        from service.modelstore.postgres import PostgresModelStore, promote_in, to_bytes

        shared = isinstance(models, PostgresModelStore) and models.location == self.location
        data = to_bytes(artifact) if shared else b""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT model FROM softserve_jobs WHERE id = %s AND owner = %s"
                " AND status = 'running' AND NOT cancel_requested FOR UPDATE",
                (job_id, owner),
            ).fetchone()
            if row is None:
                return None
            if shared:
                promotion = promote_in(
                    conn, row["model"], artifact, data, force=force, job_id=job_id
                )
            else:
                promotion = models.promote(row["model"], artifact, force=force)
            _end(conn, job_id, "succeeded", None, promotion, owner)
        return promotion

    def prune(self, keep: int) -> int:
        """Forget all but the newest ``keep`` finished jobs; returns how many were deleted."""
        with self._tx() as conn:
            return conn.execute(
                "DELETE FROM softserve_jobs WHERE status = ANY(%s) AND seq NOT IN"
                " (SELECT seq FROM softserve_jobs WHERE status = ANY(%s)"
                "  ORDER BY seq DESC LIMIT %s)",
                (_TERMINAL, _TERMINAL, max(keep, 0)),
            ).rowcount


def _count(conn: Connection, status: str) -> int:
    row = conn.execute(
        "SELECT COUNT(*) AS n FROM softserve_jobs WHERE status = %s", (status,)
    ).fetchone()
    return 0 if row is None else int(row["n"])


def _get(conn: Connection, job_id: str) -> Job | None:
    row = conn.execute("SELECT * FROM softserve_jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else _job(row)


def _end(
    conn: Connection,
    job_id: str,
    status: JobStatus,
    error: str | None,
    promotion: Promotion | None = None,
    owner: str | None = None,
) -> Job | None:
    """End a job that has not ended yet (and, with ``owner``, that owner holds); returns it, or
    None if it had ended (or is unknown, or another's)."""
    version, promoted, reason = outcome(promotion)
    row = conn.execute(
        "UPDATE softserve_jobs SET status = %s, error = %s, version = %s, promoted = %s,"
        " promotion_reason = %s, finished_at = %s, updated_at = %s"
        " WHERE id = %s AND (%s::text IS NULL OR owner = %s) AND NOT (status = ANY(%s))"
        " RETURNING *",
        (status, error, version, promoted, reason, utc_now_iso(), utc_now_iso(precise=True),
         job_id, owner, owner, _TERMINAL),
    ).fetchone()  # fmt: skip
    return None if row is None else _job(row)
