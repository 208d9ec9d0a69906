"""Replicas sharing one real PostgreSQL (SOFTSERVE_DATABASE_URL): two `uvicorn` servers (the
second with two workers, each of which must follow), each with its own state folder, seeded from
the shipped models once. A version promoted or activated on either is served by every worker of
both, through LISTEN/NOTIFY (the watchers' periodic re-read is set to an hour here, so only a
notice can bring it soon); a job submitted on one is cancelled from the other; with the
listener's connection killed a promotion still arrives; with the database down, predictions go
on, readiness holds, training answers 503, and all of it comes back by itself."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.cluster import served
from tests.support.postgres import Postgres, running_postgres
from tests.support.procs import worker_pids
from tests.support.server import SHIPPED, Server, run_server, wait_for
from trainer.data import find_files

TOKEN = "replica-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE = {"pixels": [0] * 392 + [200] * 392}


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def replicas(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    if find_files(REAL_DIR) is None:
        pytest.skip("Fashion-MNIST not installed")
    env = {
        "SOFTSERVE_DATABASE_URL": postgres.url, "SOFTSERVE_SEED_DIR": str(SHIPPED),
        "SOFTSERVE_API_TOKEN": TOKEN, "SOFTSERVE_DATA_DIR": str(REAL_DIR),
    }  # fmt: skip
    with (
        run_server(tmp_path_factory.mktemp("a"), env | {"SOFTSERVE_REPLICA_NAME": "a"},
                   watch_interval=3600) as a,
        run_server(tmp_path_factory.mktemp("b"), env | {"SOFTSERVE_REPLICA_NAME": "b"},
                   watch_interval=3600, workers=2) as b,
    ):  # fmt: skip
        yield a, b


def listening(server: Server) -> bool:
    return bool(httpx.get(f"{server.url}/health/ready").json()["database"]["listener_connected"])


def every_worker_serves(server: Server, version: str) -> bool:
    """Whether each uvicorn worker of ``server`` serves ``version``: asked until every worker's
    pid has answered (a new connection lands on whichever worker accepts it)."""
    expected = set(worker_pids(server.process.pid)) or {server.process.pid}
    seen: dict[int, str] = {}
    for _ in range(50):
        body = httpx.get(f"{server.url}/health/ready", timeout=10).json()
        seen[body["pid"]] = body["models"]["softmax"]
        if set(seen) >= expected:
            break
    return set(seen) == expected and all(v == version for v in seen.values())


def every_replica_serves(replicas: tuple[Server, ...], version: str) -> float:
    """Seconds until every worker of every replica serves ``version`` (generous deadline: no
    timing asserted)."""
    start = time.monotonic()
    wait_for(lambda: all(every_worker_serves(r, version) for r in replicas), timeout=60)
    return time.monotonic() - start


def test_both_replicas_serve_the_seeded_models_and_name_themselves(
    replicas: tuple[Server, Server],
) -> None:
    a, b = replicas
    assert served(a) == served(b)
    for server, name in ((a, "a"), (b, "b")):
        response = httpx.get(f"{server.url}/health/ready")
        assert response.status_code == 200 and response.headers["x-softserve-replica"] == name
        database = response.json()["database"]
        assert database["backend"] == "postgresql" and database["error"] is None
        assert "softserve-test-password" not in response.text
        metrics = httpx.get(f"{server.url}/metrics").json()
        assert metrics["database"]["backend"] == "postgresql"
        text = httpx.get(f"{server.url}/metrics", headers={"accept": "text/plain"}).text
        assert f'softserve_database_info{{backend="postgresql",replica="{name}"}} 1.0' in text
        assert "softserve_database_listener_connected 1.0" in text
        assert "softserve_database_last_sync_age_seconds " in text
        version = served(server)
        labels = f'model="softmax",replica="{name}",version="{version}"'
        assert f"softserve_model_active_info{{{labels}}} 1.0" in text


def test_a_trained_version_and_an_activation_reach_every_replica(
    replicas: tuple[Server, Server],
) -> None:
    a, b = replicas
    before = served(a)
    job = httpx.post(f"{a.url}/train", json={"epochs": 1, "force": True}, headers=AUTH).json()

    def finished() -> dict[str, object] | None:
        seen = httpx.get(f"{b.url}/train/{job['job_id']}").json()  # the other replica sees it
        return seen if seen["status"] in ("succeeded", "failed", "cancelled") else None

    done = wait_for(finished, timeout=120)
    assert done["status"] == "succeeded" and done["promoted"] is True, done
    assert done["replica"] in ("a", "b")
    every_replica_serves(replicas, str(done["version"]))
    rolled = httpx.post(f"{b.url}/models/softmax/activate", json={"version": before},
                        headers=AUTH)  # fmt: skip
    assert rolled.status_code == 200, rolled.text
    every_replica_serves(replicas, before)


def test_a_job_submitted_on_one_replica_is_cancelled_from_the_other(
    replicas: tuple[Server, Server],
) -> None:
    a, b = replicas
    job = httpx.post(f"{a.url}/train", json={"epochs": 200}, headers=AUTH).json()
    wait_for(lambda: httpx.get(f"{b.url}/train/{job['job_id']}").json()["status"] == "running",
             timeout=60)  # fmt: skip
    cancelled = httpx.delete(f"{b.url}/train/{job['job_id']}", headers=AUTH)
    assert cancelled.status_code in (200, 202), cancelled.text
    ended = wait_for(
        lambda: (
            (j := httpx.get(f"{a.url}/train/{job['job_id']}").json())["status"] == "cancelled" and j
        ),
        timeout=60,
    )
    assert ended["version"] is None


def test_a_promotion_arrives_after_the_listeners_connection_is_killed(
    replicas: tuple[Server, Server], postgres: Postgres
) -> None:
    a = replicas[0]
    versions = httpx.get(f"{a.url}/models/softmax/versions").json()["versions"]
    other = next(v["version"] for v in versions if v["version"] != served(a))
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
        ).fetchall()
    assert len(killed) >= 2  # a listener per replica
    assert httpx.post(f"{a.url}/models/softmax/activate", json={"version": other},
                      headers=AUTH).status_code == 200  # fmt: skip
    every_replica_serves(replicas, other)  # the reconnected listener resynchronises


def test_with_the_database_down_predictions_go_on_and_training_says_why(
    replicas: tuple[Server, Server], postgres: Postgres
) -> None:
    a, b = replicas
    postgres.stop()
    try:
        for server in (a, b):
            assert httpx.post(f"{server.url}/predict", json=IMAGE).status_code == 200
        wait_for(lambda: httpx.get(f"{b.url}/health/ready").json()["database"]["error"])
        ready = httpx.get(f"{a.url}/health/ready")
        assert ready.status_code == 200
        refused = httpx.post(f"{a.url}/train", json={"epochs": 1}, headers=AUTH)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "database_unavailable"
        assert "softserve-test-password" not in refused.text
        assert httpx.get(f"{a.url}/metrics").status_code == 200
    finally:
        postgres.start()
    for server in (a, b):
        wait_for(functools.partial(listening, server), timeout=60)
    # the stores' pools reconnect on their own schedule: training comes back, without a restart

    def accepted() -> httpx.Response | None:
        response = httpx.post(f"{a.url}/train", json={"epochs": 1}, headers=AUTH)
        return response if response.status_code == 202 else None

    back = wait_for(accepted, timeout=120, interval=1.0)
    assert back.json()["status"] == "queued"
    # the scheduler failed every half second while the database was away: said once, not each
    # time, and its recovery said too
    wait_for(lambda: "job runner passes succeed again" in a.log_text(), timeout=30)
    assert 1 <= a.log_text().count("job runner pass failed") <= 2
