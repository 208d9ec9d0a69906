"""The image as users deploy it: a real container on a 127.0.0.1 port, spoken to over HTTP.

Needs a Docker daemon (see tests/container/conftest.py); .ci/run starts one and builds the image.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import numpy as np
from numpy.typing import NDArray

from tests.container.conftest import RunContainer
from tests.container.docker import Container, docker, published
from tests.service.reference import check_predictions
from tests.support.server import SHIPPED, copy_shipped_models, wait_for
from tests.support.training import TOKEN, submit, wait_done
from trainer import artifacts

Images = tuple[NDArray[np.uint8], NDArray[np.uint8]]
JOB_TIMEOUT = 300.0


def test_ready_at_once_and_predicts_like_the_shipped_artifacts(
    run_container: RunContainer, volumes: dict[str, str], test_images: Images
) -> None:
    """An empty volume is seeded with the shipped models, and the container answers for them
    exactly as NumPy applying the repository's files."""
    container = run_container(volumes, None)
    container.wait_ready()  # within READY_WITHIN, or it fails with the logs
    pixels = test_images[0]
    with container.client() as client:
        for name in ("softmax", "binary"):
            shipped = artifacts.load(SHIPPED / f"{name}.npz")
            raw = client.post(
                f"/predict?model={name}",
                content=pixels.tobytes(),
                headers={"content-type": "application/octet-stream"},
            )
            check_predictions(raw, shipped, name, pixels)
        as_json = client.post("/predict", json={"images": pixels[:8].reshape(8, 28, 28).tolist()})
        check_predictions(as_json, artifacts.load(SHIPPED / "softmax.npz"), "softmax", pixels[:8])
        bad = client.post("/predict", json={"pixels": [0] * 783})
        assert bad.status_code == 422
        assert "expected 784 pixels, got 783" in bad.json()["error"]["message"]
        traced = client.post(
            "/predict", json={"pixels": [0] * 784}, headers={"X-Request-ID": "c-1"}
        )
        assert traced.headers["x-request-id"] == "c-1"


def test_logs_json_lines_with_the_request_ids_by_default(
    run_container: RunContainer, volumes: dict[str, str]
) -> None:
    """The image runs what the README's command 1 runs, with its defaults: JSON lines, an
    access line per request, the caller's request id in it."""
    container = run_container(volumes, None)
    container.wait_ready()
    with container.client() as client:
        client.post("/predict", json={"pixels": [0] * 784}, headers={"X-Request-ID": "c-2"})
        client.get("/models/nope", headers={"X-Request-ID": "c-3"})

    def access_lines() -> dict[str, dict[str, object]]:
        found = {}
        for text in container.logs().splitlines():
            line = json.loads(text)  # every line is JSON
            if line.get("type") == "access":
                found[line["request_id"]] = line
        return found if {"c-2", "c-3"} <= set(found) else {}

    lines = wait_for(access_lines, timeout=30)
    assert (lines["c-2"]["status"], lines["c-2"]["model"]) == (200, "softmax")
    assert (lines["c-3"]["status"], lines["c-3"]["error"]) == (404, "unknown_model")


def test_runs_as_a_non_root_user_with_workers_from_the_environment_and_reports_healthy(
    run_container: RunContainer, volumes: dict[str, str]
) -> None:
    container = run_container(volumes, {"SOFTSERVE_WORKERS": "2"})
    container.wait_ready()
    count_workers = (
        "import os; print(sum(b'spawn_main' in open(f'/proc/{p}/cmdline', 'rb').read()"
        " for p in os.listdir('/proc') if p.isdigit() and p != str(os.getpid())))"
    )
    assert container.exec("python", "-c", count_workers) == "2"
    uids = [line for line in container.exec("cat", "/proc/1/status").splitlines() if "Uid" in line]
    real, effective = uids[0].split()[1:3]
    assert real != "0" and effective != "0", uids
    assert container.inspect("{{.Config.User}}") == "softserve"
    assert wait_for_health(container) == "healthy"


def test_a_trained_version_is_served_and_survives_a_new_container(
    run_container: RunContainer, volumes: dict[str, str], test_images: Images, tmp_path: Path
) -> None:
    env = {"SOFTSERVE_API_TOKEN": TOKEN}
    container = run_container(volumes, env)
    container.wait_ready()
    shipped = artifacts.load(SHIPPED / "softmax.npz")
    with container.client() as client:
        assert client.post("/train", json={"epochs": 2}).status_code == 401
        job = submit(client, {"model": "softmax", "epochs": 2, "force": True})["job_id"]
        done = wait_done(client, job, timeout=JOB_TIMEOUT)
        assert done["status"] == "succeeded", done
        assert done["promoted"] is True and done["version"] != shipped.version
        assert model_version(client, "softmax") == done["version"]
    # the served file is the new version, and predictions come from it
    docker("cp", f"{container.id}:/app/models/softmax.npz", str(tmp_path / "trained.npz"))
    trained = artifacts.load(tmp_path / "trained.npz")
    assert trained.version == done["version"]
    pixels = test_images[0]
    with container.client() as client:
        check_predictions(predict_raw(client, pixels), trained, "softmax", pixels)

    docker("rm", "-f", container.id)
    again = run_container(volumes, env)
    again.wait_ready()
    with again.client() as client:
        assert model_version(client, "softmax") == done["version"]
        assert client.get(f"/train/{job}").json()["status"] == "succeeded"  # the job store too
        versions = client.get("/models/softmax/versions").json()["versions"]
        assert {v["version"] for v in versions} >= {shipped.version, done["version"]}
        check_predictions(predict_raw(client, pixels), trained, "softmax", pixels)


def test_sigterm_cancels_a_running_job_cleanly(
    run_container: RunContainer, volumes: dict[str, str]
) -> None:
    """docker stop with its default 10 s, while a client follows the job's events: the stream
    ends, the job is cancelled and marked so, nothing half-written is left, and the same volumes
    serve the model that was active before."""
    container = run_container(volumes, {"SOFTSERVE_API_TOKEN": TOKEN})
    container.wait_ready()
    shipped = artifacts.load(SHIPPED / "softmax.npz")
    events: list[str] = []
    with container.client() as client:
        job = submit(client, {"model": "softmax", "epochs": 200, "force": True})["job_id"]
        wait_for(lambda: client.get(f"/train/{job}").json()["progress"], timeout=JOB_TIMEOUT)

        def follow() -> None:
            with client.stream("GET", f"/train/{job}/events") as r:
                events.extend(line for line in r.iter_lines() if line.startswith("event:"))

        follower = threading.Thread(target=follow)
        follower.start()
        wait_for(lambda: events, timeout=30)  # the stream is open
        docker("stop", container.id, timeout=90)  # SIGKILL after 10 s would give exit code 137
        follower.join(30)
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    assert events[-1] == "event: shutdown", events
    docker("start", container.id)
    restarted = Container(container.id, f"http://{published(container.id)}")  # a new port
    restarted.wait_ready()
    with restarted.client() as client:
        status = client.get(f"/train/{job}").json()
        assert status["status"] == "cancelled", status
        assert "shut down" in status["error"]
        assert model_version(client, "softmax") == shipped.version
    leftovers = restarted.exec("find", "/app/models", "-name", "*.tmp")
    assert leftovers == ""
    kept = restarted.exec("ls", "/app/models/softmax").split()
    assert kept == [f"{shipped.version}.npz"]


def test_a_read_only_model_folder_serves_and_a_job_says_why_it_cannot_save(
    run_container: RunContainer, volumes: dict[str, str], tmp_path: Path
) -> None:
    models = copy_shipped_models(tmp_path / "models")
    models.chmod(0o755)  # tmp_path is 0700: the container's user must be able to read it
    tmp_path.chmod(0o755)
    state = next(name for name, path in volumes.items() if path == "/app/state")
    container = run_container({str(models): "/app/models:ro", state: "/app/state"}, None)
    container.wait_ready()
    with container.client() as client:
        assert model_version(client, "softmax") == artifacts.load(SHIPPED / "softmax.npz").version
        job = submit(client, {"model": "softmax", "epochs": 1})["job_id"]
        done = wait_done(client, job, timeout=JOB_TIMEOUT)
    assert done["status"] == "failed", done
    assert done["error"] == "could not save the new version: Read-only file system"


def model_version(client: httpx.Client, name: str) -> str:
    version: str = client.get(f"/models/{name}").json()["version"]
    return version


def predict_raw(client: httpx.Client, pixels: NDArray[np.uint8]) -> httpx.Response:
    return client.post(
        "/predict", content=pixels.tobytes(), headers={"content-type": "application/octet-stream"}
    )


def wait_for_health(container: Container, timeout: float = 60.0) -> str:
    """The HEALTHCHECK's verdict once it has one (runs every second under test)."""

    def verdict() -> str | None:
        status = container.inspect("{{.State.Health.Status}}")
        return status if status in ("healthy", "unhealthy") else None

    found = wait_for(verdict, timeout=timeout, interval=0.25)
    assert isinstance(found, str)
    return found
