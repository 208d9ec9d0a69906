"""A real uvicorn process serving the app on 127.0.0.1, for tests that speak HTTP to it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models"
START_TIMEOUT = 60.0  # generous: a busy CI machine, not the readiness target (measured in bench)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    model_dir: Path
    state_dir: Path
    log: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """This process's environment without the settings a test's server must not inherit."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SOFTSERVE_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }


def copy_shipped_models(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("softmax.npz", "binary.npz"):
        shutil.copy2(SHIPPED / name, folder / name)
    return folder


@contextmanager
def run_server(
    root: Path,
    env: Mapping[str, str] | None = None,
    *,
    workers: int = 1,
    model_dir: Path | None = None,
    port: int | None = None,
    wait_ready: bool = True,
    entry: str = "uvicorn",
) -> Iterator[Server]:
    """Start the service on a copy of the shipped models under ``root``; stop it (by PID) on exit.

    ``entry``: "uvicorn" runs ``uvicorn service.app:app``, "service" runs ``python -m service``
    with --host/--port/--workers, "service-env" runs it with SOFTSERVE_HOST/PORT/WORKERS instead.
    """
    models = model_dir if model_dir is not None else copy_shipped_models(root / "models")
    state = root / "state"
    log = root / f"server-{time.monotonic_ns()}.log"
    port = port if port is not None else free_port()
    full_env = {
        **clean_env(),
        "SOFTSERVE_MODEL_DIR": str(models),
        "SOFTSERVE_STATE_DIR": str(state),
        "SOFTSERVE_WATCH_INTERVAL": "0.2",
        **(env or {}),
    }
    where = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    if entry == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", "service.app:app", *where, "--log-level", "info"]
    elif entry == "service":
        cmd = [sys.executable, "-m", "service", *where]
    else:
        cmd = [sys.executable, "-m", "service"]
        full_env |= {
            "SOFTSERVE_HOST": "127.0.0.1",
            "SOFTSERVE_HTTP_PORT": str(port),
            "SOFTSERVE_WORKERS": str(workers),
        }
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=out, stderr=out)
    server = Server(f"http://127.0.0.1:{port}", process, models, state, log)
    try:
        if wait_ready:
            wait_until_live(server)
        yield server
    finally:
        stop(process)


def wait_until_live(server: Server, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{server.log_text()}")
            try:
                if client.get("/health/live").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"server not live after {timeout} s:\n{server.log_text()}")


def stop(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_for(predicate: object, timeout: float = 60.0, interval: float = 0.1) -> object:
    """Poll ``predicate()`` until it returns something truthy; fail after ``timeout`` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
