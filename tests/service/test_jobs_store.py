"""The job store: the contract every backend keeps (the `store` fixture is parametrized over the
backends: SQLite, and a real PostgreSQL server): queue limit, claims raced by processes, cancel,
reap, progress; and what only the SQLite file does."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from service.jobs.postgres import PostgresJobStore
from service.jobs.record import INTERRUPTED, STATUSES, TERMINAL
from service.jobs.sqlite import SQLiteJobStore
from service.jobs.store import JobStore, QueueFull, open_job_store
from service.modelstore import ModelStore, Promotion
from service.modelstore.folder import FolderModelStore
from service.modelstore.postgres import PostgresModelStore
from service.pg import env_url
from tests.support.postgres import Postgres
from tests.support.server import SHIPPED
from trainer import artifacts
from trainer.artifacts import Artifact


@pytest.fixture(params=["sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[JobStore]:
    if request.param == "sqlite":
        yield open_job_store(str(tmp_path / "state" / "jobs.sqlite3"))
        return
    server: Postgres = request.getfixturevalue("postgres")
    server.empty()  # each test on an empty database
    monkeypatch.setenv("SOFTSERVE_DATABASE_URL", server.url)  # as a training child gets it
    opened = PostgresJobStore(server.url)
    yield opened
    opened.close()


def test_a_new_store_is_empty(store: JobStore) -> None:
    assert store.list() == [] and store.get("0" * 32) is None
    assert store.counts() == dict.fromkeys(STATUSES, 0)
    assert store.claim("w1", concurrency=1) is None
    assert store.reap(owner="w1", stale_after=0) == []
    assert store.prune(0) == 0
    assert store.request_cancel("0" * 32) is None


def test_a_location_opens_the_same_store(store: JobStore) -> None:
    job = store.submit("softmax", {}, False, queue_limit=5)
    again = open_job_store(store.location)
    try:
        assert again.get(job.id) == job
    finally:
        again.close()


def test_submit_get_and_to_dict(store: JobStore) -> None:
    job = store.submit("softmax", {"epochs": 3, "seed": 1}, False, queue_limit=5)
    assert len(job.id) == 32 and job.status == "queued"
    assert store.get(job.id) == job
    assert store.get("0" * 32) is None
    view = job.to_dict()
    assert "owner" not in view
    assert view["params"] == {"epochs": 3, "seed": 1}
    assert view["history"] == [] and view["latest"] is None and view["progress"] is None
    assert view["force"] is False and view["cancel_requested"] is False
    assert view["created_at"].endswith("Z")


# --- the SQLite file -----------------------------------------------------------------------------


def test_no_file_nor_folder_until_the_first_job(tmp_path: Path) -> None:
    """Reads, claims and reaps of a store nobody submitted to yet create nothing: a server
    started in the wrong folder leaves no stray state/ behind."""
    path = tmp_path / "state" / "jobs.sqlite3"
    store = SQLiteJobStore(path)
    assert store.list() == [] and store.claim("w1", concurrency=1) is None
    store.heartbeat("w1")
    assert store.reap(owner="w1", stale_after=0) == []
    assert not (tmp_path / "state").exists()
    store.submit("softmax", {}, False, queue_limit=5)
    assert path.is_file()


def test_a_store_sees_a_file_another_process_created(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    reader = SQLiteJobStore(path)
    assert reader.counts()["queued"] == 0
    job = SQLiteJobStore(path).submit("softmax", {}, False, queue_limit=5)
    assert reader.get(job.id) == job
    claimed = reader.claim("w1", concurrency=1)
    assert claimed is not None and claimed.id == job.id


def test_jobs_survive_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = SQLiteJobStore(path)
    job = first.submit("binary", {"positive": ["Shirt"]}, True, queue_limit=5)
    first.claim("w1", concurrency=1)
    first.update_progress(job.id, {"fraction": 0.5}, {"phase": "select", "epoch": 1})
    again = SQLiteJobStore(path).get(job.id)
    assert again is not None
    assert (again.status, again.owner, again.force) == ("running", "w1", True)
    assert again.params == {"positive": ["Shirt"]}
    assert again.history == [{"phase": "select", "epoch": 1}]


# The table as the release before request ids wrote it.
_BEFORE_REQUEST_IDS = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, model TEXT NOT NULL, params TEXT NOT NULL, force INTEGER NOT NULL,
    status TEXT NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, updated_at TEXT NOT NULL,
    owner TEXT, heartbeat REAL, progress TEXT, history TEXT NOT NULL DEFAULT '[]',
    error TEXT, version TEXT, promoted INTEGER, promotion_reason TEXT
)"""


def test_a_file_from_before_request_ids_is_read_and_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(_BEFORE_REQUEST_IDS)
        conn.execute(
            "INSERT INTO jobs (id, model, params, force, status, created_at, updated_at)"
            " VALUES ('a' || hex(randomblob(15)), 'softmax', '{}', 0, 'succeeded',"
            " '2026-11-30T10:00:00Z', '2026-11-30T10:00:00Z')"
        )
    store = SQLiteJobStore(path)
    (old,) = store.list()
    assert (old.model, old.status, old.request_id) == ("softmax", "succeeded", None)
    new = store.submit("binary", {}, False, queue_limit=5, request_id="r-1")
    assert [job.request_id for job in SQLiteJobStore(path).list()] == ["r-1", None]
    assert store.get(new.id) == new


def test_queue_limit_counts_only_queued_jobs(store: JobStore) -> None:
    store.submit("softmax", {}, False, queue_limit=2)
    store.submit("softmax", {}, False, queue_limit=2)
    with pytest.raises(
        QueueFull, match=r"^2 jobs are already queued \(limit 2\); try again later$"
    ):
        store.submit("softmax", {}, False, queue_limit=2)
    store.claim("w1", concurrency=1)  # one leaves the queue: room for one more
    store.submit("softmax", {}, False, queue_limit=2)
    assert store.counts() == {
        "queued": 2, "running": 1, "succeeded": 0, "failed": 0, "cancelled": 0,
    }  # fmt: skip


def test_claim_takes_the_oldest_and_respects_concurrency_across_owners(store: JobStore) -> None:
    ids = [store.submit("softmax", {"seed": i}, False, queue_limit=10).id for i in range(3)]
    first = store.claim("w1", concurrency=2)
    second = store.claim("w2", concurrency=2)
    assert first is not None and second is not None
    assert [first.id, second.id] == ids[:2]
    assert (first.owner, first.status, second.owner) == ("w1", "running", "w2")
    assert first.started_at is not None
    assert store.claim("w1", concurrency=2) is None  # two run, over both owners
    assert store.finish(first.id, "succeeded")
    third = store.claim("w2", concurrency=2)
    assert third is not None and third.id == ids[2]
    assert store.claim("w2", concurrency=5) is None  # nothing left


def _claim_all(location: str, owner: str, concurrency: int) -> list[str]:
    """Runs in a pool process: claim until nothing more can be claimed."""
    store = open_job_store(location)
    claimed = []
    while (job := store.claim(owner, concurrency=concurrency)) is not None:
        claimed.append(job.id)
    store.close()
    return claimed


@pytest.mark.parametrize("concurrency", [20, 7])
def test_processes_racing_to_claim_take_each_job_once(store: JobStore, concurrency: int) -> None:
    ids = {store.submit("softmax", {}, False, queue_limit=100).id for _ in range(20)}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        futures = [pool.submit(_claim_all, store.location, f"w{i}", concurrency) for i in range(4)]
        claims = [job_id for future in futures for job_id in future.result(timeout=120)]
    assert len(claims) == len(set(claims)) == concurrency  # never twice, never too many
    assert set(claims) <= ids
    for job_id in claims:
        job = store.get(job_id)
        assert job is not None and job.status == "running"
    assert store.counts()["queued"] == 20 - concurrency


def _open_and_submit(path: str, start: float) -> str:
    """Runs in a pool process: wait for the shared start time, then create the store at once."""
    time.sleep(max(0.0, start - time.time()))
    return SQLiteJobStore(Path(path)).submit("softmax", {}, False, queue_limit=100).id


def test_processes_creating_one_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Two uvicorn workers start together on an empty state folder (this failed in CI with
    "database is locked" from the switch to WAL)."""
    path = tmp_path / "state" / "jobs.sqlite3"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        list(pool.map(time.sleep, [0.0] * 4))  # start every process before the race
        start = time.time() + 0.5
        futures = [pool.submit(_open_and_submit, str(path), start) for _ in range(4)]
        ids = [future.result(timeout=120) for future in futures]
    store = SQLiteJobStore(path)
    assert {job.id for job in store.list()} == set(ids)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cancel_queued_running_finished_and_unknown(store: JobStore) -> None:
    queued = store.submit("softmax", {}, False, queue_limit=10)
    running = store.submit("softmax", {}, False, queue_limit=10)
    done = store.submit("softmax", {}, False, queue_limit=10)
    cancelled = store.request_cancel(queued.id)
    assert cancelled is not None
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled before it started")
    assert cancelled.finished_at is not None
    assert store.claim("w1", concurrency=2) is not None  # `running`: `queued` is no more queued
    assert not store.is_cancel_requested(running.id)
    flagged = store.request_cancel(running.id)
    assert flagged is not None
    assert (flagged.status, flagged.cancel_requested) == ("running", True)
    assert store.is_cancel_requested(running.id)
    store.claim("w1", concurrency=2)
    store.finish(done.id, "succeeded", promotion=Promotion("v1", True, "promoted"))
    after = store.request_cancel(done.id)
    assert after is not None and (after.status, after.cancel_requested) == ("succeeded", False)
    assert store.request_cancel("f" * 32) is None


def test_finish_never_overwrites_an_ended_job(store: JobStore) -> None:
    job = store.submit("softmax", {}, False, queue_limit=10)
    store.claim("w1", concurrency=1)
    assert store.finish(job.id, "succeeded", promotion=Promotion("v1", False, "kept: worse"))
    assert not store.finish(job.id, "failed", error="late")
    assert not store.finish(job.id, "cancelled", error="late")
    ended = store.get(job.id)
    assert ended is not None
    assert (ended.status, ended.error, ended.version) == ("succeeded", None, "v1")
    assert (ended.promoted, ended.promotion_reason) == (False, "kept: worse")
    assert ended.finished_at is not None
    store.update_progress(job.id, {"fraction": 0.1}, {"epoch": 9})  # a late child: ignored
    assert store.get(job.id) == ended
    assert store.is_cancel_requested(job.id)  # ended: whoever still runs it should stop
    with pytest.raises(ValueError, match="terminal status"):
        store.finish(job.id, "running")


def test_progress_and_history(store: JobStore) -> None:
    job = store.submit("softmax", {}, False, queue_limit=10)
    store.claim("w1", concurrency=1)
    store.update_progress(job.id, {"phase": "select", "fraction": 0.25})
    first = store.get(job.id)
    store.update_progress(job.id, {"phase": "select", "fraction": 0.5}, {"epoch": 1})
    store.update_progress(job.id, {"phase": "refit", "fraction": 0.75}, {"epoch": 2})
    last = store.get(job.id)
    assert first is not None and last is not None
    assert first.history == [] and first.progress == {"phase": "select", "fraction": 0.25}
    assert last.history == [{"epoch": 1}, {"epoch": 2}]
    assert last.to_dict()["latest"] == {"epoch": 2}
    assert last.updated_at != first.updated_at  # watchers compare it to see changes


def test_reap_fails_stale_and_dead_owners_jobs_but_not_the_callers(store: JobStore) -> None:
    ids = [store.submit("softmax", {}, False, queue_limit=10).id for _ in range(3)]
    for owner in ("me", "alive", "dead"):
        store.claim(owner, concurrency=3)
    assert store.reap(owner="me", stale_after=3600.0) == []  # all fresh
    reaped = store.reap(owner="me", stale_after=3600.0, owner_alive=lambda o: o != "dead")
    assert [job.id for job in reaped] == [ids[2]]
    assert (reaped[0].status, reaped[0].error) == ("failed", INTERRUPTED)
    assert "interrupted" in INTERRUPTED
    stale = store.reap(owner="me", stale_after=0.0)  # every heartbeat counts as old now
    assert [job.id for job in stale] == [ids[1]]
    mine = store.get(ids[0])
    assert mine is not None and mine.status == "running"
    assert store.reap(owner="someone else", stale_after=0.0)[0].id == ids[0]


def test_heartbeat_keeps_a_job_from_being_reaped(store: JobStore) -> None:
    job = store.submit("softmax", {}, False, queue_limit=10)
    store.claim("w1", concurrency=1)
    store.heartbeat("w1")
    assert store.reap(owner="w2", stale_after=3600.0) == []
    assert store.get(job.id) is not None


def test_list_is_newest_first_and_filters(store: JobStore) -> None:
    ids = [store.submit("softmax", {"seed": i}, False, queue_limit=10).id for i in range(4)]
    store.claim("w1", concurrency=1)
    assert [job.id for job in store.list()] == ids[::-1]
    assert [job.id for job in store.list(limit=2)] == ids[:1:-1]
    assert [job.id for job in store.list(status="running")] == ids[:1]
    assert store.list(status="failed") == []


def test_prune_forgets_the_oldest_ended_jobs_only(store: JobStore) -> None:
    ids = [store.submit("softmax", {}, False, queue_limit=10).id for _ in range(6)]
    for job_id in ids[:4]:
        store.request_cancel(job_id)  # queued -> cancelled: ended
    store.claim("w1", concurrency=1)  # ids[4] runs, ids[5] waits
    assert store.prune(keep=1) == 3
    assert [job.id for job in store.list()] == [ids[5], ids[4], ids[3]]
    assert store.prune(keep=1) == 0
    assert store.prune(keep=0) == 1
    assert {job.status for job in store.list()} == {"queued", "running"}
    assert not {"queued", "running"} & TERMINAL


# --- PostgreSQL ------------------------------------------------------------------------------


def test_the_location_never_holds_the_password(postgres: Postgres) -> None:
    store = PostgresJobStore(postgres.url)
    try:
        assert "softserve-test-password" not in store.location
        assert store.location == f"postgresql://softserve@127.0.0.1:{postgres.port}/softserve"
    finally:
        store.close()


def _submit_many(location: str, n: int, limit: int) -> tuple[int, int]:
    """Runs in a pool process (a replica of its own): submit ``n``; (accepted, refused)."""
    store = open_job_store(location)
    accepted = refused = 0
    for _ in range(n):
        try:
            store.submit("softmax", {}, False, queue_limit=limit)
            accepted += 1
        except QueueFull:
            refused += 1
    store.close()
    return accepted, refused


def test_the_queue_limit_holds_across_replicas(
    postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four processes, each with its own pool, submit 10 jobs each against a limit of 15: the
    limit holds over all of them together, and every refusal is a QueueFull."""
    postgres.empty()
    monkeypatch.setenv("SOFTSERVE_DATABASE_URL", postgres.url)
    store = PostgresJobStore(postgres.url)
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(4, mp_context=context) as pool:
            results = list(pool.map(_submit_many, [store.location] * 4, [10] * 4, [15] * 4))
        assert sum(a for a, _ in results) == 15 and sum(r for _, r in results) == 25
        assert store.counts()["queued"] == 15
    finally:
        store.close()


# --- fencing: an owner's writes, and promotion ---------------------------------------------------


@pytest.fixture
def models(store: JobStore, tmp_path: Path) -> Iterator[ModelStore]:
    """A model store beside ``store``: the folder beside SQLite, the same database beside
    PostgreSQL (so promotion and the job's end are one transaction); shipped models seeded."""
    opened: ModelStore
    if isinstance(store, PostgresJobStore):
        opened = PostgresModelStore(env_url(store.location))
    else:
        opened = FolderModelStore(tmp_path / "models")
    opened.seed_from(SHIPPED)
    yield opened
    if isinstance(opened, PostgresModelStore):
        opened.close()


def new_version() -> Artifact:
    shipped = artifacts.load(SHIPPED / "softmax.npz")
    return Artifact(
        shipped.weights, shipped.bias, shipped.meta | {"version": artifacts.new_version()}
    )


def test_an_owners_writes_are_fenced_by_owner(store: JobStore) -> None:
    job = store.submit("softmax", {}, False, queue_limit=5)
    assert store.claim("w1", concurrency=1) is not None
    store.update_progress(job.id, {"fraction": 0.5}, {"epoch": 1}, owner="w2")  # not its owner
    assert store.get(job.id).progress is None  # type: ignore[union-attr]
    assert not store.finish(job.id, "failed", error="not mine", owner="w2")
    assert store.get(job.id).status == "running"  # type: ignore[union-attr]
    store.update_progress(job.id, {"fraction": 0.5}, {"epoch": 1}, owner="w1")
    assert store.get(job.id).history == [{"epoch": 1}]  # type: ignore[union-attr]
    assert store.finish(job.id, "failed", error="mine", owner="w1")


def test_promotion_keeps_the_version_and_ends_the_job_for_its_owner_only(
    store: JobStore, models: ModelStore
) -> None:
    job = store.submit("softmax", {}, False, queue_limit=5)
    store.claim("w1", concurrency=1)
    before, artifact = models.versions("softmax"), new_version()
    assert store.promote(job.id, "w2", models, artifact, force=True) is None
    assert models.versions("softmax") == before and store.get(job.id).status == "running"  # type: ignore[union-attr]
    promotion = store.promote(job.id, "w1", models, artifact, force=True)
    assert promotion is not None and promotion.promoted and promotion.version == artifact.version
    done = store.get(job.id)
    assert done is not None and done.status == "succeeded" and done.error is None
    assert (done.version, done.promoted) == (artifact.version, True)
    assert models.load_active("softmax").version == artifact.version


def test_an_owner_given_up_for_dead_promotes_nothing(store: JobStore, models: ModelStore) -> None:
    """Its lease expired and another owner reaped the job: when it comes back with a trained
    version, nothing is kept and the job stays failed as interrupted."""
    job = store.submit("softmax", {}, False, queue_limit=5)
    store.claim("zombie", concurrency=1)
    active, before = models.load_active("softmax").version, models.versions("softmax")
    assert [j.id for j in store.reap(owner="w2", stale_after=0.0)] == [job.id]
    assert store.promote(job.id, "zombie", models, new_version(), force=True) is None
    assert models.versions("softmax") == before
    assert models.load_active("softmax").version == active
    store.update_progress(job.id, {"fraction": 1.0}, {"epoch": 9}, owner="zombie")
    assert not store.finish(job.id, "succeeded", owner="zombie")
    ended = store.get(job.id)
    assert ended is not None and (ended.status, ended.error) == ("failed", INTERRUPTED)
    assert ended.history == [] and ended.version is None


def test_a_cancel_asked_for_before_the_promotion_keeps_nothing(
    store: JobStore, models: ModelStore
) -> None:
    job = store.submit("softmax", {}, False, queue_limit=5)
    store.claim("w1", concurrency=1)
    store.request_cancel(job.id)
    before = models.versions("softmax")
    assert store.promote(job.id, "w1", models, new_version(), force=True) is None
    assert models.versions("softmax") == before
    assert store.finish(job.id, "cancelled", error="cancelled by request", owner="w1")


def test_a_postgres_job_store_fences_a_promotion_into_a_model_folder(
    postgres: Postgres, tmp_path: Path
) -> None:
    """Models elsewhere than the jobs' database: the job's row stays locked while the folder
    keeps the version, so the fence still holds."""
    postgres.empty()
    store = PostgresJobStore(postgres.url)
    models = FolderModelStore(tmp_path / "models")
    models.seed_from(SHIPPED)
    try:
        job = store.submit("softmax", {}, False, queue_limit=5)
        store.claim("w1", concurrency=1)
        before, artifact = models.versions("softmax"), new_version()
        assert store.promote(job.id, "w2", models, artifact, force=True) is None
        assert models.versions("softmax") == before
        promotion = store.promote(job.id, "w1", models, artifact, force=True)
        assert promotion is not None and models.load_active("softmax").version == artifact.version
        assert store.get(job.id).status == "succeeded"  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_version_promoted_by_a_job_in_the_database_names_that_job(postgres: Postgres) -> None:
    postgres.empty()
    store, models = PostgresJobStore(postgres.url), PostgresModelStore(postgres.url)
    try:
        models.seed_from(SHIPPED)
        job = store.submit("softmax", {}, False, queue_limit=5)
        store.claim("w1", concurrency=1)
        artifact = new_version()
        assert store.promote(job.id, "w1", models, artifact, force=False) is not None
        with psycopg.connect(postgres.url) as conn:
            rows = conn.execute(
                "SELECT version, job_id FROM softserve_model_versions WHERE name = 'softmax'"
            ).fetchall()
        seeded = artifacts.load(SHIPPED / "softmax.npz").version
        assert dict(rows) == {seeded: None, artifact.version: job.id}
    finally:
        store.close()
        models.close()
