"""What a valid artifact is: constants, versions, validate. Import them from trainer.artifacts.

Kept apart from the file handling in `trainer.artifacts` so each reads on its own; this module
knows nothing about files, only about arrays and the meta mapping.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from trainer.contract import IMAGE_SHAPE, N_FEATURES, PIXEL_SCALE
from trainer.errors import TrainerError

SCHEMA_VERSION = 1
FORMAT = "softserve.linear"

KINDS = ("softmax", "binary")
REQUIRED_META = (
    "schema_version", "format", "kind", "version", "created_at", "class_names", "input",
    "dataset", "training", "metrics", "history", "training_seconds",
)  # fmt: skip
_OBJECT_META = ("dataset", "training", "metrics")
_BINARY_LISTS = ("positive_classes", "negative_classes", "dataset_class_names")
# Versions end up in file names and URLs, so the pattern admits no '/', '.' or other surprises.
VERSION_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")


class ArtifactError(TrainerError):
    """Any problem with an artifact. ``str(err)`` is ``"<where>: <problem>"``."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem

    def __reduce__(self) -> tuple[type[ArtifactError], tuple[str, str]]:
        # Training runs in a child process; the error must survive pickling on its way back.
        return (type(self), (self.where, self.problem))


_version_lock = threading.Lock()
_last_version = ""


def new_version() -> str:
    """A unique, sortable, file-name-safe version: ``YYYYMMDDTHHMMSSZ-xxxxxxxx``.

    The suffix is 20 bits of microseconds then 12 random bits, so versions sort by creation time
    and two processes finishing in the same microsecond still differ; within a process they are
    strictly increasing even if the clock steps back.
    """
    global _last_version
    now = datetime.now(UTC)
    version = f"{now:%Y%m%dT%H%M%SZ}-{(now.microsecond << 12) | secrets.randbits(12):08x}"
    with _version_lock:
        if version <= _last_version:
            stamp, suffix = _last_version.split("-")
            version = f"{stamp}-{int(suffix, 16) + 1:08x}"
        _last_version = version
    return version


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 to the second, e.g. ``2026-11-22T03:15:00Z``."""
    return f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"


def input_contract() -> dict[str, Any]:
    """The ``meta["input"]`` block: how raw pixels (28x28 uint8) become the 784 features."""
    return {
        "features": N_FEATURES,
        "shape": list(IMAGE_SHAPE),
        "dtype": "uint8",
        "pixel_min": 0,
        "pixel_max": 255,
        "scale": PIXEL_SCALE,
        "formula": "logits = (pixels / 255) @ weights + bias",
    }


def validate(
    weights: NDArray[Any], bias: NDArray[Any], meta: Mapping[str, Any], *, where: str
) -> None:
    """Raise ArtifactError naming the first problem; return None if the artifact is consistent.

    weights must be float32 (784, K), bias float32 (K,), both finite; K >= 2 for kind "softmax"
    (one class name per column), K = 1 for kind "binary" (class names [negative, positive]).
    """

    def fail(problem: str) -> NoReturn:
        raise ArtifactError(where, problem)

    # The header first: a file from a newer softserve should say so, not fail on some detail.
    if "schema_version" not in meta:
        fail("meta has no schema_version")
    sv = meta["schema_version"]
    if not isinstance(sv, int) or isinstance(sv, bool):
        fail(f"schema_version must be an integer, got {sv!r}")
    if sv != SCHEMA_VERSION:
        fail(f"unknown schema_version {sv}: this softserve reads {SCHEMA_VERSION}")
    if meta.get("format") != FORMAT:
        fail(f"format must be {FORMAT!r}, got {meta.get('format')!r}")
    if missing := [key for key in REQUIRED_META if key not in meta]:
        fail(f"meta is missing keys: {', '.join(missing)}")

    for name, array in (("weights", weights), ("bias", bias)):
        if array.dtype != np.float32:
            fail(f"{name} must be float32, got {array.dtype}")
    if weights.ndim != 2 or weights.shape[0] != N_FEATURES or weights.shape[1] < 1:
        fail(f"weights must have shape ({N_FEATURES}, K), got {weights.shape}")
    k = weights.shape[1]
    if bias.shape != (k,):
        fail(f"bias must have shape ({k},), got {bias.shape}")
    if not np.isfinite(weights).all():
        fail("weights contain NaN or infinite values")
    if not np.isfinite(bias).all():
        fail("bias contains NaN or infinite values")

    kind, names = meta["kind"], meta["class_names"]
    if kind not in KINDS:
        fail(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        fail("class_names must be a list of non-empty strings")
    if len(set(names)) != len(names):
        fail(f"class_names must be distinct, got {names}")
    if kind == "softmax" and k < 2:
        fail(f"kind 'softmax' needs K >= 2 outputs, got K = {k}")
    if kind == "softmax" and len(names) != k:
        fail(f"class_names has {len(names)} names but weights have K = {k} outputs")
    if kind == "binary" and k != 1:
        fail(f"kind 'binary' needs K = 1 output, got K = {k}")
    if kind == "binary" and len(names) != 2:
        fail(f"binary class_names must be [negative, positive], got {len(names)} names")
    if kind == "binary":
        block = meta.get("binary")
        if not isinstance(block, dict) or not all(
            isinstance(block.get(key), list) for key in _BINARY_LISTS
        ):
            fail(f"kind 'binary' needs a 'binary' object with lists {', '.join(_BINARY_LISTS)}")

    version = meta["version"]
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        fail(f"version {version!r} does not match {VERSION_RE.pattern}")
    if not _is_utc_iso(meta["created_at"]):
        fail(f"created_at must be an ISO 8601 UTC time, got {meta['created_at']!r}")
    contract = meta["input"]
    if not isinstance(contract, dict):
        fail(f"input must be a JSON object, got {json_type(contract)}")
    features = contract.get("features")
    if features != N_FEATURES or isinstance(features, bool):
        fail(f"input contract must have {N_FEATURES} features, got {features!r}")
    if contract.get("shape") != list(IMAGE_SHAPE) or contract.get("scale") != PIXEL_SCALE:
        fail(f"input contract must have shape [28, 28] and scale 255.0, got {contract!r}")
    for key in _OBJECT_META:
        if not isinstance(meta[key], dict):
            fail(f"{key} must be a JSON object, got {json_type(meta[key])}")
    history = meta["history"]
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        fail("history must be a list of JSON objects")
    seconds = meta["training_seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        fail(f"training_seconds must be a number, got {json_type(seconds)}")
    if not math.isfinite(seconds) or seconds < 0:
        fail(f"training_seconds must be finite and >= 0, got {seconds!r}")


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages: object, array, string, ..."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, int | float) else "other")


def _is_utc_iso(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        offset = datetime.fromisoformat(value).utcoffset()
    except ValueError:
        return False
    return offset is not None and not offset
