"""A replica names itself (SOFTSERVE_REPLICA_NAME, default the hostname): in every response's
X-Softserve-Replica header, whichever layer answers it (the fast prediction path, FastAPI's
routes, the edge's own errors), in /metrics, and in the record of every job it ran."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from tests.support.server import Server, run_server, wait_for

TOKEN = "replica-token"
NAME = "replica-b.eu-1"


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory, synthetic_dir: Path) -> Iterator[Server]:
    env = {"SOFTSERVE_REPLICA_NAME": NAME, "SOFTSERVE_API_TOKEN": TOKEN,
           "SOFTSERVE_DATA_DIR": str(synthetic_dir)}  # fmt: skip
    with run_server(tmp_path_factory.mktemp("replica"), env) as running:
        yield running


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("data") / "synthetic")


def test_every_response_names_the_replica(named: Server) -> None:
    raw = {"content-type": "application/octet-stream"}
    with named.client() as client:
        answers = [
            client.post("/predict", json={"pixels": [0] * 784}),  # the fast path
            client.post("/predict", json={"pixels": [0] * 783}),  # its error
            client.post("/predict", content=b"\0" * 784, headers=raw),
            client.get("/models"),  # FastAPI's routes
            client.get("/nowhere"),  # a 404
            client.post("/train", json={}),  # 401: no token
            client.post("/predict", content=b"x" * (9 * 2**20), headers=raw),  # 413 at the edge
            client.get("/ui"),
        ]
    for response in answers:
        assert response.headers["x-softserve-replica"] == NAME, response.request.url
    assert [r.status_code for r in answers] == [200, 422, 200, 200, 404, 401, 413, 200]


def test_metrics_and_jobs_name_the_replica(named: Server) -> None:
    with named.client() as client:
        assert client.get("/metrics").json()["replica"] == NAME
        text = client.get("/metrics", headers={"accept": "text/plain"}).text
        assert f'softserve_replica_info{{replica="{NAME}"}} 1.0' in text
        version = client.get("/models/softmax").json()["version"]
        labels = f'model="softmax",replica="{NAME}",version="{version}"'  # sorted, as written
        assert f"softserve_model_active_info{{{labels}}} 1.0" in text
        assert f'softserve_database_info{{backend="sqlite",replica="{NAME}"}} 1.0' in text
        assert "softserve_database_listener_connected" not in text  # no listener on SQLite
        headers = {"authorization": f"Bearer {TOKEN}"}
        job = client.post("/train", json={"epochs": 1}, headers=headers).json()
        assert job["replica"] is None and job["worker"] is None  # not claimed yet

        def done() -> dict[str, object] | None:
            seen = client.get(f"/train/{job['job_id']}").json()
            return seen if seen["status"] in ("succeeded", "failed") else None

        finished = wait_for(done)
        pid = client.get("/health/live").json()["pid"]
    assert finished["replica"] == NAME and finished["worker"] == pid


def test_the_name_defaults_to_the_hostname_and_must_suit_a_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOFTSERVE_REPLICA_NAME", raising=False)
    assert Settings().replica_name == socket.gethostname()
    for bad in ("", "has space", "a:b", "x" * 65, "-leading", "naïve"):
        monkeypatch.setenv("SOFTSERVE_REPLICA_NAME", bad)
        with pytest.raises(ValueError, match="replica_name"):
            Settings()


def test_a_server_without_a_name_uses_the_hostname(tmp_path: Path) -> None:
    with run_server(tmp_path, {"SOFTSERVE_REPLICA_NAME": None}) as server:
        response = httpx.get(f"{server.url}/health/live")
    assert response.headers["x-softserve-replica"] == socket.gethostname()
