"""The PostgreSQL harness the replica tests stand on (tests/support/postgres.py): a real server,
reached with psycopg over TCP with a password; it survives a crash-style restart and a killed
connection, and it is gone, by its PID, when the block ends."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.support.postgres import running_postgres


def test_a_real_server_answers_restarts_and_stops() -> None:
    with running_postgres() as server:
        with psycopg.connect(server.url, connect_timeout=10, autocommit=True) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()
            assert version is not None and int(version[0]) >= 150000
            assert conn.execute("SELECT current_user").fetchone() == ("softserve",)
            backend = conn.info.backend_pid
            assert server.psql(f"SELECT pg_terminate_backend({backend})").strip() == "t"
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        pid = server.pid()
        server.restart("immediate")
        assert server.pid() not in (None, pid)
        with psycopg.connect(server.url, connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        wrong = server.url.replace("softserve-test-password", "wrong")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(wrong, connect_timeout=10)
        last = server.pid()
    assert last is not None
    with pytest.raises(ProcessLookupError):
        os.kill(last, 0)
