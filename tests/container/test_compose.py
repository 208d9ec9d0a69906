"""deploy/compose.yaml run for real: PostgreSQL, three replicas of the image under test and
haproxy in front, spoken to through the load balancer on a 127.0.0.1 port.

Needs a Docker daemon, docker-compose (or the compose plugin) and the postgres:15 and haproxy:2.6
images, which .ci/run builds as stand-ins (tests/container/standins) where they cannot be pulled.
Without them the test skips, except under CI where it fails.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.jobs.record import TERMINAL
from tests.ci import unavailable
from tests.container.docker import LABEL, DockerError, docker
from tests.support.server import REPO, clean_env, free_port, wait_for
from tests.support.training import TOKEN, submit, wait_done

COMPOSE_FILE = REPO / "deploy" / "compose.yaml"
SERVICES = ("postgres", "softserve", "lb")
IMAGES = ("postgres:15", "haproxy:2.6")  # the compose file's other images
REPLICAS = 3  # the compose file's deploy.replicas
UP_TIMEOUT = 300.0  # five containers on a busy CI machine; the replicas wait for the database
JOB_TIMEOUT = 300.0
LEASE_DEADLINE = 90.0  # a dead replica's job is failed once its lease (10 s) has expired
PIXELS = {"pixels": [0] * 784}


@dataclass
class Stack:
    """One compose project of deploy/compose.yaml, its load balancer at ``url``."""

    command: list[str]  # docker-compose -p PROJECT -f compose.yaml -f labels
    env: dict[str, str]
    project: str
    url: str

    def compose(self, *args: str, timeout: float = 120.0) -> str:
        result = subprocess.run(
            [*self.command, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise DockerError(f"compose {' '.join(args)}: {result.stderr.strip()[-3000:]}")
        return result.stdout

    def containers(self, service: str | None = None) -> list[str]:
        """Ids of the project's containers (of ``service``), running or not."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service is not None:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        return docker("ps", "-aq", "--no-trunc", *filters).split()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0)


def compose_command() -> list[str] | None:
    """Debian's docker-compose (v1), else the docker compose plugin, else None."""
    if shutil.which("docker-compose") is not None:
        return ["docker-compose"]
    plugin = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
    )
    return ["docker", "compose"] if plugin.returncode == 0 else None


@pytest.fixture
def stack(image: str, tmp_path: Path) -> Iterator[Stack]:
    """deploy/compose.yaml up with the image under test, as a project of its own on a free
    port; brought down with its volumes afterwards, whatever happened."""
    command = compose_command()
    if command is None:
        unavailable("no docker-compose (apt-get install docker-compose)", "installed it")
    for name in IMAGES:
        try:
            docker("image", "inspect", name)
        except DockerError:
            unavailable(f"no {name} image", "pulled it or built its stand-in")
    # Only labels added, so that .ci/run's trap removes what a crashed run leaves behind.
    labels = {"labels": [LABEL]}
    override = {
        "services": dict.fromkeys(SERVICES, labels),
        "volumes": {"pgdata": labels},
        "networks": {"default": labels},
    }
    (tmp_path / "labels.yaml").write_text(json.dumps(override))  # JSON is YAML
    project = f"{LABEL}-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = clean_env() | {
        "SOFTSERVE_IMAGE": image,
        "SOFTSERVE_PORT": str(port),
        "SOFTSERVE_API_TOKEN": TOKEN,
        "POSTGRES_PASSWORD": secrets.token_hex(12),
    }
    files = ["-f", str(COMPOSE_FILE), "-f", str(tmp_path / "labels.yaml")]
    running = Stack([*command, "-p", project, *files], env, project, f"http://127.0.0.1:{port}")
    try:
        running.compose("up", "-d", "--no-build", timeout=UP_TIMEOUT)
        yield running
    finally:
        try:  # shown if the test failed
            print(running.compose("logs", "--no-color", "--tail", "60", timeout=60))
        finally:
            running.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180)


@pytest.mark.timeout(900)
def test_three_replicas_behind_the_load_balancer_share_versions_and_outlive_a_killed_one(
    stack: Stack,
) -> None:
    hostnames = wait_until_healthy(stack)
    with stack.client() as lb:
        # every replica answers through the load balancer, each naming itself
        seen: set[str] = set()

        def all_answered() -> bool:
            r = lb.get("/health/ready")
            if r.status_code == 200:
                seen.add(r.headers["x-softserve-replica"])
            return seen == set(hostnames)

        wait_for(all_answered, timeout=60)

        # a version trained through the load balancer is then served by every replica
        shipped = model_version(lb)
        trained = submit(lb, {"model": "softmax", "epochs": 1, "force": True})["job_id"]
        done = wait_done(lb, trained, timeout=JOB_TIMEOUT)
        assert done["status"] == "succeeded", done
        assert done["promoted"] is True and done["version"] != shipped, done
        serving: dict[str, str] = {}

        def all_serve_it() -> bool:
            r = lb.get("/models/softmax")
            serving[r.headers["x-softserve-replica"]] = r.json()["version"]
            return serving == dict.fromkeys(hostnames, done["version"])

        wait_for(all_serve_it, timeout=60)

        # a replica killed while it trains: its job fails as interrupted, the job queued behind
        # it (one job at a time over all replicas) runs elsewhere, and predictions go on
        long = submit(lb, {"model": "softmax", "epochs": 200, "batch_size": 8, "force": True})
        running = wait_for(lambda: training(lb, long["job_id"]), timeout=JOB_TIMEOUT)
        queued = submit(lb, {"model": "softmax", "epochs": 1, "force": True})
        victim = running["replica"]
        docker("kill", hostnames[victim])
        survivors = set(hostnames) - {victim}

        wait_for(lambda: predicts(lb), timeout=30)  # haproxy may need a check to drop it
        answers = [lb.post("/predict", json=PIXELS) for _ in range(12)]
        assert [r.status_code for r in answers] == [200] * 12
        assert {r.headers["x-softserve-replica"] for r in answers} <= survivors

        interrupted = wait_done(lb, long["job_id"], timeout=LEASE_DEADLINE)
        assert interrupted["status"] == "failed", interrupted
        assert interrupted["error"].startswith("interrupted"), interrupted
        after = wait_done(lb, queued["job_id"], timeout=JOB_TIMEOUT)
        assert after["status"] == "succeeded" and after["replica"] in survivors, after
        jobs = lb.get("/train", params={"limit": 1000}).json()["jobs"]
        assert {job["job_id"] for job in jobs} == {trained, long["job_id"], queued["job_id"]}
        assert all(job["status"] in TERMINAL for job in jobs), jobs
    assert docker("inspect", "--format", "{{.State.Running}}", hostnames[victim]) == "false"


def wait_until_healthy(stack: Stack) -> dict[str, str]:
    """Once every container's health check passes: each replica's hostname (the name it
    answers with) -> its container id."""
    replicas = stack.containers("softserve")
    assert len(replicas) == REPLICAS, replicas
    everything = stack.containers()
    assert len(everything) == REPLICAS + 2, everything

    def healthy() -> bool:
        states = docker("inspect", "--format", "{{.State.Health.Status}}", *everything)
        return set(states.split()) == {"healthy"}

    wait_for(healthy, timeout=UP_TIMEOUT, interval=1.0)
    return {docker("inspect", "--format", "{{.Config.Hostname}}", c): c for c in replicas}


def model_version(client: httpx.Client) -> str:
    version: str = client.get("/models/softmax").json()["version"]
    return version


def training(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    """The job's record once its training process reports progress."""
    job: dict[str, Any] = client.get(f"/train/{job_id}").json()
    assert job["status"] in ("queued", "running"), job
    return job if job["status"] == "running" and job["progress"] else None


def predicts(client: httpx.Client) -> bool:
    try:
        return client.post("/predict", json=PIXELS).status_code == 200
    except httpx.TransportError:
        return False
