"""The docker CLI for tests of the image: containers published on 127.0.0.1 only, labelled so
that .ci/run's trap can remove whatever a crashed test run leaves behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

LABEL = os.environ.get("SOFTSERVE_TEST_LABEL", "softserve-test")  # .ci/run's: one per run
READY_WITHIN = 15.0  # seconds: "ready within a few seconds", with room for a busy CI machine


class DockerError(RuntimeError):
    pass


def docker(*args: str, timeout: float = 120.0) -> str:
    """Run ``docker ARGS``; its stdout, or DockerError with its stderr."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:3])}...: {result.stderr.strip()[-2000:]}")
    return result.stdout.strip()


def daemon_problem() -> str | None:
    """Why containers cannot run here, or None when a daemon answers."""
    if shutil.which("docker") is None:
        return "no docker command (apt-get install docker.io)"
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except (DockerError, subprocess.TimeoutExpired) as exc:
        return f"no Docker daemon answers: {str(exc).splitlines()[-1][:300]}"
    return None


def new_volume() -> str:
    name = f"{LABEL}-{uuid.uuid4().hex[:12]}"
    docker("volume", "create", "--label", LABEL, name)
    return name


@dataclass
class Container:
    id: str
    url: str

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.id)

    def exec(self, *command: str) -> str:
        return docker("exec", self.id, *command)

    def logs(self) -> str:
        result = subprocess.run(
            ["docker", "logs", "--tail", "200", self.id],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.stdout + result.stderr

    def wait_ready(self, timeout: float = READY_WITHIN) -> float:
        """Seconds until /health/ready answered 200; fails with the logs after ``timeout``."""
        start = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while (elapsed := time.monotonic() - start) < timeout:
                try:
                    if client.get("/health/ready").status_code == 200:
                        return elapsed
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"container not ready within {timeout} s:\n{self.logs()}")


def run_container(
    image: str, volumes: Mapping[str, str], env: Mapping[str, str] | None = None
) -> Container:
    """``docker run -d`` with ``volumes`` (name -> path inside), on a free 127.0.0.1 port."""
    args = ["run", "-d", "--label", LABEL, "-p", "127.0.0.1::8000", "--health-interval", "1s"]
    for name, path in volumes.items():
        args += ["-v", f"{name}:{path}"]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    container_id = docker(*args, image)
    return Container(container_id, f"http://{published(container_id)}")


def published(container_id: str) -> str:
    """The 127.0.0.1:port that the container's port 8000 is published on."""
    lines = docker("port", container_id, "8000/tcp").splitlines()
    return next(line for line in lines if line.startswith("127.0.0.1:"))


def remove(container_id: str) -> None:
    subprocess.run(
        ["docker", "rm", "-f", "-v", container_id], capture_output=True, timeout=60, check=False
    )
