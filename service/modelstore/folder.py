"""The model folder: the embedded model store, a folder of `.npz` files.

Layout (every write atomic, through `trainer.artifacts.save`)::

    models/softmax.npz                 the active version of model 'softmax' (what is served)
    models/softmax/<version>.npz       every version kept: trained ones, and every version that
                                       was ever active, kept before anything replaces it
    models/.lock                       flock serialising promotions and activations

The active file is a plain artifact, so anyone with NumPy can use ``models/softmax.npz`` as is,
and a file copied in by hand is served (and kept) like any other. Names and versions are checked
against strict patterns and only ever used as single path parts, so no request can reach
outside the folder.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.modelstore import (
    NAME_RE,
    Promotion,
    StoreError,
    check_name,
    check_version,
    decide_promotion,
)
from trainer import artifacts
from trainer.artifacts import VERSION_RE, Artifact, ArtifactError

__all__ = ["STALE_TMP_SECONDS", "FolderModelStore"]

log = logging.getLogger("softserve.models")

STALE_TMP_SECONDS = 600.0  # a save in progress finishes long before this


class FolderModelStore:
    """A `ModelStore` on one folder. Safe across processes: writers take the folder lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

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
            p.stem for p in self.root.glob("*.npz") if NAME_RE.fullmatch(p.stem) and p.is_file()
        )

    def active_stamp(self, name: str) -> tuple[int, int, int] | None:
        """(mtime_ns, size, inode) of the active file: changes whenever os.replace swaps it."""
        try:
            st = self.active_path(name).stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load_active(self, name: str) -> Artifact:
        artifact = artifacts.load(self.active_path(name))
        self._keep(name, artifact)
        return artifact

    def versions(self, name: str) -> list[str]:
        """Versions kept in the model's folder, oldest first (version ids sort by time)."""
        folder = self.versions_dir(name)
        if not folder.is_dir():
            return []
        return sorted(
            p.stem for p in folder.glob("*.npz") if VERSION_RE.fullmatch(p.stem) and p.is_file()
        )

    def load_version(self, name: str, version: str) -> Artifact:
        path = self.version_path(name, version)
        if not path.is_file():
            raise StoreError(f"model {name!r} has no version {version!r}")
        artifact = artifacts.load(path)
        if artifact.version != version:
            raise ArtifactError(path.name, f"holds version {artifact.version!r}, not {version!r}")
        return artifact

    def add_version(self, name: str, artifact: Artifact) -> Path:
        """Keep ``artifact`` as a version of ``name`` (not served until promoted)."""
        return artifacts.save(artifact, self.version_path(name, artifact.version))

    def promote(self, name: str, artifact: Artifact, *, force: bool = False) -> Promotion:
        """Keep the new version, and make it active unless `decide_promotion` says no.

        The comparison and the swap happen under the folder lock, against the active file as it
        is on disk then, so two jobs finishing together cannot both win on stale numbers.
        """
        existed = self.version_path(name, artifact.version).exists()
        kept = self.add_version(name, artifact)
        try:
            with self._locked():
                current = self._load_active(name)
                promotion = decide_promotion(current, artifact, force=force)
                if promotion.promoted:
                    self._replace_active(name, artifact, current)
                return promotion
        except OSError:  # e.g. a full disk: a failed job leaves no version behind
            if not existed:
                kept.unlink(missing_ok=True)
            raise

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

    def tidy(self) -> list[str]:
        """Delete temp files a killed save left behind (older than any save takes)."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        cutoff = time.time() - STALE_TMP_SECONDS
        for pattern in (".*.npz.*.tmp", "*/.*.npz.*.tmp"):
            for path in self.root.glob(pattern):
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed.append(str(path))
                except FileNotFoundError:
                    continue
        return removed

    def absent(self, name: str) -> str:
        return f"no {name}.npz in {self.root}"

    def label(self, name: str) -> str:
        return f"{name}.npz"

    def problem(self) -> str | None:
        where = self.root.resolve()
        fix = (
            "start from the folder that holds models/ (the repository root), or set "
            "SOFTSERVE_MODEL_DIR to a folder of <name>.npz artifacts (SOFTSERVE_SEED_DIR copies "
            "some in on the first start)"
        )
        if not self.root.is_dir():
            return f"the model folder {where} does not exist: {fix}"
        if not self.names():
            return f"the model folder {where} holds no <name>.npz artifacts: {fix}"
        return None

    def _unseeded(self, source: Path) -> list[Path]:
        """The model files of ``source`` whose model this folder has never had."""
        return [
            path
            for path in sorted(source.glob("*.npz"))
            if NAME_RE.fullmatch(path.stem)
            and path.is_file()
            and not self.active_path(path.stem).exists()
            and not self.versions_dir(path.stem).exists()
        ]

    def _keep(self, name: str, artifact: Artifact) -> None:
        """Keep a copy of an active version among the versions, so that whatever replaces the
        active file (a promotion, an activation, a copy by hand) can be rolled back."""
        try:
            if not self.version_path(name, artifact.version).exists():
                self.add_version(name, artifact)
        except (StoreError, ArtifactError, OSError) as e:  # a read-only folder, say
            log.warning("model %s: version %s not kept: %s", name, artifact.version, e)

    def _load_active(self, name: str) -> Artifact | None:
        try:
            return artifacts.load(self.active_path(name))
        except (ArtifactError, FileNotFoundError):
            return None

    def _replace_active(self, name: str, artifact: Artifact, current: Artifact | None) -> None:
        if current is not None and not self.version_path(name, current.version).exists():
            self.add_version(name, current)  # keep it, so a rollback can bring it back
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
