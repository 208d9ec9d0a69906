"""What the PostgreSQL stores share (`service.jobs.postgres`, `service.modelstore.postgres`): the
URL rules, a checked connection pool, one transaction, and schema migration under an advisory
lock with a schema-version table.

- A location is the URL without its password: what may be logged, stored, or passed to a child,
  which takes the real URL from SOFTSERVE_DATABASE_URL in its environment.
- The pool checks each connection before lending it, so a restarted server costs no call a
  failure: the broken connection is replaced instead.
- Replicas that start together migrate one at a time: each takes `MIGRATION_LOCK` for its
  transaction, so the second sees the first's tables. Seeding takes the same lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

__all__ = [
    "MIGRATION_LOCK",
    "QUEUE_LOCK",
    "Connection",
    "Tables",
    "env_url",
    "migrate",
    "open_migrated",
    "open_pool",
    "transaction",
    "without_password",
]

MIGRATION_LOCK = 0x50F7_0001  # advisory lock keys: schema changes and seeding,
QUEUE_LOCK = 0x50F7_0002  # and the jobs' submit and claim
Connection = psycopg.Connection[dict[str, Any]]
_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS softserve_schema (
    component TEXT PRIMARY KEY, version INTEGER NOT NULL
)"""


def without_password(url: str) -> str:
    """``url`` with any password left out: what may be logged, stored or passed on."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def env_url(location: str) -> str:
    """The URL to open ``location`` with: SOFTSERVE_DATABASE_URL when it names the same
    database (it holds the password, which locations leave out), else the location."""
    url = os.environ.get("SOFTSERVE_DATABASE_URL", "")
    return url if url and without_password(url) == location else location


def open_pool(url: str, *, size: int, timeout: float) -> ConnectionPool[Connection]:
    """A pool of up to ``size`` connections whose calls give up after ``timeout`` seconds."""
    return ConnectionPool(
        url, min_size=1, max_size=size, timeout=timeout, open=True,
        check=ConnectionPool.check_connection,
        kwargs={"row_factory": dict_row, "connect_timeout": max(int(timeout), 1)},
    )  # fmt: skip


@contextmanager
def transaction(pool: ConnectionPool[Connection], lock: int | None = None) -> Iterator[Connection]:
    """One transaction on a pooled connection; with ``lock``, holding that advisory lock until
    it ends."""
    with pool.connection() as conn, conn.transaction():
        if lock is not None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        yield conn


def open_migrated(
    url: str, component: str, schema: str, version: int, *, size: int, timeout: float
) -> ConnectionPool[Connection]:
    """`open_pool`, then `migrate`; the pool is closed again if the migration fails."""
    pool = open_pool(url, size=size, timeout=timeout)
    try:
        migrate(pool, component, schema, version)
    except BaseException:
        pool.close()
        raise
    return pool


def migrate(pool: ConnectionPool[Connection], component: str, schema: str, version: int) -> None:
    """Create ``component``'s tables (``schema``: statements separated by ';') and record its
    schema ``version``, under `MIGRATION_LOCK`; refuse a database a newer softserve migrated."""
    with transaction(pool, MIGRATION_LOCK) as conn:
        for statement in (_SCHEMA_TABLE, *schema.split(";")):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute(
            "SELECT version FROM softserve_schema WHERE component = %s", (component,)
        ).fetchone()
        if row is not None and row["version"] > version:
            raise RuntimeError(
                f"the database's {component} schema is version {row['version']}, newer than "
                f"this softserve knows ({version}): upgrade softserve"
            )
        conn.execute(
            "INSERT INTO softserve_schema (component, version) VALUES (%s, %s)"
            " ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
            (component, version),
        )


class Tables:
    """What a PostgreSQL store is built on: ``location`` (the URL without its password), a
    checked pool, and its component's tables migrated when it opens. A store sets
    ``component``, ``schema`` and ``schema_version``."""

    component: ClassVar[str]
    schema: ClassVar[str]
    schema_version: ClassVar[int]

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 3.0) -> None:
        self.location = without_password(url)
        self._pool = open_migrated(
            url, self.component, self.schema, self.schema_version, size=pool_size,
            timeout=timeout,
        )  # fmt: skip

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()

    def _tx(self, lock: int | None = None) -> AbstractContextManager[Connection]:
        """One transaction (`transaction`) on this store's pool."""
        return transaction(self._pool, lock)
