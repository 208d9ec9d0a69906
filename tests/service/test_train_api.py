"""Training jobs over HTTP against a real uvicorn process: submit, watch, cancel, persist, swap."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from tests.support.procs import training_children
from tests.support.server import Server, copy_shipped_models, run_server, wait_for
from tests.support.training import AUTH, TOKEN, image, submit, wait_done
from tests.synthetic import as_synthetic_task, write_dataset, write_idx
from trainer.data import FILES


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "synthetic", n_train=600, n_test=200)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Server]:
    env = {"SOFTSERVE_DATA_DIR": str(data_dir), "SOFTSERVE_API_TOKEN": TOKEN}
    models = as_synthetic_task(copy_shipped_models(tmp_path_factory.mktemp("models")))
    with run_server(tmp_path_factory.mktemp("train"), env, model_dir=models) as running:
        yield running


# --- auth and validation -----------------------------------------------------------------------


def test_train_needs_the_token(server: Server) -> None:
    with server.client() as client:
        r = client.post("/train", json={"epochs": 1})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "missing_token"
        r = client.post("/train", json={"epochs": 1}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "invalid_token"
        assert TOKEN not in r.text
        r = client.post("/train", json={"epochs": 1}, headers={"Authorization": TOKEN})
        assert r.status_code == 401  # no "Bearer" scheme
        assert client.delete("/train/" + "0" * 32).status_code == 401
        assert client.get("/train").status_code == 200  # reading is open
    assert TOKEN not in server.log_text()


def test_whole_numbers_written_as_floats_are_integers(server: Server) -> None:
    """JSON Schema's "integer" takes 2.0, so the service does too (a client's json.dumps of a
    computed float); 2.5 stays a 422."""
    with server.client() as client:
        job = submit(client, {"epochs": 2.0, "batch_size": 64.0, "seed": 7.0})
        assert job["params"] == {"epochs": 2, "batch_size": 64, "seed": 7}
        assert all(isinstance(v, int) for v in job["params"].values())
        client.delete(f"/train/{job['job_id']}", headers=AUTH)
        r = client.post("/train", json={"epochs": 2.5}, headers=AUTH)
        assert r.status_code == 422 and "epochs" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 10**6}, "epochs"),
        ({"epochs": 201}, "epochs"),  # over SOFTSERVE_TRAIN_MAX_EPOCHS (200)
        ({"epochs": "3"}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"epochs": True}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"l2": -1}, "l2"),
        ({"seed": -1}, "seed"),
        ({"model": "tree"}, "model"),
        ({"model": "binary", "positive": ["Unicorn"]}, "Unicorn"),
        ({"model": "binary", "positive": [42]}, "42"),
        ({"model": "binary", "positive": []}, "positive"),
        ({"colour": "red"}, "colour"),
        ({"force": "yes"}, "force"),
    ],
)
def test_invalid_training_parameters_are_422_naming_the_field(
    server: Server, body: dict[str, Any], where: str
) -> None:
    with server.client() as client:
        r = client.post("/train", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert where in error["message"]
    assert error["code"] in ("invalid_request", "invalid_parameter")


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{", 400),  # malformed JSON is a 400, as on /predict
        (b'{"epochs": 1,}', 400),
        (b"\x00\x00\x00B\xff\xff\xff\xff", 400),  # not text in any JSON encoding
        (b"[" * 100_000, 400),  # deeper than the parser goes
        (b"[1, 2]", 422),
        (b'{"learning_rate": NaN}', 422),
        (b"null", 202),
    ],
)
def test_malformed_training_bodies(server: Server, content: bytes, status: int) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    with server.client() as client:
        r = client.post("/train", content=content, headers=headers)
        assert r.status_code == status, r.text
        if status == 202:  # null = no body = all defaults; do not leave it training
            job_id = r.json()["job_id"]
            assert client.delete(f"/train/{job_id}", headers=AUTH).status_code == 200
            assert wait_done(client, job_id)["status"] == "cancelled"
        else:
            assert set(r.json()) == {"error"}
            if status == 400:
                assert r.json()["error"]["code"] == "invalid_json"
                assert r.json()["error"]["message"].startswith("body is not valid JSON")


def test_unknown_jobs_are_404(server: Server) -> None:
    with server.client() as client:
        for job_id in ("0" * 32, "..%2F..%2Fetc%2Fpasswd", "x" * 500, "ABC"):
            for r in (client.get(f"/train/{job_id}"), client.get(f"/train/{job_id}/events"),
                      client.delete(f"/train/{job_id}", headers=AUTH)):  # fmt: skip
                assert r.status_code == 404, (job_id, r.text)
                assert r.json()["error"]["code"] in ("unknown_job", "not_found")


def test_405_lists_every_method_of_the_path(server: Server) -> None:
    """GET and POST /train are two routes; Starlette's Allow named only the first one."""
    with server.client() as client:
        for path, allowed in (
            ("/train", "GET, HEAD, POST"),
            ("/train/" + "0" * 32, "DELETE, GET, HEAD"),
        ):
            r = client.request("PUT", path, headers=AUTH)
            assert r.status_code == 405, r.text
            assert r.headers["allow"] == allowed
            assert r.json()["error"]["code"] == "method_not_allowed"


# --- a full job ----------------------------------------------------------------------------------


def test_a_job_trains_is_watched_and_swapped_in_while_predictions_keep_succeeding(
    server: Server,
) -> None:
    failures: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()

    def predict_forever() -> None:
        with server.client() as c:
            while not stop.is_set():
                r = c.post("/predict", json={"pixels": image()})
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    versions.add(r.json()["version"])

    with server.client() as client:
        before = client.get("/models/softmax").json()["version"]
        predictor = threading.Thread(target=predict_forever)
        predictor.start()
        try:
            job = submit(client, {"model": "softmax", "epochs": 4, "seed": 3, "force": True})
            events = _read_events(server, job["job_id"])
            done = wait_done(client, job["job_id"])
            # the swap reaches this worker at once; predictions carry on against the new version
            wait_for(lambda: done["version"] in versions, timeout=30)
        finally:
            stop.set()
            predictor.join()

    assert failures == []
    assert done["status"] == "succeeded", done
    assert done["promoted"] is True and "force" in done["promotion_reason"]
    assert done["version"] != before
    assert [e["epoch"] for e in done["history"] if e["phase"] == "select"] == [1, 2, 3, 4]
    assert done["progress"]["fraction"] == pytest.approx(1.0)
    assert {before, done["version"]} <= versions
    # SSE: progress events with rising fractions, then exactly one end event with the result
    names = [name for name, _ in events]
    assert names[-1] == "end" and names.count("end") == 1 and "progress" in names
    fractions = [d["progress"]["fraction"] for n, d in events if n == "progress" and d["progress"]]
    assert fractions == sorted(fractions)
    assert events[-1][1]["status"] == "succeeded"
    assert events[-1][1]["version"] == done["version"]

    with server.client() as client:
        model = client.get("/models/softmax").json()
        assert model["version"] == done["version"]
        assert model["training"]["seed"] == 3 and model["training"]["epochs"] == 4
        metrics = client.get("/metrics").json()["models"]["softmax"]
        assert metrics["source"]["job_id"] == job["job_id"]
        listed = client.get("/models/softmax/versions").json()
        assert {before, done["version"]} <= {v["version"] for v in listed["versions"]}
        assert client.get("/train").json()["jobs"][0]["job_id"] == job["job_id"]
    kept = server.model_dir / "softmax" / f"{done['version']}.npz"
    assert kept.is_file()
    assert (server.model_dir / "softmax" / f"{before}.npz").is_file()  # archived, not lost


def test_a_job_reported_promoted_is_already_served(data_dir: Path, tmp_path: Path) -> None:
    """The moment GET /train/{id} says "succeeded, promoted", /predict answers with that version,
    without waiting for the folder watch (here once an hour)."""
    env = {"SOFTSERVE_DATA_DIR": str(data_dir), "SOFTSERVE_WATCH_INTERVAL": "3600"}
    with run_server(tmp_path, env) as server, server.client() as client:
        job = submit(client, {"model": "softmax", "epochs": 1, "force": True})
        done = wait_done(client, job["job_id"])
        assert done["status"] == "succeeded" and done["promoted"] is True, done
        predicted = client.post("/predict", json={"pixels": image()}).json()
        assert predicted["version"] == done["version"]
        assert client.get("/models/softmax").json()["version"] == done["version"]


def _read_events(server: Server, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    with server.client() as client, client.stream("GET", f"/train/{job_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, orjson.loads(line.removeprefix("data: "))))
    return events


def test_a_worse_model_is_kept_but_not_promoted(server: Server, tmp_path: Path) -> None:
    with server.client() as client:
        active = client.get("/models/binary").json()
        job = submit(client, {"model": "binary", "epochs": 1, "positive": ["3"], "seed": 1})
        done = wait_done(client, job["job_id"])
        assert done["status"] == "succeeded", done
        new_acc = done["history"][-1]["test_accuracy"]
        old_acc = active["metrics"]["test"]["accuracy"]
        assert done["promoted"] is (new_acc >= old_acc)
        if not done["promoted"]:
            assert "not promoted" in done["promotion_reason"]
            assert client.get("/models/binary").json()["version"] == active["version"]
        assert (server.model_dir / "binary" / f"{done['version']}.npz").is_file()


def test_cancel_stops_a_running_job_and_leaves_nothing(server: Server) -> None:
    with server.client() as client:
        before = sorted(p.name for p in server.model_dir.rglob("*"))
        job = submit(client, {"epochs": 200, "batch_size": 1})
        wait_for(lambda: client.get(f"/train/{job['job_id']}").json()["status"] == "running")
        r = client.delete(f"/train/{job['job_id']}", headers=AUTH)
        assert r.status_code == 200
        done = wait_done(client, job["job_id"])
        assert done["status"] == "cancelled"
        assert "cancel" in done["error"]
        assert done["version"] is None
        # cancelling a finished job changes nothing
        again = client.delete(f"/train/{job['job_id']}", headers=AUTH).json()
        assert again["status"] == "cancelled"
    assert sorted(p.name for p in server.model_dir.rglob("*")) == before


# --- queue limit, persistence, crashes -------------------------------------------------------


def test_queue_limit_gives_429_then_history_survives_a_restart(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    env = {"SOFTSERVE_DATA_DIR": str(data), "SOFTSERVE_TRAIN_QUEUE_SIZE": "1"}
    with run_server(tmp_path, env) as server, server.client() as client:
        first = submit(client, {"epochs": 200, "batch_size": 1})
        wait_for(lambda: client.get(f"/train/{first['job_id']}").json()["status"] == "running")
        second = submit(client, {"epochs": 1})
        r = client.post("/train", json={"epochs": 1})
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "queue_full"
        assert r.json()["error"]["message"] == (
            "1 job is already queued (limit 1); try again later (SOFTSERVE_TRAIN_QUEUE_SIZE)"
        )
        assert "retry-after" in r.headers
        assert client.delete(f"/train/{second['job_id']}").json()["status"] == "cancelled"
        client.delete(f"/train/{first['job_id']}")
        assert wait_done(client, first["job_id"])["status"] == "cancelled"
    with run_server(tmp_path, env, model_dir=tmp_path / "models") as server, server.client() as c:
        jobs = {j["job_id"]: j for j in c.get("/train").json()["jobs"]}
        assert jobs[first["job_id"]]["status"] == "cancelled"
        assert jobs[second["job_id"]]["status"] == "cancelled"
        assert c.get("/train", params={"status": "cancelled"}).json()["jobs"]


def test_a_job_running_when_the_server_is_killed_is_marked_interrupted(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    env = {"SOFTSERVE_DATA_DIR": str(data)}
    with run_server(tmp_path, env) as server, server.client() as client:
        active = client.get("/models/softmax").json()["version"]
        job = submit(client, {"epochs": 200, "batch_size": 1})
        wait_for(lambda: client.get(f"/train/{job['job_id']}").json()["progress"])
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(30)
    with run_server(tmp_path, env, model_dir=tmp_path / "models") as server, server.client() as c:
        done = wait_done(c, job["job_id"], timeout=60)
        assert done["status"] == "failed"
        assert "interrupted" in done["error"]
        assert c.get("/models/softmax").json()["version"] == active
        assert c.get("/health/ready").status_code == 200
        assert not list(server.model_dir.rglob("*.tmp"))


def test_a_killed_training_process_fails_the_job_and_predictions_go_on(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    with run_server(tmp_path, {"SOFTSERVE_DATA_DIR": str(data)}) as server:
        with server.client() as client:
            active = client.get("/models/softmax").json()["version"]
            job = submit(client, {"epochs": 200, "batch_size": 1})
            wait_for(lambda: client.get(f"/train/{job['job_id']}").json()["progress"])
            children = training_children(server.process.pid)
            assert children, "the job should run in a child process"
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            done = wait_done(client, job["job_id"])
            assert done["status"] == "failed"
            assert "signal 9" in done["error"] or "killed" in done["error"]
            assert client.get("/models/softmax").json()["version"] == active
            r = client.post("/predict", json={"pixels": image()})
            assert r.status_code == 200 and r.json()["version"] == active
        assert not list(server.model_dir.rglob("*.tmp"))


def test_sigterm_during_a_job_cancels_it_cleanly(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    env = {"SOFTSERVE_DATA_DIR": str(data)}
    with run_server(tmp_path, env) as server, server.client() as client:
        job = submit(client, {"epochs": 200, "batch_size": 1})
        wait_for(lambda: client.get(f"/train/{job['job_id']}").json()["progress"])
        server.process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown is done
        assert server.process.wait(60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log_text()
    with run_server(tmp_path, env, model_dir=tmp_path / "models") as server, server.client() as c:
        done = c.get(f"/train/{job['job_id']}").json()
        assert done["status"] == "cancelled"
        assert "shut down" in done["error"]
        assert not list(server.model_dir.rglob("*.tmp"))


def test_sigterm_ends_event_streams_so_shutdown_is_prompt(tmp_path: Path) -> None:
    """An open event stream does not hold the server: SIGTERM ends it with a `shutdown` event,
    and the process exits well inside docker stop's 10 s, the job cancelled."""
    data = write_dataset(tmp_path / "data")
    env = {"SOFTSERVE_DATA_DIR": str(data)}
    events: list[str] = []
    with run_server(tmp_path, env, entry="service") as server, server.client() as client:
        job = submit(client, {"epochs": 200, "batch_size": 1})
        wait_for(lambda: client.get(f"/train/{job['job_id']}").json()["progress"])

        def follow() -> None:
            with server.client() as c, c.stream("GET", f"/train/{job['job_id']}/events") as r:
                events.extend(line for line in r.iter_lines() if line.startswith("event:"))

        follower = threading.Thread(target=follow)
        follower.start()
        wait_for(lambda: events)  # the stream is open
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(9)  # fails the test (TimeoutExpired) if the stream held it
        follower.join(10)
    assert events[-1] == "event: shutdown"
    with run_server(tmp_path, env, model_dir=tmp_path / "models") as server, server.client() as c:
        done = c.get(f"/train/{job['job_id']}").json()
        assert done["status"] == "cancelled" and "shut down" in done["error"], done


def test_a_test_set_with_random_labels_is_not_promoted(tmp_path: Path) -> None:
    """Deterministic 'not promoted': training on easy data, testing on shuffled labels."""
    data = write_dataset(tmp_path / "data")
    labels = np.random.default_rng(0).integers(0, 10, 200).astype(np.uint8)
    write_idx(data / f"{FILES['test_labels']}.gz", labels)
    models = as_synthetic_task(copy_shipped_models(tmp_path / "models"))
    env = {"SOFTSERVE_DATA_DIR": str(data)}
    with run_server(tmp_path, env, model_dir=models) as server, server.client() as c:
        active = c.get("/models/softmax").json()["version"]
        done = wait_done(c, submit(c, {"epochs": 2})["job_id"])
        assert done["status"] == "succeeded", done
        assert done["promoted"] is False
        assert "not promoted" in done["promotion_reason"] and "force" in done["promotion_reason"]
        assert c.get("/models/softmax").json()["version"] == active
        assert (server.model_dir / "softmax" / f"{done['version']}.npz").is_file()
