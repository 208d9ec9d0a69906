"""Faults with real processes and real files: a pickle in the model folder, a full disk while
saving, a training process killed while predictions run. (Restarts, SIGTERM and kill -9 of the
server are in test_train_api.py; several workers in test_workers.py.)"""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service.modelstore.folder import FolderModelStore
from tests.ci import unavailable
from tests.support.procs import training_children
from tests.support.server import SHIPPED, Server, copy_shipped_models, run_server, wait_for
from tests.support.training import image, submit, wait_done
from tests.synthetic import write_dataset
from trainer import artifacts
from trainer.artifacts import Artifact

POLL = 30.0


class _Payload:
    """Unpickling this runs a command: what a hostile .npz would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_in_the_model_folder_is_never_executed_nor_served(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    shipped = artifacts.load(SHIPPED / "softmax.npz")
    hostile = io.BytesIO()
    payload = np.array([_Payload(marker)], dtype=object)
    np.savez(hostile, weights=shipped.weights, bias=shipped.bias, meta=payload)
    with run_server(tmp_path) as server, server.client() as client:
        incoming = server.model_dir / ".softmax.npz.incoming"
        incoming.write_bytes(hostile.getvalue())
        incoming.replace(server.model_dir / "softmax.npz")

        def problem() -> str | None:
            found: str | None = client.get("/health/ready").json()["problems"].get("softmax")
            return found

        found = wait_for(problem, timeout=POLL)
        assert isinstance(found, str) and "pickled object array" in found, found
        assert client.get("/models/softmax").json()["version"] == shipped.version
        answer = client.post("/predict", json={"pixels": image()})
        assert answer.status_code == 200 and answer.json()["version"] == shipped.version
        assert "pickled object array" in server.log_text()
    assert not marker.exists()


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder``: a disk that really fills up."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        unavailable("mounting a small tmpfs needs root", "run as root")
    folder.mkdir(parents=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    result = subprocess.run(mount, capture_output=True, text=True, check=False)
    if result.returncode != 0:  # root without CAP_SYS_ADMIN, as in an unprivileged container
        unavailable(f"cannot mount a tmpfs: {result.stderr.strip()}", "run with CAP_SYS_ADMIN")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Take all but ``leave`` bytes of the file system holding ``folder``."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    filler = folder / "filler.bin"
    with filler.open("wb") as out:
        out.truncate(0)
        out.write(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_fails_the_job_cleanly_and_keeps_the_model(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    with small_disk(tmp_path / "models", "1m") as models:
        copy_shipped_models(models)
        env = {"SOFTSERVE_DATA_DIR": str(data)}
        with run_server(tmp_path, env, model_dir=models) as server, server.client() as client:
            before = client.get("/models/softmax").json()["version"]
            files = sorted(p.relative_to(models) for p in models.rglob("*"))
            filler = fill(models, leave=8192)  # less than any artifact
            job = submit(client, {"epochs": 2, "force": True})
            done = wait_done(client, job["job_id"])
            assert done["status"] == "failed", done
            assert done["error"] == "could not save the new version: No space left on device"
            (said,) = [  # the training child's own line, in the server's format (JSON here)
                orjson.loads(line) for line in server.log_text().splitlines()
                if line.startswith("{") and '"logger":"softserve.jobs.child"' in line
            ]  # fmt: skip
            assert (said["level"], said["type"]) == ("error", "log") and job["job_id"] in said[
                "message"
            ]
            assert "could not save" in said["message"] and "No space left" in said["exception"]
            assert client.get("/models/softmax").json()["version"] == before
            after = sorted(p.relative_to(models) for p in models.rglob("*"))
            assert after == sorted([*files, Path("filler.bin")])  # no temp file, no half version
            check_serving(client, server, before)
            filler.unlink()  # space again: the next job goes through
            again = wait_done(client, submit(client, {"epochs": 2, "force": True})["job_id"])
            assert again["status"] == "succeeded" and again["promoted"], again
            assert client.get("/models/softmax").json()["version"] == again["version"]


def test_a_failed_swap_removes_the_version_it_had_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills between keeping the new version and writing the active file."""
    store = FolderModelStore(copy_shipped_models(tmp_path / "models"))
    shipped = artifacts.load(SHIPPED / "softmax.npz")
    meta = shipped.meta | {"version": artifacts.new_version()}
    new = Artifact(shipped.weights, shipped.bias, meta)
    real_save = artifacts.save

    def save(artifact: Artifact, path: str | os.PathLike[str]) -> Path:
        if Path(path) == store.active_path("softmax"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(artifact, path)

    monkeypatch.setattr(artifacts, "save", save)
    with pytest.raises(OSError, match="No space"):
        store.promote("softmax", new, force=True)
    assert store.versions("softmax") == [shipped.version]  # archived, the new one gone
    assert artifacts.load(store.active_path("softmax")).version == shipped.version


def test_killing_the_training_process_fails_no_prediction(tmp_path: Path) -> None:
    """kill -9 of the training process mid-epoch while a client predicts all the time."""
    data = write_dataset(tmp_path / "data")
    with run_server(tmp_path, {"SOFTSERVE_DATA_DIR": str(data)}) as server:
        failures: list[str] = []
        answered = 0
        stop = threading.Event()

        def predict_forever() -> None:
            nonlocal answered
            with server.client() as c:
                while not stop.is_set():
                    r = c.post("/predict", json={"pixels": image()})
                    if r.status_code == 200:
                        answered += 1
                    else:
                        failures.append(r.text)

        predictor = threading.Thread(target=predict_forever)
        predictor.start()
        try:
            with server.client() as client:
                active = client.get("/models/softmax").json()["version"]
                job = submit(client, {"epochs": 200, "batch_size": 1})
                wait_for(lambda: client.get(f"/train/{job['job_id']}").json()["progress"])
                for pid in training_children(server.process.pid):
                    os.kill(pid, signal.SIGKILL)
                done = wait_done(client, job["job_id"])
                served_after = answered
                wait_for(lambda: answered > served_after + 20)
        finally:
            stop.set()
            predictor.join()
        assert failures == []
        assert done["status"] == "failed" and "signal 9" in done["error"], done
        with server.client() as client:
            check_serving(client, server, active)
        assert not list(server.model_dir.rglob("*.tmp"))


def check_serving(client: httpx.Client, server: Server, version: str) -> None:
    assert client.get("/health/ready").status_code == 200
    r = client.post("/predict", json={"pixels": image()})
    assert r.status_code == 200 and r.json()["version"] == version
    assert artifacts.load(server.model_dir / "softmax.npz").version == version
