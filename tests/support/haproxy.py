"""A real haproxy (Debian's package) on a free port of 127.0.0.1, in front of servers there:
round robin, health checks on /health/ready, and retries on another server when one is lost, as
a production balancer is set up. Stopped by its PID. Where haproxy is not installed, `start`
skips the test, and fails it under CI (tests/ci.py)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.ci import unavailable
from tests.support.server import free_port, stop, wait_for

__all__ = ["Balancer", "config", "running_haproxy"]


def config(port: int, backends: Sequence[tuple[str, int]], *, check_every_ms: int = 500) -> str:
    """haproxy.cfg for ``backends`` (name, port): a server that fails two checks in a row
    leaves the rotation; a request whose connection fails, or that gets no answer, is sent to
    another server (``retry-on`` with ``redispatch``) rather than failed."""
    servers = "\n".join(f"    server {name} 127.0.0.1:{p} check" for name, p in backends)
    return f"""\
global
    maxconn 2048
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend softserve
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter {check_every_ms}ms fall 2 rise 2
{servers}
"""


@dataclass
class Balancer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def running_haproxy(folder: Path, backends: Sequence[tuple[str, int]]) -> Iterator[Balancer]:
    """haproxy in the foreground (``-db``) in front of ``backends``, until it is live."""
    binary = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if binary is None:
        unavailable("haproxy not installed: apt-get install haproxy", "installed haproxy")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = folder / "haproxy.cfg"
    cfg.write_text(config(port, backends))
    log = folder / "haproxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT
        )
    balancer = Balancer(f"http://127.0.0.1:{port}", process, log)
    try:

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"haproxy exited:\n{log.read_text(errors='replace')}")
            try:
                return httpx.get(f"{balancer.url}/health/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=30)
        yield balancer
    finally:
        stop(process)
