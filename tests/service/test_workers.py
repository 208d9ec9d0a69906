"""``python -m service --workers 2``: one job store, each job run once, every worker serving new
versions, metrics counted across workers; and what the start-up log says when they are not, or
when there are no models where the server looks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.jobs.record import TERMINAL
from tests.support.server import Server, run_server, wait_for
from tests.synthetic import write_dataset


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("workers")
    env = {
        "SOFTSERVE_DATA_DIR": str(write_dataset(root / "data")),
        "SOFTSERVE_TRAIN_QUEUE_SIZE": "6",
    }
    with run_server(root, env, workers=2, entry="service") as running:
        # both workers must be up before the tests count on them
        wait_for(lambda: running.log_text().count("Application startup complete") >= 2)
        yield running


def _fresh_get(server: Server, path: str) -> httpx.Response:
    """A new connection per request, so the kernel spreads them over both workers."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.get(path)


def test_concurrent_submissions_each_run_exactly_once_beyond_the_queue_429(server: Server) -> None:
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def post() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            r = client.post("/train", json={"epochs": 1, "force": True})
        with lock:
            results.append(r)

    threads = [threading.Thread(target=post) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [r.json()["job_id"] for r in results if r.status_code == 202]
    refused = [r for r in results if r.status_code != 202]
    assert all(r.status_code == 429 for r in refused), [r.text for r in refused]
    # at most 6 wait queued, plus any a worker had already claimed when a request arrived
    assert 6 <= len(accepted) < 12 and refused

    def all_done() -> list[dict[str, Any]] | None:
        jobs = [_fresh_get(server, f"/train/{j}").json() for j in accepted]
        return jobs if all(j["status"] in TERMINAL for j in jobs) else None

    jobs = wait_for(all_done, timeout=240)
    assert isinstance(jobs, list)
    assert [j["status"] for j in jobs] == ["succeeded"] * len(accepted)
    # each job ran once: one selection history, one version, one kept file per job
    for job in jobs:
        assert [e["epoch"] for e in job["history"] if e["phase"] == "select"] == [1]
    versions = {j["version"] for j in jobs}
    assert len(versions) == len(jobs)
    kept = {p.stem for p in (server.model_dir / "softmax").glob("*.npz")}
    assert versions <= kept


def test_every_worker_serves_a_version_activated_through_one(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        versions = client.get("/models/softmax/versions").json()
        active = versions["active"]
        other = next(v["version"] for v in versions["versions"] if v["version"] != active)
        r = client.post("/models/softmax/activate", json={"version": other})
        assert r.status_code == 200 and r.json()["version"] == other

    def everyone_serves(version: str) -> bool:
        seen: dict[int, str] = {}
        for _ in range(40):
            with httpx.Client(base_url=server.url, timeout=30) as c:  # one connection: one worker
                pid = c.get("/health/live").json()["pid"]
                seen[pid] = c.get("/models/softmax").json()["version"]
        return len(seen) == 2 and set(seen.values()) == {version}

    wait_for(lambda: everyone_serves(other), timeout=60)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/models/softmax/activate", json={"version": active}).status_code == 200
    wait_for(lambda: everyone_serves(active), timeout=60)


def test_prometheus_counts_every_workers_requests(server: Server) -> None:
    def scrape() -> dict[str, float]:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            text = client.get("/metrics", headers={"Accept": "text/plain"}).text
        return {
            sample.labels["model"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "softserve_predictions_total"
        }

    before = scrape().get("binary", 0.0)
    pids = set()
    for _ in range(30):  # fresh connections, spread over both workers
        with httpx.Client(base_url=server.url, timeout=30) as client:
            pids.add(client.get("/health/live").json()["pid"])
            r = client.post("/models/binary/predict", json={"images": [[0] * 784] * 3})
            assert r.status_code == 200
    assert len(pids) == 2
    # every scrape, whichever worker answers it, counts both workers' predictions
    assert [scrape()["binary"] - before for _ in range(8)] == [90.0] * 8
    assert "PROMETHEUS_MULTIPROC_DIR is not set" not in server.log_text()


def test_uvicorn_workers_without_a_shared_metrics_folder_warn_at_start(tmp_path: Path) -> None:
    """Under plain ``uvicorn --workers 2`` each worker counts its own requests only: the log
    says so, and how to fix it."""
    with run_server(tmp_path, workers=2) as running:
        wait_for(lambda: running.log_text().count("Application startup complete") >= 2)
        log = running.log_text()
    assert log.count("PROMETHEUS_MULTIPROC_DIR is not set") == 2
    assert "python -m service --workers N sets it up" in log


def test_a_server_started_outside_the_checkout_says_where_it_looked(tmp_path: Path) -> None:
    """``python -m service`` in a folder without models/: one clear line with the absolute path
    and the fix, readiness says what is missing, and no stray state folder appears."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the defaults: ./models, and state/ beside it
    env: dict[str, str | None] = {"SOFTSERVE_MODEL_DIR": None, "SOFTSERVE_STATE_DIR": None}
    with run_server(tmp_path, env, entry="service", cwd=elsewhere) as running:
        with running.client() as client:
            ready = client.get("/health/ready")
            predicted = client.post("/predict", json={"pixels": [0] * 784})
        log = running.log_text()
    assert ready.status_code == 503
    assert (
        "model 'softmax' is not loaded: no softmax.npz in models"
        in ready.json()["error"]["message"]
    )
    assert predicted.status_code == 503
    assert (
        "the default model 'softmax' is not loaded: no softmax.npz in models"
        in (predicted.json()["error"]["message"])
    )
    assert f"the model folder {elsewhere / 'models'} does not exist" in log
    assert "SOFTSERVE_MODEL_DIR" in log
    assert list(elsewhere.iterdir()) == []  # no state/, no models/
