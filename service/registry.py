"""The models being served: loaded from the model folder, re-read when their files change.

Every uvicorn worker holds its own registry and polls the folder (as TF Serving polls its model
base path), so a version promoted by any worker, or copied in by hand, reaches all of them. A swap
replaces one dict entry: a prediction that already took the old model finishes with it.
A file that fails validation is never served; the last good version stays, and the problem is
reported by /health/ready and /models.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.errors import NotFound
from service.modelstore import ModelStore, StoreError, check_name
from trainer import artifacts
from trainer.artifacts import Artifact, ArtifactError
from trainer.linear import Kind
from trainer.timestamps import utc_now_iso

__all__ = ["Registry", "Served"]

log = logging.getLogger("softserve.registry")

_Stamp = tuple[int, int, int]  # (mtime_ns, size, inode): changes whenever os.replace swaps a file


@dataclass(frozen=True, eq=False)
class Served:
    """One loaded model, with what the prediction path needs ready to hand."""

    name: str
    artifact: Artifact
    loaded_at: str
    stamp: _Stamp
    kind: Kind = field(init=False)
    version: str = field(init=False)
    weights: NDArray[np.float32] = field(init=False)
    bias: NDArray[np.float32] = field(init=False)
    class_names: tuple[str, ...] = field(init=False)
    summary: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        a = self.artifact
        for key, value in (
            ("kind", a.kind),
            ("version", a.version),
            ("weights", a.weights),
            ("bias", a.bias),
            ("class_names", a.class_names),
            ("summary", artifacts.describe(a)),
        ):
            object.__setattr__(self, key, value)


class Registry:
    """Loaded models by name, plus the latest problem with each model's file."""

    def __init__(self, store: ModelStore, required: tuple[str, ...]) -> None:
        self.store = store
        self.required = required
        self.models: dict[str, Served] = {}
        self.problems: dict[str, str] = {}
        self._bad: dict[str, _Stamp] = {}  # a rejected file is not re-read until it changes
        self._lock = threading.Lock()  # the watcher and a finished job may refresh at once

    def get(self, name: str) -> Served:
        served = self.models.get(name)
        if served is None:
            try:
                check_name(name)
            except StoreError as e:
                raise NotFound(str(e), code="unknown_model") from None
            known = ", ".join(sorted(self.models)) or "none"
            problem = self.problems.get(name)
            raise NotFound(
                f"unknown model {name!r}"
                + (f" ({problem})" if problem else f"; loaded models: {known}"),
                code="unknown_model",
            )
        return served

    def refresh(self) -> list[str]:
        """Load what changed on disk (blocking file I/O: call it off the event loop).

        Returns the names whose served version changed.
        """
        with self._lock:
            return self._refresh()

    def _refresh(self) -> list[str]:
        changed: list[str] = []
        names = set(self.store.names())
        models = dict(self.models)
        for name in sorted(names):
            path = self.store.active_path(name)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            current = models.get(name)
            if (current is not None and current.stamp == stamp) or self._bad.get(name) == stamp:
                continue
            try:
                artifact = artifacts.load(path)
            except (ArtifactError, OSError) as e:
                self._bad[name] = stamp
                kept = f"; still serving version {current.version}" if current else ""
                why = e.problem if isinstance(e, ArtifactError) else (e.strerror or str(e))
                self.problems[name] = f"{path.name} was rejected: {why}{kept}"  # no server paths
                log.error("model %s: %s rejected, not served%s: %s", name, path, kept, e)
                continue
            self._bad.pop(name, None)
            self.problems.pop(name, None)
            if current is None or current.version != artifact.version:
                changed.append(name)
                log.info(
                    "model %s: serving version %s (pid %d)", name, artifact.version, os.getpid()
                )
            models[name] = Served(name, artifact, utc_now_iso(), stamp)
            self._keep(name, artifact)
        for name in set(models) - names:
            del models[name]
            changed.append(name)
            self.problems[name] = f"{name}.npz was removed from the model folder"
            log.warning("model %s: file removed, no longer served", name)
        self.models = models  # one assignment: readers see the old dict or the new one
        return changed

    def _keep(self, name: str, artifact: Artifact) -> None:
        """Keep a copy of every version served among the versions, so that whatever replaces the
        active file (a promotion, an activation, a bad copy) can be rolled back."""
        try:
            if not self.store.version_path(name, artifact.version).exists():
                self.store.add_version(name, artifact)
        except (StoreError, ArtifactError, OSError) as e:  # a read-only folder, an odd version id
            log.warning("model %s: version %s not kept: %s", name, artifact.version, e)

    def not_ready(self) -> list[str]:
        """Why the service is not ready (empty when every required model is served)."""
        reasons = []
        for name in self.required:
            if name not in self.models:
                problem = self.problems.get(name) or f"no {name}.npz in {self.store.root}"
                reasons.append(f"model {name!r} is not loaded: {problem}")
        return reasons

    @property
    def root(self) -> Path:
        return self.store.root
