"""The training child: `run_job` trains one job in its own process and records the outcome.

The runner starts it with the "spawn" context, so the child is a fresh interpreter that imports
this module before calling `run_job`. That is why NumPy, the trainer and the model store are
imported only after `run_job` has set the BLAS thread variables: BLAS reads them once, when NumPy
loads, and a child per job using every core would fight the server's workers (and its
siblings) for them.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from service.jobs.record import INTERRUPTED, Job, JobStatus
from service.jobs.store import JobStore, open_job_store
from service.logs import LogFormat, stream_handler

if TYPE_CHECKING:
    from service.modelstore import ModelStore, Promotion
    from trainer.artifacts import Artifact
    from trainer.fit import Progress

__all__ = [
    "BLAS_THREAD_VARIABLES",
    "CANCELLED_BY_REQUEST",
    "CANCELLED_SHUTDOWN",
    "run_job",
]

log = logging.getLogger("softserve.jobs.child")
T = TypeVar("T")

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CANCELLED_BY_REQUEST = "cancelled by request"
CANCELLED_SHUTDOWN = "cancelled: the server shut down"
PERSIST_FOR = 120.0  # seconds a result is retried while the job store is unreachable
PROGRESS_EVERY = 0.5  # seconds between progress writes within an epoch
CANCEL_CHECK_EVERY = 0.2  # seconds between looks at the store's cancel flag


def run_job(
    job_id: str,
    job_store: str,
    model_store: str,
    data_dir: Path | None,
    parent_pid: int,
    owner: str,
    log_format: LogFormat = "json",
) -> None:
    """Train job ``job_id`` and record its end in the job store at ``job_store``; a new version
    reaches the model store at ``model_store`` only through the job store's ``promote`` (atomic,
    and fenced: only while ``owner``, the runner that claimed the job, still holds it), after
    training succeeded. Both stores are `location`s, opened here once the BLAS limits are set.
    Every write is fenced by ``owner``; a write the store cannot take for now (a database
    restarting) is tried again for up to `PERSIST_FOR` seconds, progress excepted (it is
    dropped: the next one comes soon).

    SIGTERM (sent by the runner when the server shuts down) cancels at the next batch; SIGINT is
    ignored, because a terminal's Ctrl-C reaches the whole process group and the server decides
    what happens to its jobs. Its log lines are the server's format (``log_format``), written
    whole as they come.
    """
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root = logging.getLogger("softserve")
    root.handlers, root.propagate = [stream_handler(log_format)], False
    root.setLevel(logging.INFO)
    store = _Fenced(open_job_store(job_store), owner)
    stop = _StopCheck(store, job_id, parent_pid)
    signal.signal(signal.SIGTERM, stop.on_sigterm)
    job = store.get(job_id)
    if job is None:  # pruned before it started: nothing to report to
        log.warning("job %s is not in the job store (pruned before it started)", job_id)
        return
    try:
        from service.modelstore import open_model_store

        _train(store, job, open_model_store(model_store), data_dir, stop)
    except Exception as exc:  # a bug, not a user's mistake: keep the traceback for the log
        log.exception("job %s failed", job_id)
        store.finish(job_id, "failed", error=f"internal error: {type(exc).__name__}: {exc}")
    finally:
        store.close()


def _train(
    store: _Fenced, job: Job, models: ModelStore, data_dir: Path | None, stop: _StopCheck
) -> None:
    from trainer.config import TrainConfig
    from trainer.data import load_dataset
    from trainer.errors import TrainerError
    from trainer.fit import Cancelled
    from trainer.train import train_model

    try:
        config = TrainConfig.from_dict({"model": job.model, **job.params})
        dataset = load_dataset(data_dir)
        report = _Reporter(store, job.id, config.refit and config.validation_fraction > 0)
        artifact, _ = train_model(config, dataset, progress=report, should_stop=stop)
    except Cancelled:
        stop.record()
        return
    except TrainerError as exc:
        store.finish(job.id, "failed", error=str(exc))
        return
    if stop(fresh=True):  # asked to stop after the last batch: leave the model folder alone
        stop.record()
        return
    try:
        promotion = store.promote(job.id, models, artifact, force=job.force)
    except OSError as exc:  # a full disk, say; the reason without the server's paths
        log.exception("job %s could not save its version", job.id)
        reason = exc.strerror or type(exc).__name__
        store.finish(job.id, "failed", error=f"could not save the new version: {reason}")
        return
    if promotion is None:  # cancelled, or ended by someone else (given up for dead): keep nothing
        log.warning("job %s had ended or been cancelled before its version was kept", job.id)
        stop.record()


class _Fenced:
    """The child's view of the job store: every write fenced by ``owner``, and retried while the
    store says the failure may pass (`JobStore.transient`), for up to `PERSIST_FOR` seconds."""

    def __init__(self, store: JobStore, owner: str) -> None:
        self.store, self.owner = store, owner

    def get(self, job_id: str) -> Job | None:
        return self._retry(lambda: self.store.get(job_id))

    def is_cancel_requested(self, job_id: str, *, otherwise: bool) -> bool:
        """The store's answer, or ``otherwise`` when it cannot answer now."""
        try:
            return self.store.is_cancel_requested(job_id)
        except self.store.transient:
            return otherwise

    def update_progress(
        self, job_id: str, progress: dict[str, Any], record: dict[str, Any] | None
    ) -> None:
        try:
            self.store.update_progress(job_id, progress, record, owner=self.owner)
        except self.store.transient as e:  # dropped: progress is news, not a result
            log.warning("job %s: progress not recorded: %s", job_id, str(e).splitlines()[0])

    def finish(self, job_id: str, status: JobStatus, *, error: str | None = None) -> bool:
        return self._retry(lambda: self.store.finish(job_id, status, error=error, owner=self.owner))

    def promote(
        self, job_id: str, models: ModelStore, artifact: Artifact, *, force: bool
    ) -> Promotion | None:
        return self._retry(
            lambda: self.store.promote(job_id, self.owner, models, artifact, force=force)
        )

    def close(self) -> None:
        self.store.close()

    def _retry(self, call: Callable[[], T]) -> T:
        deadline = time.monotonic() + PERSIST_FOR
        pause = 0.2
        while True:
            try:
                return call()
            except self.store.transient as e:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("job store unavailable, trying again: %s", str(e).splitlines()[0])
                time.sleep(pause)
                pause = min(pause * 2, 5.0)


class _StopCheck:
    """``should_stop`` for the trainer: cancel requested, SIGTERM received, or parent gone."""

    def __init__(self, store: _Fenced, job_id: str, parent_pid: int) -> None:
        self.store, self.job_id, self.parent_pid = store, job_id, parent_pid
        self.terminated = False
        self.requested = False
        self._checked = -float("inf")

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True  # only a flag: the trainer stops cleanly between batches

    def parent_gone(self) -> bool:
        return os.getppid() != self.parent_pid  # re-parented: the server process died

    def __call__(self, *, fresh: bool = False) -> bool:
        if self.terminated or self.parent_gone():
            return True
        now = time.monotonic()
        if fresh or now - self._checked >= CANCEL_CHECK_EVERY:
            self._checked = now
            self.requested = self.store.is_cancel_requested(self.job_id, otherwise=self.requested)
        return self.requested

    def record(self) -> None:
        """End the stopped job. A server that died cancelled nothing: the job failed, in the
        words a restarted worker uses for it, so the record does not depend on which of the
        two gets there first."""
        status: JobStatus = "cancelled"
        error = CANCELLED_BY_REQUEST
        if self.terminated:
            error = CANCELLED_SHUTDOWN
        elif self.parent_gone():
            status, error = "failed", INTERRUPTED
        self.store.finish(self.job_id, status, error=error)


class _Reporter:
    """The trainer's progress callback: writes to the store every ``PROGRESS_EVERY`` seconds
    and at every epoch's end, with that epoch's record."""

    def __init__(self, store: _Fenced, job_id: str, refit: bool) -> None:
        self.store, self.job_id, self.refit = store, job_id, refit
        self.select_steps = 0  # known once the selection run reports its batches
        self.fraction = 0.0
        self._written = -float("inf")

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if progress.record is None and now - self._written < PROGRESS_EVERY:
            return
        self._written = now
        record = None if progress.record is None else progress.record.to_dict()
        self.store.update_progress(self.job_id, self.summary(progress), record)

    def summary(self, p: Progress) -> dict[str, Any]:
        done_in_phase = (p.epoch - 1) * p.batches + p.batch
        if p.phase == "select":
            self.select_steps = p.epochs * p.batches
            # the refit's length is the best epoch, unknown until selection ends: guess as long
            total = self.select_steps * (2 if self.refit else 1)
            step = done_in_phase
        else:
            total = self.select_steps + p.epochs * p.batches
            step = self.select_steps + done_in_phase
        # the estimate changes when the refit starts; a progress bar should not move back
        self.fraction = max(self.fraction, min(step / total, 1.0))
        return {
            "phase": p.phase, "epoch": p.epoch, "epochs": p.epochs,
            "batch": p.batch, "batches": p.batches,
            "step": step, "total_steps": total, "fraction": self.fraction,
        }  # fmt: skip
