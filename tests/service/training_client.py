"""Helpers for tests that train through the service: the token, submitting, waiting for a job's
end, one synthetic image, and the training processes of a server. No tests here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.service.server import wait_for
from tests.synthetic import make_images

__all__ = ["AUTH", "TERMINAL", "TOKEN", "image", "submit", "training_children", "wait_done"]

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_done(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/train/{job_id}").json()
        return job if job["status"] in TERMINAL else None

    result = wait_for(done, timeout=timeout)
    assert isinstance(result, dict)
    return result


def submit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/train", json=body, headers=AUTH)
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    assert r.headers["location"] == f"/train/{job['job_id']}"
    assert job["status"] == "queued"
    return job


def image() -> list[int]:
    return [int(v) for v in make_images(1, 10, seed=5)[0][0].reshape(-1)]


def training_children(pid: int) -> list[int]:
    """Direct children of ``pid`` started by multiprocessing's spawn: the training processes
    (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        if ppid == pid and "spawn_main" in cmdline:
            found.append(int(entry.name))
    return found
