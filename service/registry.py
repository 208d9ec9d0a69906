"""The models being served: loaded from the model store, re-read when their active version changes.

Every uvicorn worker holds its own registry and polls the store (as TF Serving polls its model
base path), so a version promoted by any worker, or copied in by hand, reaches all of them. A swap
replaces one dict entry: a prediction that already took the old model finishes with it.
A version that fails validation is never served; the last good one stays, and the problem is
reported by /health/ready and /models. Kept versions asked for by name (``?version=``) are loaded
on demand and held in a small cache: versions never change once written.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.errors import InvalidInput, NotFound, ServiceUnavailable
from service.modelstore import ModelStore, StoreError, check_name, check_version
from service.trust import Detector, detector_for
from trainer.artifacts import Artifact, ArtifactError
from trainer.contract import Kind
from trainer.timestamps import utc_now_iso

__all__ = ["KEPT_CACHE_SIZE", "Registry", "Served", "problem_of"]

log = logging.getLogger("softserve.registry")

KEPT_CACHE_SIZE = 8  # kept versions held in memory per worker, besides the active ones


@dataclass(frozen=True, eq=False, slots=True)
class Served:
    """One loaded model version, with what the prediction path needs ready to hand."""

    name: str
    artifact: Artifact
    stamp: Hashable | None  # the store's active_stamp it was loaded at; None: a kept version
    loaded_at: str
    kind: Kind
    version: str
    weights: NDArray[np.float32]
    bias: NDArray[np.float32]
    class_names: tuple[str, ...]
    detector: Detector | None  # None: no out-of-distribution flagging, for ``no_detector``
    no_detector: str | None

    @classmethod
    def now(cls, name: str, artifact: Artifact, stamp: Hashable | None = None) -> Served:
        """``artifact`` served as ``name`` from now on."""
        a = artifact
        detector, why = detector_for(a.meta, a.weights)
        return cls(name, a, stamp, utc_now_iso(), a.kind, a.version, a.weights, a.bias,
                   a.class_names, detector, why)  # fmt: skip


class Registry:
    """Loaded models by name, plus the latest problem with each model's active version."""

    def __init__(self, store: ModelStore, required: tuple[str, ...]) -> None:
        self.store = store
        self.required = required
        self.models: dict[str, Served] = {}
        self.problems: dict[str, str] = {}
        self._bad: dict[str, Hashable] = {}  # a rejected version is not re-read until it changes
        self._kept: OrderedDict[tuple[str, str], Served] = OrderedDict()
        self._lock = threading.Lock()  # the watcher and a finished job may refresh at once
        self._kept_lock = threading.Lock()  # held for a dict operation only: never for I/O

    def get(self, name: str) -> Served:
        """The active version of a served model; 503 saying why for a required model that is
        not loaded, else NotFound naming the loaded ones."""
        served = self.models.get(name)
        if served is None:
            try:
                check_name(name)
            except StoreError as e:
                raise NotFound(str(e), code="unknown_model") from None
            if name in self.required:
                raise ServiceUnavailable(
                    f"model {name!r} is not loaded: {self.why_missing(name)}",
                    code="model_not_loaded",
                )
            known = ", ".join(sorted(self.models)) or "none"
            problem = self.problems.get(name)
            raise NotFound(
                f"unknown model {name!r}"
                + (f" ({problem})" if problem else f"; loaded models: {known}"),
                code="unknown_model",
            )
        return served

    def in_memory(self, name: str, version: str) -> Served | None:
        """``version`` of the served model ``name`` if this worker holds it (no I/O): the active
        one, or a kept one loaded before. NotFound for an unknown model."""
        served = self.get(name)
        if served.version == version:
            return served
        with self._kept_lock:
            kept = self._kept.get((name, version))
            if kept is not None:
                self._kept.move_to_end((name, version))
        return kept

    def load_version(self, name: str, version: str) -> Served:
        """``version`` of the served model ``name``, loaded from the store if need be (blocking
        I/O: call it off the event loop). 422 for a malformed version or one that fails
        validation, 404 for one not kept."""
        held = self.in_memory(name, version)
        if held is not None:
            return held
        with _kept_version(version):
            served = Served.now(name, self.store.load_version(name, version))
        with self._kept_lock:
            self._kept[(name, version)] = served
            while len(self._kept) > KEPT_CACHE_SIZE:
                self._kept.popitem(last=False)
        return served

    def activate(self, name: str, version: str) -> Served:
        """Make a kept version of the served model ``name`` its active one, in the store (so
        for every worker), and serve it here at once (blocking I/O). Errors as load_version."""
        self.get(name)
        with _kept_version(version):
            self.store.activate(name, version)
        self.catch_up(name, version)
        return self.get(name)

    def refresh(self) -> list[str]:
        """Load what changed in the store (blocking I/O: call it off the event loop).

        Returns the names whose served version changed.
        """
        with self._lock:
            return self._refresh()

    def catch_up(self, name: str, version: str) -> None:
        """Serve ``version`` of ``name`` now if this worker still serves another one (blocking):
        whoever is told a job promoted it can use it at once, not at the next look at the
        store. Nothing is read when the version is already served."""
        served = self.models.get(name)
        if served is None or served.version != version:
            self.refresh()

    def _refresh(self) -> list[str]:
        changed: list[str] = []
        names = set(self.store.names())
        models = dict(self.models)
        for name in sorted(names):
            stamp = self.store.active_stamp(name)
            if stamp is None:
                continue
            current = models.get(name)
            if (current is not None and current.stamp == stamp) or self._bad.get(name) == stamp:
                continue
            try:
                artifact = self.store.load_active(name)
            except (ArtifactError, StoreError, OSError) as e:
                self._bad[name] = stamp
                kept = f"; still serving version {current.version}" if current else ""
                why = problem_of(e)
                label = self.store.label(name)
                self.problems[name] = f"{label} was rejected: {why}{kept}"  # no server paths
                log.error("model %s: %s rejected, not served%s: %s", name, label, kept, e)
                continue
            self._bad.pop(name, None)
            self.problems.pop(name, None)
            if current is None or current.version != artifact.version:
                changed.append(name)
                log.info(
                    "model %s: serving version %s (pid %d)", name, artifact.version, os.getpid()
                )
            models[name] = Served.now(name, artifact, stamp)
        for name in set(models) - names:
            del models[name]
            changed.append(name)
            self.problems[name] = f"{self.store.label(name)} was removed from the model store"
            log.warning("model %s: its active version was removed, no longer served", name)
        self.models = models  # one assignment: readers see the old dict or the new one
        return changed

    def why_missing(self, name: str) -> str:
        """Why ``name`` is not served: its last problem, or what the store lacks."""
        return self.problems.get(name) or self.store.absent(name)

    def not_ready(self) -> dict[str, str]:
        """Each required model that is not served, and why (empty: ready)."""
        return {name: self.why_missing(name) for name in self.required if name not in self.models}

    def not_loaded(self) -> dict[str, str]:
        """Each model that is not served though it is required or was seen, and why."""
        seen = {name: problem for name, problem in self.problems.items() if name not in self.models}
        return seen | self.not_ready()

    def dataset_class_names(self) -> tuple[str, ...] | None:
        """The classes of the data the served models were trained on, when they agree; None
        when no model is served or they were trained on different data."""
        found = {served.artifact.dataset_class_names for served in self.models.values()}
        return found.pop() if len(found) == 1 else None


@contextmanager
def _kept_version(version: str) -> Iterator[None]:
    """Checks ``version`` now (422 invalid_version), and turns the store's errors about it in
    the block into the service's: 404 unknown_version, 422 invalid_artifact."""
    try:
        check_version(version)
    except StoreError as e:
        raise InvalidInput(str(e), code="invalid_version") from None
    try:
        yield
    except StoreError as e:
        raise NotFound(str(e), code="unknown_version") from None
    except ArtifactError as e:
        raise InvalidInput(
            f"version {version!r} cannot be served: {e.problem}", code="invalid_artifact"
        ) from None


def problem_of(error: ArtifactError | StoreError | OSError) -> str:
    """What is wrong with a version, in words a client may see: no server paths."""
    if isinstance(error, ArtifactError):
        return error.problem
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return str(error)
