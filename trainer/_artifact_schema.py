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

from trainer.contract import IMAGE_SHAPE, KINDS, N_FEATURES, PIXEL_SCALE
from trainer.errors import TrainerError
from trainer.jsontypes import json_type
from trainer.timestamps import is_utc_iso

SCHEMA_VERSION = 1
FORMAT = "softserve.linear"
# Bounds what a file may make `load` allocate: weights are at most 784 x 4096 float32 (12.8 MB).
MAX_OUTPUTS = 4096
# JSON numbers every reader can hold without loss of meaning: orjson, for one, refuses wider ints.
_INT64 = range(-(2**63), 2**63)

REQUIRED_META = (
    "schema_version", "format", "kind", "version", "created_at", "class_names", "input",
    "dataset", "training", "metrics", "history", "training_seconds",
)  # fmt: skip
_OBJECT_META = ("dataset", "training", "metrics")
_BINARY_LISTS = ("positive_classes", "negative_classes", "dataset_class_names")
# Versions end up in file names and URLs, so the pattern admits no '/', '.' or other surprises.
VERSION_PATTERN = r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$"  # also what a request may name as a version
VERSION_RE = re.compile(VERSION_PATTERN)


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


def check_format(meta: Mapping[str, Any], *, where: str) -> None:
    """Raise ArtifactError unless meta declares this softserve's schema_version and format.

    Checked before anything else, so that a file from a newer softserve says so rather than
    failing on some detail of its arrays.
    """
    if "schema_version" not in meta:
        raise ArtifactError(where, "meta has no schema_version")
    sv = meta["schema_version"]
    if not isinstance(sv, int) or isinstance(sv, bool):
        raise ArtifactError(where, f"schema_version must be an integer, got {_show(sv)}")
    if sv != SCHEMA_VERSION:
        raise ArtifactError(
            where, f"unknown schema_version {_show(sv)}: this softserve reads {SCHEMA_VERSION}"
        )
    if meta.get("format") != FORMAT:
        raise ArtifactError(where, f"format must be {FORMAT!r}, got {_show(meta.get('format'))}")


def weights_problem(dtype: np.dtype[Any], shape: tuple[int, ...]) -> str | None:
    """What is wrong with weights of this dtype and shape (from an array or an .npy header)."""
    if dtype != np.float32:
        return f"weights must be float32, got {dtype}"
    if len(shape) != 2 or shape[0] != N_FEATURES or shape[1] < 1:
        return f"weights must have shape ({N_FEATURES}, K), got {_show(shape)}"
    if shape[1] > MAX_OUTPUTS:
        return f"weights have K = {shape[1]} outputs, more than the {MAX_OUTPUTS} supported"
    return None


def bias_problem(dtype: np.dtype[Any], shape: tuple[int, ...], n_outputs: int) -> str | None:
    """What is wrong with a bias of this dtype and shape, for weights with K = n_outputs."""
    if dtype != np.float32:
        return f"bias must be float32, got {dtype}"
    if shape != (n_outputs,):
        return f"bias must have shape ({n_outputs},), got {_show(shape)}"
    return None


def validate(
    weights: NDArray[Any], bias: NDArray[Any], meta: Mapping[str, Any], *, where: str
) -> None:
    """Raise ArtifactError naming the first problem; return None if the artifact is consistent.

    weights must be float32 (784, K), bias float32 (K,), both finite; K >= 2 for kind "softmax"
    (one class name per column), K = 1 for kind "binary" (class names [negative, positive]);
    1 <= K <= MAX_OUTPUTS. Never raises anything else, whatever the values in meta.
    """

    def fail(problem: str) -> NoReturn:
        raise ArtifactError(where, problem)

    check_format(meta, where=where)
    if missing := [key for key in REQUIRED_META if key not in meta]:
        fail(f"meta is missing keys: {', '.join(missing)}")

    if problem := weights_problem(weights.dtype, weights.shape):
        fail(problem)
    k = weights.shape[1]
    if problem := bias_problem(bias.dtype, bias.shape, k):
        fail(problem)
    if not np.isfinite(weights).all():
        fail("weights contain NaN or infinite values")
    if not np.isfinite(bias).all():
        fail("bias contains NaN or infinite values")

    kind, names = meta["kind"], meta["class_names"]
    if kind not in KINDS:
        fail(f"unknown kind {_show(kind)}: expected one of {', '.join(KINDS)}")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        fail("class_names must be a list of non-empty strings")
    if len(set(names)) != len(names):
        fail(f"class_names must be distinct, got {_show(names)}")
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
            _is_str_list(block.get(key)) for key in _BINARY_LISTS
        ):
            fail(
                "kind 'binary' needs a 'binary' object with lists of strings "
                + ", ".join(_BINARY_LISTS)
            )

    version = meta["version"]
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        fail(f"version {_show(version)} does not match {VERSION_PATTERN}")
    if not is_utc_iso(meta["created_at"]):
        fail(f"created_at must be an ISO 8601 UTC time, got {_show(meta['created_at'])}")
    contract = meta["input"]
    if not isinstance(contract, dict):
        fail(f"input must be a JSON object, got {json_type(contract)}")
    features = contract.get("features")
    if features != N_FEATURES or isinstance(features, bool):
        fail(f"input contract must have {N_FEATURES} features, got {_show(features)}")
    if contract.get("shape") != list(IMAGE_SHAPE) or contract.get("scale") != PIXEL_SCALE:
        fail(f"input contract must have shape [28, 28] and scale 255.0, got {_show(contract)}")
    for key in _OBJECT_META:
        if not isinstance(meta[key], dict):
            fail(f"{key} must be a JSON object, got {json_type(meta[key])}")
    if problem := _metrics_problem(meta["metrics"]):
        fail(problem)
    history = meta["history"]
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        fail("history must be a list of JSON objects")
    seconds = meta["training_seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        fail(f"training_seconds must be a number, got {json_type(seconds)}")
    if not _is_finite_number(seconds) or seconds < 0:
        fail(f"training_seconds must be finite and >= 0, got {_show(seconds)}")


def _metrics_problem(metrics: Mapping[Any, Any]) -> str | None:
    # {split: {metric: number | null}}; splits are free (train, validation, test, ...), a metric
    # may be an int ("epoch"), null stands for a value that could not be computed (a NaN AUC).
    for split, values in metrics.items():
        where = f"metrics[{_show(split)}]"
        if not isinstance(split, str) or not isinstance(values, dict):
            return (
                f"{where} must be a JSON object of metric name -> number or null, "
                f"got {json_type(values)}"
            )
        for name, value in values.items():
            if not isinstance(name, str) or not (value is None or _is_finite_number(value)):
                return f"{where}[{_show(name)}] must be a finite number or null, got {_show(value)}"
    return None


def _is_finite_number(value: object) -> bool:
    # Not math.isfinite alone: it raises OverflowError for an int too large for a float.
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value in _INT64
    return isinstance(value, float) and math.isfinite(value)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _show(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message stays a line, whatever the file."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past Python's 4300-digit limit, deep nesting
        return f"<{json_type(value)}>"
    return text if len(text) <= limit else f"{text[:limit]}..."
