"""Real server processes on 127.0.0.1: the service (or any ASGI app) under uvicorn, or
``python -m service``, on a fresh copy of the shipped models, stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import httpx

__all__ = [
    "REPO",
    "SHIPPED",
    "Server",
    "clean_env",
    "copy_shipped_models",
    "free_port",
    "run_server",
    "service_env",
    "stop",
    "wait_for",
    "wait_until_live",
]

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models"
START_TIMEOUT = 60.0  # generous: a busy CI machine, not the readiness target (measured in bench)
T = TypeVar("T")


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


def service_env(root: Path, model_dir: Path | None = None, **settings: str) -> dict[str, str]:
    """A clean environment serving ``model_dir`` (default: a fresh copy of the shipped models in
    ``root``/models), state in ``root``/state, plus ``settings`` (SOFTSERVE_* names)."""
    models = model_dir if model_dir is not None else copy_shipped_models(root / "models")
    paths = {"SOFTSERVE_MODEL_DIR": str(models), "SOFTSERVE_STATE_DIR": str(root / "state")}
    return clean_env() | paths | settings


@contextmanager
def run_server(
    root: Path,
    env: Mapping[str, str | None] | None = None,
    *,
    workers: int = 1,
    model_dir: Path | None = None,
    port: int | None = None,
    wait_ready: bool = True,
    entry: str = "uvicorn",
    app: str = "service.app:app",
    uvicorn_options: Sequence[str] = ("--log-level", "info"),
    prefix: Sequence[str] = (),
    live_path: str = "/health/live",
    watch_interval: float | None = 0.2,
    cwd: Path = REPO,
    output: Literal["file", "pipe"] = "file",
) -> Iterator[Server]:
    """Start a server on a copy of the shipped models under ``root``; stop it (by PID) on exit.

    ``entry``: "uvicorn" runs ``uvicorn APP`` with ``uvicorn_options``, "service" runs
    ``python -m service`` with --host/--port/--workers, "service-env" runs it with
    SOFTSERVE_HOST/PORT/WORKERS instead. ``prefix`` goes before the command (``taskset -c 0``);
    ``live_path`` is asked until it answers 200. ``watch_interval``: how often the server looks
    at its model folder (short, so tests see promotions soon; None: the service's default).
    ``env`` adds to the server's environment; a None value leaves that variable unset.
    ``output``: where its stdout and stderr go: the log file, or a pipe (as under Docker or
    systemd) that a thread copies into the log file as it comes.
    """
    root.mkdir(parents=True, exist_ok=True)
    watch = {} if watch_interval is None else {"SOFTSERVE_WATCH_INTERVAL": str(watch_interval)}
    full_env = service_env(root, model_dir, **watch)
    for key, value in (env or {}).items():  # None: not set at all
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    models = cwd / full_env.get("SOFTSERVE_MODEL_DIR", "models")
    log = root / f"server-{time.monotonic_ns()}.log"
    port = port if port is not None else free_port()
    where = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    if entry == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", app, *where, *uvicorn_options]
    elif entry == "service":
        cmd = [sys.executable, "-m", "service", *where]
    else:
        cmd = [sys.executable, "-m", "service"]
        full_env |= {
            "SOFTSERVE_HOST": "127.0.0.1",
            "SOFTSERVE_HTTP_PORT": str(port),
            "SOFTSERVE_WORKERS": str(workers),
        }
    copier: threading.Thread | None = None
    with log.open("wb") as out:
        into = subprocess.PIPE if output == "pipe" else out
        process = subprocess.Popen(
            [*prefix, *cmd], cwd=cwd, env=full_env, stdout=into, stderr=subprocess.STDOUT
        )
    pipe = process.stdout
    if pipe is not None:
        copier = threading.Thread(target=_copy, args=(pipe.fileno(), log), daemon=True)
        copier.start()
    server = Server(f"http://127.0.0.1:{port}", process, models, root / "state", log)
    try:
        if wait_ready:
            wait_until_live(server, live_path)
        yield server
    finally:
        stop(process)
        if pipe is not None and copier is not None:
            copier.join(30)
            pipe.close()


def _copy(fd: int, log: Path) -> None:
    """The pipe ``fd`` into ``log``, chunk by chunk as read, until every writer closed it."""
    with log.open("ab") as out:
        while chunk := os.read(fd, 65536):
            out.write(chunk)
            out.flush()


def wait_until_live(
    server: Server, path: str = "/health/live", timeout: float = START_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{server.log_text()}")
            try:
                if client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"server not live after {timeout} s:\n{server.log_text()}")


def stop(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_for(predicate: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.1) -> T:
    """Poll ``predicate()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
