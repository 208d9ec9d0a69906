"""What every job store does: the interface the runner, the training child and the routes use.

A store keeps the jobs of every worker (and, with a shared database, of every replica): each
method is one atomic step, safe from any thread or process. `service.jobs.sqlite` is the
embedded default.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from service.jobs.record import Job, JobStatus

if TYPE_CHECKING:  # not at run time: the training child imports this before NumPy may load
    from service.modelstore import ModelStore, Promotion
    from trainer.artifacts import Artifact

__all__ = ["JobStore", "QueueFull", "open_job_store"]


class QueueFull(Exception):
    """The queue limit is reached; the message says how full it is."""


class JobStore(Protocol):
    # What open_job_store takes to open this store again in another process (a training child):
    # plain text, so the child can open it before anything heavy is imported; never a secret.
    location: str
    # What a call may raise that trying again later can mend (a lost connection, a lock held
    # too long): a training child retries these rather than lose its result.
    transient: tuple[type[Exception], ...]

    def submit(
        self, model: str, params: dict[str, Any], force: bool, *, queue_limit: int,
        request_id: str | None = None,
    ) -> Job:  # fmt: skip
        """Queue a job, or raise QueueFull when ``queue_limit`` jobs are already waiting."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def list(self, *, limit: int = 50, status: str | None = None) -> builtins.list[Job]:
        """The newest ``limit`` jobs, newest first, optionally only those in ``status``."""
        ...

    def counts(self) -> dict[str, int]:
        """Jobs per status, every status present (zero included)."""
        ...

    def request_cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job at once; flag a running one (its child stops at the next batch).
        A finished job is left as it is. Returns the job after, or None if there is none."""
        ...

    def claim(self, owner: str, *, concurrency: int) -> Job | None:
        """Take the oldest queued job for ``owner``, if fewer than ``concurrency`` jobs run; each
        job goes to exactly one caller."""
        ...

    def heartbeat(self, owner: str) -> None:
        """Mark ``owner``'s running jobs alive."""
        ...

    def reap(
        self, *, owner: str, stale_after: float, owner_alive: Callable[[str], bool] | None = None
    ) -> builtins.list[Job]:
        """Fail, as interrupted, the running jobs of other owners that are gone; returns them."""
        ...

    def update_progress(
        self, job_id: str, progress: dict[str, Any], epoch_record: dict[str, Any] | None = None,
        *, owner: str | None = None,
    ) -> None:  # fmt: skip
        """Record where a running job is (and a finished epoch, if given); with ``owner``, only
        while that owner runs it."""
        ...

    def is_cancel_requested(self, job_id: str) -> bool:
        """Whether whoever runs the job should stop (cancelled, or already ended)."""
        ...

    def finish(
        self, job_id: str, status: JobStatus, *, error: str | None = None,
        promotion: Promotion | None = None, owner: str | None = None,
    ) -> bool:  # fmt: skip
        """End a job (with the version it made, and whether and why it was promoted), unless it
        has already ended, or (``owner`` given) another owner holds it; returns whether this
        call ended it."""
        ...

    def promote(
        self, job_id: str, owner: str, models: ModelStore, artifact: Artifact, *, force: bool
    ) -> Promotion | None:
        """Keep the job's new version in ``models``, active as the promotion rule says, and end
        the job succeeded: one step, fenced by owner and state. Only while ``owner`` runs the job
        and nobody asked to cancel it; otherwise None, and nothing is kept. So an owner that was
        given up for dead (its lease expired) and comes back promotes nothing."""
        ...

    def prune(self, keep: int) -> int:
        """Forget all but the newest ``keep`` finished jobs; returns how many were deleted."""
        ...

    def close(self) -> None:
        """Let go of what the store holds open (a database's connections)."""
        ...


def open_job_store(location: str) -> JobStore:
    """The store at ``location`` (a `JobStore.location`), opened again, e.g. in a child. A
    PostgreSQL location has no password: the URL comes from SOFTSERVE_DATABASE_URL in the
    environment when it names the same database."""
    if location.startswith(("postgresql://", "postgres://")):
        from service.jobs.postgres import PostgresJobStore
        from service.pg import env_url

        return PostgresJobStore(env_url(location))
    from service.jobs.sqlite import SQLiteJobStore

    return SQLiteJobStore(Path(location))
