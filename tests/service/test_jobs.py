"""The job runner with real training children on synthetic data: success and promotion, cancel,
kill -9, shutdown, two runners on one store, and the jobs a dead worker leaves behind."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from service.jobs.child import run_job
from service.jobs.record import INTERRUPTED, TERMINAL, Job
from service.jobs.runner import JobRunner, exit_reason, new_owner_id, owner_alive, pid_alive
from service.jobs.sqlite import SQLiteJobStore as JobStore
from service.modelstore.folder import FolderModelStore
from tests.support.server import copy_shipped_models
from tests.synthetic import as_synthetic_task, make_images, write_dataset, write_idx
from trainer import artifacts
from trainer.data import FILES

ROOT = Path(__file__).resolve().parents[2]
QUICK = {"epochs": 2}
# ~550 one-row batches an epoch for 1000 epochs: still running whenever a test acts on it
LONG = {"epochs": 1000, "batch_size": 1}
WAIT = 60.0


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """The shipped models, as models of the synthetic classes the jobs here train on."""
    return as_synthetic_task(copy_shipped_models(tmp_path / "models"))


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "state" / "jobs.sqlite3")


class Finished:
    """An on_finished hook that remembers what it was given (it runs in a worker thread)."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def __call__(self, job: Job) -> None:
        self.jobs.append(job)


def runner_for(store: JobStore, model_dir: Path, data_dir: Path | None, **kwargs: Any) -> JobRunner:
    kwargs.setdefault("concurrency", 1)
    kwargs.setdefault("poll_interval", 0.05)
    return JobRunner(store, models=FolderModelStore(model_dir), data_dir=data_dir, **kwargs)


@asynccontextmanager
async def started(*runners: JobRunner) -> AsyncIterator[None]:
    for runner in runners:
        await runner.start()
    try:
        yield
    finally:  # never leave a training child behind, whatever the test did
        for runner in runners:
            await runner.stop(grace=WAIT)


async def wait_for(store: JobStore, job_id: str, done: Callable[[Job], bool]) -> Job:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        job = await asyncio.to_thread(store.get, job_id)
        assert job is not None
        if done(job):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not get there within {WAIT}s: {job}")


def ended(job: Job) -> bool:
    return job.status in TERMINAL


def training(job: Job) -> bool:
    return job.status in TERMINAL or (job.status == "running" and job.progress is not None)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under folder with its size and mtime: a save of any kind changes this."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_owner_ids_and_liveness() -> None:
    owner = new_owner_id()
    host, pid, tag = owner.split(":")
    assert (host, int(pid), len(tag)) == (socket.gethostname(), os.getpid(), 8)
    assert pid_alive(os.getpid())
    assert not owner_alive(f"{host}:{os.getpid()}:00000000")  # this pid, an earlier runner
    assert owner_alive(f"another-{host}:1:00000000")  # other hosts: left to the heartbeat
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(child.stdout)
    if not pid_alive(dead):  # unless the pid was already reused
        assert not owner_alive(f"{host}:{dead}:00000000")


def test_exit_reasons_name_the_code_or_the_signal() -> None:
    assert exit_reason(3) == "training process exited with code 3"
    assert exit_reason(-9).startswith("training process was killed by signal 9 (SIGKILL")
    assert "out of memory or kill -9" in exit_reason(-9)
    assert exit_reason(-15) == "training process was killed by signal 15 (SIGTERM)"
    assert "without recording a result" in exit_reason(0)


def test_the_child_module_loads_without_numpy() -> None:
    """A spawned child imports service.jobs.child before run_job sets the BLAS thread limits,
    which only work if NumPy is not loaded yet."""
    code = "import sys, service.jobs.child; print(sorted(m for m in sys.modules if 'numpy' in m))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_a_job_trains_saves_and_promotes(
    store: JobStore, model_dir: Path, synthetic_data_dir: Path
) -> None:
    finished = Finished()
    runner = runner_for(store, model_dir, synthetic_data_dir, on_finished=finished)
    shipped = artifacts.load(model_dir / "softmax.npz")

    async def go() -> Job:
        async with started(runner):
            job = store.submit("softmax", QUICK, False, queue_limit=8)
            runner.wake()
            return await wait_for(store, job.id, ended)

    job = asyncio.run(go())
    assert job.status == "succeeded", job.error
    assert [(r["phase"], r["epoch"]) for r in job.history][:2] == [("select", 1), ("select", 2)]
    assert {r["phase"] for r in job.history} == {"select", "refit"}
    assert job.progress is not None and job.progress["fraction"] == 1.0
    assert job.progress["step"] == job.progress["total_steps"]
    assert job.version is not None
    new = FolderModelStore(model_dir).load_version("softmax", job.version)
    accuracy = new.meta["metrics"]["test"]["accuracy"]
    shipped_accuracy = shipped.meta["metrics"]["test"]["accuracy"]  # 0.848 on Fashion-MNIST
    # the synthetic classes are easy: the new model beats the shipped one, so it is promoted
    assert accuracy > shipped_accuracy
    assert job.promoted is True
    assert job.promotion_reason == (
        f"promoted: test accuracy {accuracy:.4f} is not below the active version "
        f"{shipped.version}'s {shipped_accuracy:.4f}"
    )
    assert artifacts.load(model_dir / "softmax.npz").version == job.version
    assert (model_dir / "softmax" / f"{shipped.version}.npz").is_file()  # archived, for rollback
    assert [j.id for j in finished.jobs] == [job.id]
    assert finished.jobs[0].status == "succeeded"
    assert runner.running_jobs == []


def test_a_worse_model_is_kept_but_not_promoted_unless_forced(
    store: JobStore, model_dir: Path, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "noisy")
    _, labels = make_images(200, 10, 1)  # the test split write_dataset wrote
    labels[:80] = (labels[:80] + 1) % 10  # 40% wrong labels: test accuracy about 0.6
    write_idx(data / f"{FILES['test_labels']}.gz", labels)
    runner = runner_for(store, model_dir, data)
    active = snapshot(model_dir)["softmax.npz"]
    shipped_accuracy = artifacts.load(model_dir / "softmax.npz").meta["metrics"]["test"]["accuracy"]

    async def go() -> tuple[Job, Job]:
        async with started(runner):
            kept = store.submit("softmax", QUICK, False, queue_limit=8)
            forced = store.submit("softmax", QUICK, True, queue_limit=8)
            runner.wake()
            return await wait_for(store, kept.id, ended), await wait_for(store, forced.id, ended)

    kept, forced = asyncio.run(go())
    assert kept.status == "succeeded" and kept.version is not None
    assert kept.promoted is False
    assert kept.promotion_reason is not None
    assert kept.promotion_reason.startswith("not promoted: test accuracy 0.")
    assert f"{shipped_accuracy:.4f} (set force to promote anyway)" in kept.promotion_reason
    assert (model_dir / "softmax" / f"{kept.version}.npz").is_file()
    assert forced.status == "succeeded" and forced.version is not None
    assert (forced.promoted, forced.promotion_reason) == (True, "promoted: force was set")
    assert artifacts.load(model_dir / "softmax.npz").version == forced.version
    assert snapshot(model_dir)["softmax.npz"] != active


@pytest.mark.parametrize(
    ("params", "data", "message"),
    [
        ({"epochs": 0}, "synthetic", "epochs must be a whole number from 1 to 1000, got 0"),
        ({"speed": 9}, "synthetic", "unknown training parameter 'speed'"),
        ({"epochs": 1}, "missing", "data folder does not exist"),
        (  # a constant rate this high with this much decay blows up in the third epoch
            {"epochs": 5, "learning_rate": 100.0, "l2": 100.0, "schedule": "constant"},
            "synthetic",
            "training diverged in select epoch",
        ),
    ],
)
def test_trainer_errors_fail_the_job_with_their_message(
    store: JobStore,
    model_dir: Path,
    synthetic_data_dir: Path,
    params: dict[str, Any],
    data: str,
    message: str,
) -> None:
    data_dir = synthetic_data_dir if data == "synthetic" else synthetic_data_dir / "missing"
    runner = runner_for(store, model_dir, data_dir)
    before = snapshot(model_dir)

    async def go() -> Job:
        async with started(runner):
            job = store.submit("softmax", params, False, queue_limit=8)
            runner.wake()
            return await wait_for(store, job.id, ended)

    job = asyncio.run(go())
    assert job.status == "failed"
    assert job.error is not None and message in job.error
    assert job.version is None
    assert snapshot(model_dir) == before


def test_cancelling_a_running_job_stops_it_and_saves_nothing(
    store: JobStore, model_dir: Path, synthetic_data_dir: Path
) -> None:
    finished = Finished()
    runner = runner_for(store, model_dir, synthetic_data_dir, on_finished=finished)
    before = snapshot(model_dir)

    async def go() -> Job:
        async with started(runner):
            job = store.submit("softmax", LONG, False, queue_limit=8)
            runner.wake()
            await wait_for(store, job.id, training)
            await asyncio.to_thread(store.request_cancel, job.id)
            job = await wait_for(store, job.id, ended)
            await wait_for(store, job.id, lambda _: not runner.running_jobs)
            return job

    job = asyncio.run(go())
    assert (job.status, job.error) == ("cancelled", "cancelled by request")
    assert job.cancel_requested and job.version is None and job.promoted is None
    assert snapshot(model_dir) == before  # no version, no temp file
    assert [j.id for j in finished.jobs] == [job.id]


def test_kill_9_of_the_child_fails_the_job_and_leaves_the_models_alone(
    store: JobStore, model_dir: Path, synthetic_data_dir: Path
) -> None:
    runner = runner_for(store, model_dir, synthetic_data_dir)
    before = snapshot(model_dir)

    async def go() -> Job:
        async with started(runner):
            job = store.submit("softmax", LONG, False, queue_limit=8)
            runner.wake()
            await wait_for(store, job.id, training)
            pid = runner.child_pid(job.id)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            return await wait_for(store, job.id, ended)

    job = asyncio.run(go())
    assert job.status == "failed"
    assert job.error is not None
    assert job.error.startswith("training process was killed by signal 9 (SIGKILL")
    assert snapshot(model_dir) == before


def test_stop_cancels_the_running_job_as_a_shutdown(
    store: JobStore, model_dir: Path, synthetic_data_dir: Path
) -> None:
    finished = Finished()
    # no polling to speak of: wake() alone must get the job started
    runner = runner_for(
        store, model_dir, synthetic_data_dir, on_finished=finished, poll_interval=3600.0
    )
    before = snapshot(model_dir)

    async def go() -> tuple[Job, int]:
        await runner.start()
        try:
            job = store.submit("softmax", LONG, False, queue_limit=8)
            runner.wake()
            await wait_for(store, job.id, training)
            pid = runner.child_pid(job.id)
            assert pid is not None
        finally:
            await runner.stop(grace=WAIT)
        fresh = store.get(job.id)
        assert fresh is not None
        return fresh, pid

    job, pid = asyncio.run(go())
    assert (job.status, job.error) == ("cancelled", "cancelled: the server shut down")
    assert runner.running_jobs == [] and runner.child_pid(job.id) is None
    assert not pid_alive(pid)  # exited and reaped
    assert snapshot(model_dir) == before
    assert [j.id for j in finished.jobs] == [job.id]


def test_two_runners_on_one_store_run_each_job_once(
    store: JobStore, model_dir: Path, synthetic_data_dir: Path
) -> None:
    active = artifacts.load(model_dir / "softmax.npz").version
    hooks = Finished(), Finished()
    runners = [
        runner_for(store, model_dir, synthetic_data_dir, concurrency=2, on_finished=hook)
        for hook in hooks
    ]
    most_running = 0

    async def go() -> list[Job]:
        nonlocal most_running
        async with started(*runners):
            ids = [store.submit("softmax", {"epochs": 1, "seed": i}, False, queue_limit=8).id
                   for i in range(5)]  # fmt: skip
            for runner in runners:
                runner.wake()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            while loop.time() < deadline:
                jobs = [await asyncio.to_thread(store.get, job_id) for job_id in ids]
                counts = await asyncio.to_thread(store.counts)
                most_running = max(most_running, counts["running"])
                if all(job is not None and ended(job) for job in jobs):
                    return [job for job in jobs if job is not None]
                await asyncio.sleep(0.02)
            raise AssertionError(f"jobs still not ended after {WAIT}s: {counts}")

    jobs = asyncio.run(go())
    assert [job.status for job in jobs] == ["succeeded"] * 5
    assert most_running <= 2  # concurrency holds over both runners
    reported = [job.id for hook in hooks for job in hook.jobs]
    assert sorted(reported) == sorted(job.id for job in jobs)  # each once, by one runner
    assert {job.owner for job in jobs} <= {runner.owner for runner in runners}
    assert all(len(job.history) == 2 for job in jobs)  # one select epoch, one refit epoch
    versions = {job.version for job in jobs}
    assert len(versions) == 5
    assert set(FolderModelStore(model_dir).versions("softmax")) == versions | {active}


def _parent_of_a_training_child(
    job_id: str, db: str, model_dir: str, data_dir: Path, owner: str
) -> None:
    """Runs in a process the test kills: starts the training child, then waits to die."""
    child = multiprocessing.get_context("spawn").Process(
        target=run_job, args=(job_id, db, model_dir, data_dir, os.getpid(), owner)
    )
    child.start()
    time.sleep(3600)


def test_a_child_whose_server_died_fails_the_job_as_interrupted(
    store: JobStore, model_dir: Path, synthetic_data_dir: Path
) -> None:
    before = snapshot(model_dir)
    job = store.submit("softmax", LONG, False, queue_limit=8)
    owner = new_owner_id()
    store.claim(owner, concurrency=1)
    args = (job.id, store.location, str(model_dir), synthetic_data_dir, owner)
    parent = multiprocessing.get_context("spawn").Process(
        target=_parent_of_a_training_child, args=args
    )
    parent.start()
    try:
        asyncio.run(wait_for(store, job.id, training))
    finally:
        assert parent.pid is not None
        os.kill(parent.pid, signal.SIGKILL)
        parent.join()
    done = asyncio.run(wait_for(store, job.id, ended))
    assert (done.status, done.error) == ("failed", INTERRUPTED)  # as a restarted worker says
    assert snapshot(model_dir) == before


def test_start_fails_the_jobs_a_dead_worker_left_running(
    store: JobStore, model_dir: Path, synthetic_data_dir: Path
) -> None:
    host = socket.gethostname()
    earlier_me = store.submit("softmax", QUICK, False, queue_limit=8)
    store.claim(f"{host}:{os.getpid()}:0badcafe", concurrency=2)  # this pid, before a restart
    elsewhere = store.submit("softmax", QUICK, False, queue_limit=8)
    store.claim(f"another-{host}:1:00000000", concurrency=2)  # alive, as far as we can tell
    runner = runner_for(store, model_dir, synthetic_data_dir)

    async def go() -> None:
        async with started(runner):
            pass

    asyncio.run(go())
    reaped = store.get(earlier_me.id)
    assert reaped is not None and (reaped.status, reaped.error) == ("failed", INTERRUPTED)
    left = store.get(elsewhere.id)
    assert left is not None and left.status == "running"  # its heartbeat is fresh
