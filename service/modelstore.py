"""The model folder on disk: which file is active, which versions are kept, how one is promoted.

Layout (every write atomic, through `trainer.artifacts.save`)::

    models/softmax.npz                 the active version of model 'softmax' (what is served)
    models/softmax/<version>.npz       every version kept: trained ones, and an active one
                                       archived before anything replaces it
    models/.lock                       flock serialising promotions and activations

The active file is a plain artifact, so anyone with NumPy can use ``models/softmax.npz`` as is.
Names and versions are checked against strict patterns and only ever used as single path parts,
so no request can reach outside the folder.
"""

from __future__ import annotations

import fcntl
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trainer import artifacts
from trainer.artifacts import Artifact, ArtifactError

__all__ = [
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "ModelStore",
    "Promotion",
    "StoreError",
    "check_name",
    "check_version",
    "test_accuracy",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,79}$"
_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)
STALE_TMP_SECONDS = 600.0  # a save in progress finishes long before this


class StoreError(Exception):
    """A name or version that is malformed or absent; the message says which."""


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise StoreError(
            f"invalid model name {name[:80]!r}: use 1-64 lowercase letters, digits, '-' or '_'"
        )
    return name


def check_version(version: str) -> str:
    if not _VERSION.fullmatch(version) or ".." in version:
        raise StoreError(
            f"invalid version {version[:80]!r}: use 1-80 letters, digits, '.', '-' or '_'"
        )
    return version


def test_accuracy(artifact: Artifact) -> float | None:
    """The artifact's recorded test accuracy, or None when it has none."""
    value = artifact.meta.get("metrics", {}).get("test", {}).get("accuracy")
    return float(value) if isinstance(value, int | float) else None


test_accuracy.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


@dataclass(frozen=True)
class Promotion:
    """What `ModelStore.promote` did with a new version, in words a job status can carry."""

    version: str
    promoted: bool
    reason: str


class ModelStore:
    """File operations on one model folder. Safe across processes: writers take the folder lock."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def active_path(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.npz"

    def versions_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def version_path(self, name: str, version: str) -> Path:
        return self.versions_dir(name) / f"{check_version(version)}.npz"

    def names(self) -> list[str]:
        """Models with an active file, sorted; files with names outside the pattern are ignored."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.stem for p in self.root.glob("*.npz") if _NAME.fullmatch(p.stem) and p.is_file()
        )

    def archived_versions(self, name: str) -> list[str]:
        """Versions kept in the model's folder, oldest first (version ids sort by time)."""
        folder = self.versions_dir(name)
        if not folder.is_dir():
            return []
        return sorted(
            p.stem
            for p in folder.glob("*.npz")
            if _VERSION.fullmatch(p.stem) and ".." not in p.stem and p.is_file()
        )

    def load_version(self, name: str, version: str) -> Artifact:
        path = self.version_path(name, version)
        if not path.is_file():
            raise StoreError(f"model {name!r} has no version {version!r}")
        artifact = artifacts.load(path)
        if artifact.version != version:
            raise ArtifactError(str(path), f"holds version {artifact.version!r}, not {version!r}")
        return artifact

    def add_version(self, name: str, artifact: Artifact) -> Path:
        """Keep ``artifact`` as a version of ``name`` (not served until promoted)."""
        return artifacts.save(artifact, self.version_path(name, artifact.version))

    def promote(self, name: str, artifact: Artifact, *, force: bool = False) -> Promotion:
        """Keep the new version, and make it active unless its test accuracy is worse.

        The comparison and the swap happen under the folder lock, against the active file as it
        is on disk then, so two jobs finishing together cannot both win on stale numbers.
        """
        existed = self.version_path(name, artifact.version).exists()
        kept = self.add_version(name, artifact)
        try:
            return self._promote(name, artifact, force)
        except OSError:  # e.g. a full disk: a failed job leaves no version behind
            if not existed:
                kept.unlink(missing_ok=True)
            raise

    def _promote(self, name: str, artifact: Artifact, force: bool) -> Promotion:
        new_acc = test_accuracy(artifact)
        with self._locked():
            current = self._load_active(name)
            if current is not None and current.kind != artifact.kind and not force:
                return Promotion(
                    artifact.version,
                    False,
                    f"kept as a version only: the active model is {current.kind!r}, "
                    f"this one {artifact.kind!r} (use force to replace it)",
                )
            cur_acc = None if current is None else test_accuracy(current)
            if force:
                reason = "promoted: force was set"
            elif current is None:
                reason = "promoted: no valid active version"
            elif cur_acc is None:
                reason = "promoted: the active version records no test accuracy"
            elif new_acc is None:
                return Promotion(artifact.version, False, "kept: it records no test accuracy")
            elif new_acc < cur_acc:
                return Promotion(
                    artifact.version,
                    False,
                    f"not promoted: test accuracy {new_acc:.4f} is below the active version "
                    f"{current.version}'s {cur_acc:.4f} (set force to promote anyway)",
                )
            else:
                reason = (
                    f"promoted: test accuracy {new_acc:.4f} is not below the active "
                    f"version {current.version}'s {cur_acc:.4f}"
                )
            self._replace_active(name, artifact, current)
            return Promotion(artifact.version, True, reason)

    def activate(self, name: str, version: str) -> Artifact:
        """Make a kept version the active one (roll back or forward)."""
        artifact = self.load_version(name, version)
        with self._locked():
            self._replace_active(name, artifact, self._load_active(name))
        return artifact

    def seed_from(self, source: Path) -> list[str]:
        """Copy each model of ``source`` that this folder has never had (no active file, no
        kept versions): how a container's empty model volume gets the shipped models on its
        first start, while a volume that already holds trained versions is left as it is.

        Each file is loaded (so checked) and saved atomically; a bad one is skipped with its
        reason in the ``StoreError`` raised after the good ones are in.
        """
        seeded: list[str] = []
        problems: list[str] = []
        if not self._unseeded(source):
            return seeded  # touch nothing: the folder may be read-only
        with self._locked():
            for path in self._unseeded(source):
                name = path.stem
                try:
                    artifacts.save(artifacts.load(path), self.active_path(name))
                except ArtifactError as exc:
                    problems.append(str(exc))
                    continue
                seeded.append(name)
        if problems:
            raise StoreError("; ".join(problems))
        return seeded

    def _unseeded(self, source: Path) -> list[Path]:
        """The model files of ``source`` whose model this folder has never had."""
        return [
            path
            for path in sorted(source.glob("*.npz"))
            if _NAME.fullmatch(path.stem)
            and path.is_file()
            and not self.active_path(path.stem).exists()
            and not self.versions_dir(path.stem).exists()
        ]

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temp files a killed save left behind (older than any save takes)."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        cutoff = time.time() - STALE_TMP_SECONDS
        for pattern in (".*.npz.*.tmp", "*/.*.npz.*.tmp"):
            for path in self.root.glob(pattern):
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed.append(path)
                except FileNotFoundError:
                    continue
        return removed

    def _load_active(self, name: str) -> Artifact | None:
        try:
            return artifacts.load(self.active_path(name))
        except (ArtifactError, FileNotFoundError):
            return None

    def _replace_active(self, name: str, artifact: Artifact, current: Artifact | None) -> None:
        if current is not None and not self.version_path(name, current.version).exists():
            self.add_version(name, current)  # archive it, so a rollback can bring it back
        artifacts.save(artifact, self.active_path(name))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
