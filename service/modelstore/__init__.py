"""Where model versions live: what every model store does (`ModelStore`), and the rules they
share: names, versions, promotion.

A store keeps each model's versions, immutable once written, and knows which one is active.
The registry reads only through this interface, and a training child promotes through it, so a
second store (a database) plugs in beside the model folder (`service.modelstore.folder`) without
either changing. `open_model_store` opens a store from its `location`, as a training child does.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from trainer.artifacts import VERSION_RE, Artifact

__all__ = [
    "NAME_PATTERN",
    "NAME_RE",
    "ModelStore",
    "Promotion",
    "StoreError",
    "check_name",
    "check_version",
    "decide_promotion",
    "open_model_store",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
NAME_RE = re.compile(NAME_PATTERN)


class StoreError(Exception):
    """A name or version that is malformed or absent; the message says which."""


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise StoreError(
            f"invalid model name {name[:80]!r}: use 1-64 lowercase letters, digits, '-' or '_'"
        )
    return name


def check_version(version: str) -> str:
    if not VERSION_RE.fullmatch(version):
        raise StoreError(
            f"invalid version {version[:80]!r}: versions look like 20261122T045742Z-1f3a1006"
        )
    return version


@dataclass(frozen=True)
class Promotion:
    """What a store's ``promote`` did with a new version, in words a job status can carry."""

    version: str
    promoted: bool
    reason: str


def decide_promotion(current: Artifact | None, new: Artifact, *, force: bool) -> Promotion:
    """Whether ``new`` replaces the active version ``current``: unless ``force``, only when it
    answers the same question (same kind, same classes) and its test accuracy is not below the
    active one's. Accuracies of different tasks say nothing about which is better."""
    version = new.version
    if current is not None and not force:
        if current.kind != new.kind:
            return Promotion(
                version,
                False,
                f"kept as a version only: the active model is {current.kind!r}, "
                f"this one {new.kind!r} (use force to replace it)",
            )
        if current.class_names != new.class_names:
            return Promotion(
                version,
                False,
                f"kept as a version only: the active model answers {list(current.class_names)}, "
                f"this one {list(new.class_names)} (use force to replace it)",
            )
    new_acc = new.test_accuracy
    cur_acc = None if current is None else current.test_accuracy
    if force:
        return Promotion(version, True, "promoted: force was set")
    if current is None:
        return Promotion(version, True, "promoted: no valid active version")
    if cur_acc is None:
        return Promotion(version, True, "promoted: the active version records no test accuracy")
    if new_acc is None:
        return Promotion(version, False, "kept: it records no test accuracy")
    if new_acc < cur_acc:
        return Promotion(
            version,
            False,
            f"not promoted: test accuracy {new_acc:.4f} is below the active version "
            f"{current.version}'s {cur_acc:.4f} (set force to promote anyway)",
        )
    return Promotion(
        version,
        True,
        f"promoted: test accuracy {new_acc:.4f} is not below the active "
        f"version {current.version}'s {cur_acc:.4f}",
    )


class ModelStore(Protocol):
    """Models by name: their kept versions and which one is active. Safe across processes.

    Reads raise StoreError for a malformed or absent name or version, ArtifactError for a
    version that fails validation, OSError when the storage itself fails.
    """

    # What open_model_store takes to open this store again in another process; never a secret.
    location: str

    def names(self) -> list[str]:
        """Models with an active version, sorted."""
        ...

    def active_stamp(self, name: str) -> Hashable | None:
        """A token that changes whenever ``name``'s active version is replaced (None: it has
        none), so a reader loads only what changed."""
        ...

    def load_active(self, name: str) -> Artifact:
        """The active version, validated; it is also kept among the versions from then on."""
        ...

    def versions(self, name: str) -> list[str]:
        """Kept versions, oldest first."""
        ...

    def load_version(self, name: str, version: str) -> Artifact:
        """One kept version, validated."""
        ...

    def promote(self, name: str, artifact: Artifact, *, force: bool = False) -> Promotion:
        """Keep a new version, and make it active as `decide_promotion` says, atomically."""
        ...

    def activate(self, name: str, version: str) -> Artifact:
        """Make a kept version the active one (roll back or forward)."""
        ...

    def seed_from(self, source: Path) -> list[str]:
        """Copy in the models of the folder ``source`` that this store has never had; returns
        their names."""
        ...

    def tidy(self) -> list[str]:
        """Remove what interrupted writes left behind; returns what was removed, for the log."""
        ...

    def absent(self, name: str) -> str:
        """Why ``name`` has no active version, in words for a person (no secrets)."""
        ...

    def label(self, name: str) -> str:
        """How messages name ``name``'s active version (no server paths)."""
        ...

    def problem(self) -> str | None:
        """What stops the store from serving anything (no models at all, say), or None."""
        ...


def open_model_store(location: str) -> ModelStore:
    """The store at ``location`` (a `ModelStore.location`), opened again, e.g. in a child. A
    PostgreSQL location has no password: the URL comes from SOFTSERVE_DATABASE_URL in the
    environment when it names the same database."""
    if location.startswith(("postgresql://", "postgres://")):
        from service.modelstore.postgres import PostgresModelStore
        from service.pg import env_url

        return PostgresModelStore(env_url(location))
    from service.modelstore.folder import FolderModelStore

    return FolderModelStore(Path(location))
