"""What both PostgreSQL stores share (service/pg.py), against a real server: the password kept
out of locations, the schema created once by replicas starting together, an older schema
migrated, a newer one refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from service.jobs.postgres import PostgresJobStore
from service.modelstore.postgres import SCHEMA_VERSION, PostgresModelStore
from service.pg import env_url, without_password
from tests.support.postgres import Postgres


def test_a_location_never_holds_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://user:s3cret@db.internal:5433/softserve?sslmode=require"
    location = without_password(url)
    assert location == "postgresql://user@db.internal:5433/softserve?sslmode=require"
    assert without_password("postgresql://db/softserve") == "postgresql://db/softserve"
    monkeypatch.setenv("SOFTSERVE_DATABASE_URL", url)
    assert env_url(location) == url  # a child opens it with the password from its environment
    assert env_url("postgresql://user@elsewhere/db") == "postgresql://user@elsewhere/db"


def schema(postgres: Postgres) -> dict[str, int]:
    with psycopg.connect(postgres.url) as conn:
        return dict(conn.execute("SELECT component, version FROM softserve_schema").fetchall())


def test_replicas_starting_together_create_the_schema_once(postgres: Postgres) -> None:
    postgres.empty()

    def start(_: int) -> None:
        PostgresJobStore(postgres.url).close()
        PostgresModelStore(postgres.url).close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(start, range(6)))  # no "relation already exists", no deadlock
    assert schema(postgres) == {"jobs": 1, "models": SCHEMA_VERSION}


def test_an_older_model_schema_is_migrated(postgres: Postgres) -> None:
    postgres.empty()
    PostgresModelStore(postgres.url).close()
    with psycopg.connect(postgres.url) as conn:  # as softserve's first release left it
        conn.execute("ALTER TABLE softserve_model_versions DROP COLUMN job_id")
        conn.execute("UPDATE softserve_schema SET version = 1 WHERE component = 'models'")
    PostgresModelStore(postgres.url).close()
    assert schema(postgres)["models"] == SCHEMA_VERSION == 2
    with psycopg.connect(postgres.url) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'softserve_model_versions'"
        ).fetchall()
    assert ("job_id",) in columns


def test_a_newer_schema_is_refused_with_the_fix(postgres: Postgres) -> None:
    postgres.empty()
    PostgresJobStore(postgres.url).close()
    with psycopg.connect(postgres.url) as conn:
        conn.execute("UPDATE softserve_schema SET version = 99 WHERE component = 'jobs'")
    with pytest.raises(RuntimeError, match=r"jobs schema is version 99, newer .*upgrade softserve"):
        PostgresJobStore(postgres.url)
