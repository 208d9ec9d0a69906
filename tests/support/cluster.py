"""Replicas of the service sharing one real PostgreSQL, behind a real haproxy: what the replica
scenarios (tests/service/test_replica_scenarios.py) and the replica benchmark (bench/replicas.py)
run. Each replica is a `python -m service` on its own free port, with its own state folder, named
``r0``, ``r1``, ...; the first start seeds the database from the shipped models."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.haproxy import Balancer, running_haproxy
from tests.support.postgres import Postgres
from tests.support.server import SHIPPED, Server, free_port, run_server, wait_for

__all__ = ["AUTH", "TOKEN", "Cluster", "running_cluster", "served"]

TOKEN = "cluster-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def served(server: Server, model: str = "softmax") -> str:
    """The version of ``model`` that ``server`` (one of its workers) serves."""
    return str(httpx.get(f"{server.url}/models/{model}", timeout=10).json()["version"])


@dataclass
class Cluster:
    postgres: Postgres
    root: Path
    env: dict[str, str]
    watch_interval: float
    servers: list[Server] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    balancer: Balancer | None = None
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def names(self) -> list[str]:
        return [f"r{i}" for i in range(len(self.ports))]

    def start(self, i: int) -> Server:
        """(Re)start replica ``i`` on its port, under its name."""
        server = self._stack.enter_context(
            run_server(
                self.root / f"r{i}-{os.urandom(3).hex()}",
                self.env | {"SOFTSERVE_REPLICA_NAME": f"r{i}"},
                entry="service",
                port=self.ports[i],
                watch_interval=self.watch_interval,
            )
        )
        if i < len(self.servers):
            self.servers[i] = server
        else:
            self.servers.append(server)
        return server

    def kill(self, i: int) -> int:
        """``kill -9`` replica ``i`` (its training children live on, as after a crash); its pid."""
        pid = self.servers[i].process.pid
        os.kill(pid, signal.SIGKILL)
        self.servers[i].process.wait(30)
        return pid

    def served(self, i: int, model: str = "softmax") -> str:
        return served(self.servers[i], model)

    def serving(self, version: str, model: str = "softmax") -> bool:
        return all(self.served(i, model) == version for i in range(len(self.servers)))

    def close(self) -> None:
        self._stack.close()


@contextmanager
def running_cluster(
    postgres: Postgres,
    root: Path,
    *,
    replicas: int = 3,
    env: Mapping[str, str] | None = None,
    watch_interval: float = 2.0,
    balancer: bool = True,
) -> Iterator[Cluster]:
    """``replicas`` replicas on an empty database (seeded once by the first), behind haproxy."""
    postgres.empty()
    settings = {
        "SOFTSERVE_DATABASE_URL": postgres.url, "SOFTSERVE_SEED_DIR": str(SHIPPED),
        "SOFTSERVE_API_TOKEN": TOKEN,
    } | dict(env or {})  # fmt: skip
    cluster = Cluster(postgres, root, settings, watch_interval)
    cluster.ports = [free_port() for _ in range(replicas)]
    try:
        for i in range(replicas):
            cluster.start(i)
        if balancer:
            backends = [
                (name, port) for name, port in zip(cluster.names, cluster.ports, strict=True)
            ]
            cluster.balancer = cluster._stack.enter_context(
                running_haproxy(root / "haproxy", backends)
            )
        wait_for(lambda: len({cluster.served(i) for i in range(replicas)}) == 1, timeout=60)
        yield cluster
    finally:
        cluster.close()
