"""Model versions in PostgreSQL, for replicas on several hosts: the same `ModelStore` contract
as the model folder, kept by the same suite.

- Each version is stored once and never changed: name, version, kind, sha256, the `.npz` bytes,
  its test accuracy and metrics, created_at, and the job that made it.
- One row per model names its active version, with a counter that every change bumps (the
  stamp readers compare).
- Promotion is one transaction: the model's row locked, the active version compared as
  `decide_promotion` says, the version inserted, the pointer moved, then NOTIFY
  ``softserve_models`` with the model's name. Activation goes the same way.
- Versions are read back through the same validating loader as files: a file is never trusted
  because it came from the database.
- The tables are created under an advisory lock with a schema-version row; seeding takes the
  same lock, so replicas that start together seed once.

`service.database` wires it to SOFTSERVE_DATABASE_URL and listens for the notices.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from service.modelstore import (
    NAME_RE,
    Promotion,
    StoreError,
    check_name,
    check_version,
    decide_promotion,
)
from service.pg import MIGRATION_LOCK, Connection, Tables
from trainer import artifacts
from trainer.artifacts import Artifact, ArtifactError

__all__ = [
    "CHANNEL",
    "SCHEMA_VERSION",
    "PostgresModelStore",
    "from_bytes",
    "promote_in",
    "to_bytes",
]

SCHEMA_VERSION = 2  # 2: each version names the job that made it
CHANNEL = "softserve_models"  # NOTIFY'd with a model's name when its active version changes
_SCHEMA = """
CREATE TABLE IF NOT EXISTS softserve_model_versions (
    name TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL, sha256 TEXT NOT NULL,
    npz BYTEA NOT NULL, test_accuracy DOUBLE PRECISION, metrics JSONB NOT NULL,
    created_at TEXT NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
ALTER TABLE softserve_model_versions ADD COLUMN IF NOT EXISTS job_id TEXT;
CREATE TABLE IF NOT EXISTS softserve_models (
    name TEXT PRIMARY KEY, active_version TEXT NOT NULL, changes BIGINT NOT NULL DEFAULT 1,
    FOREIGN KEY (name, active_version) REFERENCES softserve_model_versions (name, version)
);
"""


def to_bytes(artifact: Artifact) -> bytes:
    """The artifact as its `.npz` file's bytes (validated, as `artifacts.save` writes it)."""
    with tempfile.TemporaryDirectory(prefix="softserve-") as folder:
        return artifacts.save(artifact, Path(folder) / "artifact.npz").read_bytes()


def from_bytes(data: bytes, name: str, version: str) -> Artifact:
    """The `.npz` bytes read back through `artifacts.load`, every check included."""
    where = f"{name} {version} in the database"  # not the temp file: no server paths
    with tempfile.TemporaryDirectory(prefix="softserve-") as folder:
        path = Path(folder) / f"{name}-{version}.npz"
        path.write_bytes(data)
        try:
            artifact = artifacts.load(path)
        except ArtifactError as e:
            raise ArtifactError(where, e.problem) from None
    if artifact.version != version:
        raise ArtifactError(where, f"holds version {artifact.version}")
    return artifact


class PostgresModelStore(Tables):
    """Models in the database at ``url`` (a `ModelStore`)."""

    component, schema, schema_version = "models", _SCHEMA, SCHEMA_VERSION

    def names(self) -> list[str]:
        with self._tx() as conn:
            rows = conn.execute("SELECT name FROM softserve_models ORDER BY name").fetchall()
        return [row["name"] for row in rows]

    def active_stamp(self, name: str) -> Hashable | None:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT active_version, changes FROM softserve_models WHERE name = %s", (name,)
            ).fetchone()
        return None if row is None else (row["active_version"], row["changes"])

    def load_active(self, name: str) -> Artifact:
        check_name(name)
        with self._tx() as conn:
            row = _active_row(conn, name)
        if row is None:
            raise StoreError(self.absent(name))
        return from_bytes(bytes(row["npz"]), name, row["version"])

    def versions(self, name: str) -> list[str]:
        check_name(name)
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT version FROM softserve_model_versions WHERE name = %s ORDER BY version",
                (name,),
            ).fetchall()
        return [row["version"] for row in rows]

    def load_version(self, name: str, version: str) -> Artifact:
        check_name(name)
        check_version(version)
        with self._tx() as conn:
            row = conn.execute(
                "SELECT npz FROM softserve_model_versions WHERE name = %s AND version = %s",
                (name, version),
            ).fetchone()
        if row is None:
            raise StoreError(f"model {name!r} has no version {version!r}")
        return from_bytes(bytes(row["npz"]), name, version)

    def promote(self, name: str, artifact: Artifact, *, force: bool = False) -> Promotion:
        """Keep ``artifact`` and make it active as `decide_promotion` says, in one
        transaction that ends with a NOTIFY when the active version moved."""
        check_name(name)
        data = to_bytes(artifact)
        with self._tx() as conn:
            return promote_in(conn, name, artifact, data, force=force)

    def activate(self, name: str, version: str) -> Artifact:
        artifact = self.load_version(name, version)  # validated before it is pointed at
        with self._tx() as conn:
            _lock(conn, name)
            _point(conn, name, version)
        return artifact

    def seed_from(self, source: Path) -> list[str]:
        """Put in each model of the folder ``source`` that the database has never had (no
        versions at all), under the seeding lock; a bad file is skipped and named in the
        StoreError raised after the good ones are in."""
        seeded: list[str] = []
        problems: list[str] = []
        files = sorted(p for p in source.glob("*.npz") if NAME_RE.fullmatch(p.stem))
        with self._tx(MIGRATION_LOCK) as conn:
            for path in files:
                name = path.stem
                known = conn.execute(
                    "SELECT 1 FROM softserve_model_versions WHERE name = %s LIMIT 1", (name,)
                ).fetchone()
                if known is not None:
                    continue
                try:
                    artifact = artifacts.load(path)
                except (ArtifactError, OSError) as e:
                    problems.append(f"{path.name}: {e}")
                    continue
                _insert(conn, name, artifact, path.read_bytes())
                _point(conn, name, artifact.version)
                seeded.append(name)
        if problems:
            raise StoreError("; ".join(problems))
        return seeded

    def tidy(self) -> list[str]:
        return []  # every write is one transaction: nothing is ever left half-done

    def absent(self, name: str) -> str:
        return f"the database has no model {name!r}"

    def label(self, name: str) -> str:
        return f"{name} (database)"

    def problem(self) -> str | None:
        if self.names():
            return None
        return (
            f"the database {self.location} holds no models: set SOFTSERVE_SEED_DIR to a folder "
            "of <name>.npz artifacts to put some in on the first start"
        )


def promote_in(
    conn: Connection, name: str, artifact: Artifact, data: bytes, *, force: bool,
    job_id: str | None = None,
) -> Promotion:  # fmt: skip
    """`PostgresModelStore.promote` within the transaction of ``conn`` (a job store's, which
    ends job ``job_id`` in the same transaction; the version records it); ``data`` is
    ``artifact``'s file (`to_bytes`)."""
    check_name(name)
    _lock(conn, name)
    promotion = decide_promotion(_active_in(conn, name), artifact, force=force)
    _insert(conn, name, artifact, data, job_id)
    if promotion.promoted:
        _point(conn, name, artifact.version)
    return promotion


def _lock(conn: Connection, name: str) -> None:
    """Hold ``name``'s advisory lock until the transaction ends: its promotions and activations
    take turns."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"model:{name}",))


def _active_row(conn: Connection, name: str) -> dict[str, Any] | None:
    """The version and bytes of ``name``'s active version, or None."""
    return conn.execute(
        "SELECT v.version, v.npz FROM softserve_models m JOIN softserve_model_versions v"
        " ON v.name = m.name AND v.version = m.active_version WHERE m.name = %s",
        (name,),
    ).fetchone()


def _active_in(conn: Connection, name: str) -> Artifact | None:
    """The active version as the promotion rule sees it: one that no longer validates is no
    bar to a new one."""
    row = _active_row(conn, name)
    if row is None:
        return None
    try:
        return from_bytes(bytes(row["npz"]), name, row["version"])
    except ArtifactError:
        return None


def _insert(
    conn: Connection, name: str, artifact: Artifact, data: bytes, job_id: str | None = None
) -> None:
    """Store a version once, with the job that made it (if any): the same version again
    changes nothing (versions are immutable)."""
    conn.execute(
        "INSERT INTO softserve_model_versions (name, version, kind, sha256, npz, test_accuracy,"
        " metrics, created_at, job_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (name, version) DO NOTHING",
        (name, artifact.version, artifact.kind, hashlib.sha256(data).hexdigest(), data,
         artifact.test_accuracy, Jsonb(artifact.meta.get("metrics", {})), artifact.created_at,
         job_id),
    )  # fmt: skip


def _point(conn: Connection, name: str, version: str) -> None:
    """Move the model's active pointer and tell every listener, when the transaction commits."""
    conn.execute(
        "INSERT INTO softserve_models (name, active_version) VALUES (%s, %s)"
        " ON CONFLICT (name) DO UPDATE SET active_version = EXCLUDED.active_version,"
        " changes = softserve_models.changes + 1",
        (name, version),
    )
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, name))
