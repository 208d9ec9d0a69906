"""The scheduler in each uvicorn worker: claims queued jobs and runs each in a child process.

Workers share nothing but the job store. A worker claims a job (each job goes to exactly one
claimer), starts `service.jobs.child.run_job` in a "spawn" child, keeps
the job's heartbeat fresh while the child lives, and records how the child ended if the child
could not say so itself (killed, crashed). A worker that dies leaves its jobs "running"; the
others fail them as interrupted once the heartbeat is stale or the owner's pid is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import uuid
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from service.jobs.child import CANCELLED_SHUTDOWN, run_job
from service.jobs.record import Job, JobStatus
from service.jobs.store import JobStore
from service.logs import LogFormat
from service.modelstore import ModelStore

__all__ = ["STALE_AFTER", "JobRunner", "exit_reason", "new_owner_id", "owner_alive", "pid_alive"]

log = logging.getLogger("softserve.jobs")

STALE_AFTER = 10.0  # seconds without a heartbeat before another worker fails a running job
_HOST = socket.gethostname()
_LIVE_OWNERS: set[str] = set()  # owner ids of the runners started in this process


def new_owner_id(replica: str | None = None) -> str:
    """``host:pid:random[:replica]``: the pid says who to check, the random part tells a
    restarted worker that reuses a pid (common in containers, where pids start at 1) from the one
    before it, and the replica (SOFTSERVE_REPLICA_NAME) is what a job's record shows."""
    owner = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return owner if replica is None else f"{owner}:{replica}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def owner_alive(owner: str) -> bool:
    """False only when ``owner`` is certainly dead: a process of this host that no longer
    exists, or an earlier runner of this very pid. Other hosts are left to the heartbeat."""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != _HOST or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return owner in _LIVE_OWNERS
    return pid_alive(pid)


def exit_reason(exitcode: int | None) -> str:
    """Why a job failed whose child ended without recording an outcome."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else "?"
        hint = " - e.g. out of memory or kill -9" if -exitcode == signal.SIGKILL else ""
        return f"training process was killed by signal {-exitcode} ({name}{hint})"
    if exitcode == 0:
        return "training process exited without recording a result"
    return f"training process exited with code {exitcode}"


class JobRunner:
    """Runs up to ``concurrency`` jobs at once (over all workers sharing ``store``).

    Store calls go to threads, so the event loop never waits on a store's lock; ``on_finished``
    also runs in a thread, with the job as the store has it at the end. Each child opens the job
    store and the model store again from their locations, and gets the data folder.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        models: ModelStore,
        data_dir: Path | None,
        concurrency: int,
        on_finished: Callable[[Job], None] | None = None,
        poll_interval: float = 0.5,
        log_format: LogFormat = "json",
        replica: str | None = None,
    ) -> None:
        self.store, self.models, self.data_dir = store, models, data_dir
        self.concurrency, self.on_finished, self.poll_interval = (
            concurrency, on_finished, poll_interval,
        )  # fmt: skip
        self.owner = new_owner_id(replica)
        self.log_format = log_format
        self._children: dict[str, BaseProcess] = {}
        self._context = multiprocessing.get_context("spawn")  # no fork: the server has threads
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running_jobs(self) -> list[str]:
        """Ids of the jobs whose child this runner is watching."""
        return list(self._children)

    def child_pid(self, job_id: str) -> int | None:
        process = self._children.get(job_id)
        return None if process is None else process.pid

    async def start(self) -> None:
        """Fail the jobs dead workers left running, then start scheduling."""
        _LIVE_OWNERS.add(self.owner)
        for job in await asyncio.to_thread(self._reap):
            log.warning("job %s was interrupted (owner %s is gone)", job.id, job.owner)
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=f"job runner {self.owner}")

    def wake(self) -> None:
        """Look for queued jobs now rather than at the next poll (call on the event loop)."""
        self._wake.set()

    async def stop(self, *, grace: float = 3.0) -> None:
        """Stop scheduling, cancel this worker's running jobs ("cancelled: the server shut
        down"), give their children ``grace`` seconds to exit, then kill the rest."""
        self._stopping = True
        if self._task is not None:
            self._wake.set()
            await self._task  # finishes its pass: no job is claimed without a child after this
            self._task = None
        children = dict(self._children)
        # a child that has already exited ended on its own: its exit code tells how
        stopped = [job_id for job_id, process in children.items() if process.is_alive()]
        for job_id in stopped:
            children[job_id].terminate()  # SIGTERM: the child cancels at its next batch
        await asyncio.to_thread(self._request_cancels, stopped)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (alive := [p for p in children.values() if p.is_alive()]) and (
            left := deadline - loop.time()
        ) > 0:
            await asyncio.to_thread(wait, [p.sentinel for p in alive], left)
        for process in alive:
            log.warning("killing training process %s: still running after %ss", process.pid, grace)
            process.kill()
        for job_id in children:
            await self._settle(job_id, CANCELLED_SHUTDOWN if job_id in stopped else None)
        _LIVE_OWNERS.discard(self.owner)

    async def _loop(self) -> None:
        failing = False  # a failure is logged once, not every pass until the store is back
        while not self._stopping:
            try:
                await self._tick()
            except Exception:  # e.g. a lost database: keep scheduling, the next pass may succeed
                if not failing:
                    log.exception("job runner pass failed; retrying every %ss", self.poll_interval)
                failing = True
            else:
                if failing:
                    log.info("job runner passes succeed again")
                failing = False
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            self._wake.clear()

    async def _tick(self) -> None:
        for job_id, process in list(self._children.items()):
            if not process.is_alive():
                await self._settle(job_id, None)
        if self._children:
            await asyncio.to_thread(self.store.heartbeat, self.owner)
        for job in await asyncio.to_thread(self._reap):
            log.warning("job %s was interrupted (owner %s is gone)", job.id, job.owner)
        while not self._stopping and len(self._children) < self.concurrency:
            claimed = await asyncio.to_thread(
                self.store.claim, self.owner, concurrency=self.concurrency
            )
            if claimed is None:
                break
            await self._spawn(claimed)

    async def _spawn(self, job: Job) -> None:
        process = self._context.Process(
            target=run_job,
            args=(
                job.id,
                self.store.location,
                self.models.location,
                self.data_dir,
                os.getpid(),
                self.owner,
                self.log_format,
            ),
            name=f"softserve-train-{job.id[:8]}",
            daemon=False,
        )
        try:
            process.start()  # about a millisecond: the child's slow imports happen in the child
        except Exception as exc:
            error = f"could not start training: {exc}"
            await asyncio.to_thread(
                self.store.finish, job.id, "failed", error=error, owner=self.owner
            )
            raise
        self._children[job.id] = process
        log.info("job %s (%s) started in process %s", job.id, job.model, process.pid)

    async def _settle(self, job_id: str, cancel_reason: str | None) -> None:
        """Forget a child that has exited, after ending its job if the child did not: failed,
        saying how the child exited, or cancelled with ``cancel_reason`` on shutdown. Then
        report the job. If the store fails, the child stays listed and the next pass retries."""
        process = self._children[job_id]
        await asyncio.to_thread(process.join)
        status: JobStatus = "failed" if cancel_reason is None else "cancelled"
        reason = exit_reason(process.exitcode) if cancel_reason is None else cancel_reason

        def record() -> Job | None:
            self.store.finish(job_id, status, error=reason, owner=self.owner)
            return self.store.get(job_id)

        job = await asyncio.to_thread(record)
        del self._children[job_id]
        process.close()
        if job is None:  # pruned meanwhile: nothing to report
            return
        outcome = f": {job.error}" if job.error else ""
        if job.version is not None:
            outcome = f": version {job.version} of {job.model!r}, {job.promotion_reason}"
        log.info("job %s (request %s) ended %s%s", job_id, job.request_id, job.status, outcome)
        if self.on_finished is not None:
            try:
                await asyncio.to_thread(self.on_finished, job)
            except Exception:  # the job is over either way; a failing hook is for the log
                log.exception("on_finished failed for job %s", job_id)

    def _request_cancels(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self.store.request_cancel(job_id)

    def _reap(self) -> list[Job]:
        return self.store.reap(owner=self.owner, stale_after=STALE_AFTER, owner_alive=owner_alive)
