"""Training through the API: the token the test servers use, submitting a job, waiting for its
end, and one synthetic image to predict with."""

from __future__ import annotations

from typing import Any

import httpx

from service.jobs.record import TERMINAL
from tests.support.server import wait_for
from tests.synthetic import make_images

__all__ = ["AUTH", "TOKEN", "image", "submit", "wait_done"]

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


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
