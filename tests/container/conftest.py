"""The image under test: $SOFTSERVE_TEST_IMAGE (what .ci/run built), else built here as
softserve:test. Without a Docker daemon these tests skip, except under CI where they fail."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Mapping

import pytest

from tests.ci import unavailable
from tests.container.docker import Container, daemon_problem, docker, new_volume, remove
from tests.container.docker import run_container as start
from tests.support.server import REPO

BUILD_TIMEOUT = 1800.0


@pytest.fixture(scope="session")
def image() -> str:
    problem = daemon_problem()
    if problem is not None:
        unavailable(problem, "installed docker.io and started dockerd (../shared/ci/docker-ci.md)")
    tag = os.environ.get("SOFTSERVE_TEST_IMAGE")
    if tag:
        docker("image", "inspect", tag)  # fails clearly if .ci/run did not build it
        return tag
    tag = "softserve:test"
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(REPO)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        check=True,
        timeout=BUILD_TIMEOUT,
    )
    return tag


RunContainer = Callable[[Mapping[str, str], Mapping[str, str] | None], Container]


@pytest.fixture
def run_container(image: str) -> Iterator[RunContainer]:
    """Start containers of the image; each is removed (by id) when the test ends."""
    started: list[str] = []

    def run(volumes: Mapping[str, str], env: Mapping[str, str] | None = None) -> Container:
        container = start(image, volumes, env)
        started.append(container.id)
        return container

    yield run
    for container_id in started:
        remove(container_id)


@pytest.fixture
def volumes(image: str) -> Iterator[dict[str, str]]:
    """A fresh named volume for the models and one for the job store; removed afterwards."""
    made = {new_volume(): "/app/models", new_volume(): "/app/state"}
    yield made
    for name in made:
        for container_id in docker("ps", "-aq", "--filter", f"volume={name}").split():
            remove(container_id)
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, check=False)
