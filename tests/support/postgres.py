"""A real PostgreSQL server for tests (../shared/ci/postgres.md): Debian's binaries, a fresh
cluster in a temp folder, on a free port of 127.0.0.1, stopped by its PID.

PostgreSQL refuses to run as root, and CI runs as root: then every server command runs as the
`postgres` user the package creates (`runuser`), in a folder that user owns. As a normal user,
the commands run as that user. Where PostgreSQL is not installed, `start` skips the test, and
fails it under CI (tests/ci.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.ci import unavailable
from tests.support.server import free_port

__all__ = ["Postgres", "running_postgres"]

USER, PASSWORD, DATABASE = "softserve", "softserve-test-password", "softserve"
TABLES = ("softserve_jobs", "softserve_models", "softserve_model_versions", "softserve_schema")


def _bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (15 or later), or None."""
    found = []
    for folder in Path("/usr/lib/postgresql").glob("*/bin"):
        major = folder.parent.name
        if major.isdigit() and int(major) >= 15 and (folder / "initdb").exists():
            found.append((int(major), folder))
    return max(found)[1] if found else None


@dataclass
class Postgres:
    """One running cluster: ``url`` for the service (password auth over TCP)."""

    folder: Path
    port: int
    bin: Path
    as_postgres: bool  # run the server's commands as the postgres user (we are root)

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def pid(self) -> int | None:
        """The postmaster's PID, from its pid file (None when it is not running)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def run(self, tool: str, *args: str, timeout: float = 60) -> str:
        cmd: Sequence[str] = [str(self.bin / tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done.stdout

    def psql(self, sql: str) -> str:
        """Run ``sql`` as the superuser over the cluster's own socket."""
        return self.run("psql", "-h", str(self.folder), "-p", str(self.port), "-U", "postgres",
                        "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql)  # fmt: skip

    def empty(self) -> None:
        """Drop every softserve table, as a fresh database has none."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)} CASCADE")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self.run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.folder / "log"),
                 "-o", options, "start")  # fmt: skip

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m mode`` (``immediate``: as after a crash)."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self.run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "-l",
                 str(self.folder / "log"), "-o", options, "restart")  # fmt: skip

    def stop(self) -> None:
        """Stop the server by its PID: SIGINT (fast shutdown), then SIGKILL if it lingers."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A fresh cluster with a ``softserve`` role and database, removed afterwards."""
    folder_bin = _bin()
    if folder_bin is None:
        unavailable("PostgreSQL not installed: apt-get install postgresql", "installed postgresql")
    as_postgres = os.geteuid() == 0
    # /tmp itself, not pytest's folder: its parents are root's alone, and postgres must enter
    folder = Path(tempfile.mkdtemp(prefix="softserve-pg-"))
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    server = Postgres(folder, free_port(), folder_bin, as_postgres)
    try:
        server.run("initdb", "-D", str(server.data), "-U", "postgres", "--auth-local=trust",
                   "--auth-host=scram-sha-256", "-E", "UTF8")  # fmt: skip
        server.start()
        server.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        server.psql(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
