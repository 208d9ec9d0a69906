"""The model artifact: one ``.npz`` holding ``weights`` (784, K), ``bias`` (K,) and a JSON ``meta``.

This module is the only place that knows the file layout. The trainer writes artifacts with
`make_artifact` + `save`; the service reads them with `load`. Both go through `validate`, so a file
that loads is one the math in `trainer.linear` can use without further checks. `load` is meant for
files nobody vouches for: whatever their bytes, it returns a valid Artifact or raises ArtifactError,
and never allocates more than a valid artifact of the largest size could need.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from trainer._artifact_schema import (
    FORMAT,
    MAX_OUTPUTS,
    REQUIRED_META,
    SCHEMA_VERSION,
    VERSION_PATTERN,
    VERSION_RE,
    ArtifactError,
    bias_problem,
    check_format,
    input_contract,
    new_version,
    validate,
    weights_problem,
)
from trainer._npz import open_npz
from trainer.contract import IMAGE_SHAPE, N_FEATURES, PIXEL_SCALE, Kind
from trainer.jsontypes import json_type
from trainer.metrics import Split
from trainer.timestamps import utc_now_iso

__all__ = [
    "FORMAT",
    "IMAGE_SHAPE",
    "MAX_META_BYTES",
    "MAX_OUTPUTS",
    "N_FEATURES",
    "PIXEL_SCALE",
    "SCHEMA_VERSION",
    "VERSION_PATTERN",
    "VERSION_RE",
    "Artifact",
    "ArtifactError",
    "Metrics",
    "describe",
    "input_contract",
    "load",
    "make_artifact",
    "new_version",
    "save",
    "validate",
]

Metrics = dict[str, int | float | None]  # one split's figures: loss, accuracy, roc_auc, ...

# Meta as stored, UCS-4: 2 Mi characters, 3x what a 1000-epoch history takes (~320 per epoch and
# run), 250x today's ~8 Ki. Parsed JSON can take 30x its text, so this bounds load's memory too.
MAX_META_BYTES = 8 * 2**20
# Data bytes per array: what a valid artifact of the largest size holds.
_LIMITS = {"weights": N_FEATURES * MAX_OUTPUTS * 4, "bias": MAX_OUTPUTS * 4, "meta": MAX_META_BYTES}
_NEW = "<new artifact>"


class Artifact:
    """A linear model: weights (784, K) float32, bias (K,) float32, JSON meta; immutable.

    ``logits = (pixels / 255) @ weights + bias`` for pixels (N, 784) in 0..255; K = n classes
    (softmax) or 1 (binary). `make_artifact` and `load` return only validated ones.
    Request threads share one artifact, so nothing it hands out can change it: the arrays are
    read-only views of immutable bytes (``setflags(write=True)`` fails, also after unpickling),
    and `meta` is a fresh plain-JSON copy on every access; the other properties do not copy it.
    """

    __slots__ = ("_bias", "_meta", "_meta_text", "_weights")
    _weights: NDArray[np.float32]
    _bias: NDArray[np.float32]
    _meta: dict[str, Any]  # private: never handed out, so never changed
    _meta_text: str  # canonical JSON, what `save` writes and `meta` parses

    def __init__(self, weights: ArrayLike, bias: ArrayLike, meta: Mapping[str, Any]) -> None:
        """Copies weights, bias and meta; raises ArtifactError if meta is not plain JSON."""
        text = _dump_meta(meta, _NEW)
        object.__setattr__(self, "_weights", _frozen(weights))
        object.__setattr__(self, "_bias", _frozen(bias))
        object.__setattr__(self, "_meta", _parse_meta(text, _NEW))
        object.__setattr__(self, "_meta_text", text)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Artifact is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Artifact is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[type[Artifact], tuple[Any, ...]]:
        # Training jobs send artifacts back from a child process; unpickled arrays would be
        # writeable, so the constructor freezes them again.
        return (type(self), (self._weights, self._bias, self.meta))

    def __repr__(self) -> str:
        return f"Artifact(kind={self._meta.get('kind')!r}, version={self._meta.get('version')!r})"

    @property
    def weights(self) -> NDArray[np.float32]:
        return self._weights

    @property
    def bias(self) -> NDArray[np.float32]:
        return self._bias

    @property
    def meta(self) -> dict[str, Any]:
        """A fresh copy, plain JSON types only (dict, list, str, int, float, bool, None)."""
        return cast(dict[str, Any], json.loads(self._meta_text))

    @property
    def kind(self) -> Kind:
        return "binary" if self._meta["kind"] == "binary" else "softmax"  # validate() allows two

    @property
    def version(self) -> str:
        return str(self._meta["version"])

    @property
    def created_at(self) -> str:
        return str(self._meta["created_at"])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self._meta["class_names"])

    @property
    def n_outputs(self) -> int:
        return int(self._weights.shape[1])

    @property
    def dataset_class_names(self) -> tuple[str, ...]:
        """The classes of the data it was trained on: its outputs (softmax), or the dataset's
        classes that a binary model's positive and negative sides group."""
        if self.kind == "binary":
            return tuple(self._meta["binary"]["dataset_class_names"])
        return self.class_names

    @property
    def positive_classes(self) -> tuple[str, ...]:
        """A binary model's positive side, as dataset class names (empty for softmax)."""
        return tuple(self._meta["binary"]["positive_classes"]) if self.kind == "binary" else ()

    @property
    def negative_classes(self) -> tuple[str, ...]:
        """A binary model's negative side, as dataset class names (empty for softmax)."""
        return tuple(self._meta["binary"]["negative_classes"]) if self.kind == "binary" else ()

    def metrics(self, split: Split) -> Metrics:
        """The figures recorded for one split (empty if none were): a fresh copy."""
        return dict(self._meta["metrics"].get(split) or {})

    @property
    def test_accuracy(self) -> float | None:
        """The recorded test accuracy, or None when the artifact records none."""
        value = self.metrics("test").get("accuracy")
        return None if value is None else float(value)

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per epoch (phase, epoch, learning rate, losses, accuracies): a copy."""
        return cast(list[dict[str, Any]], json.loads(json.dumps(self._meta["history"])))


def make_artifact(
    *,
    kind: str,
    weights: NDArray[np.floating[Any]],
    bias: NDArray[np.floating[Any]],
    class_names: Sequence[str],
    dataset: Mapping[str, Any],
    training: Mapping[str, Any],
    metrics: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    training_seconds: float,
    binary: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Artifact:
    """Build and validate an artifact from weights (784, K) and bias (K,) of any float dtype.

    Arrays are copied to float32; meta gets a fresh version and created_at and is made plain JSON
    (tuples become lists, NumPy scalars Python numbers, NaN/inf null), so `load` returns it as is.
    ``metrics`` is ``{split: {metric: number or None}}``, e.g. ``{"test": {"accuracy": 0.84}}``.
    """
    clashes = sorted(set(extra or {}) & {*REQUIRED_META, "binary"})
    if clashes:
        raise ArtifactError(_NEW, f"extra keys clash with reserved meta keys: {', '.join(clashes)}")
    meta: dict[str, Any] = {
        **(extra or {}),
        "schema_version": SCHEMA_VERSION, "format": FORMAT, "kind": kind,
        "version": new_version(), "created_at": utc_now_iso(),
        "class_names": class_names, "input": input_contract(),
        "dataset": dataset, "training": training, "metrics": metrics, "history": history,
        "training_seconds": training_seconds,
        **({} if binary is None else {"binary": binary}),
    }  # fmt: skip
    try:
        with np.errstate(all="ignore"):  # an overflow to inf is reported by validate, by name
            w, b = np.asarray(weights, np.float32), np.asarray(bias, np.float32)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(_NEW, f"weights and bias must be float arrays: {exc}") from None
    artifact = Artifact(w, b, _plain_json(meta))  # copies all three: the caller keeps its own
    validate(artifact.weights, artifact.bias, artifact._meta, where=_NEW)
    return artifact


def save(artifact: Artifact, path: str | os.PathLike[str]) -> Path:
    """Validate and write atomically: readers see the old file or the new one, never a mix."""
    path = Path(path)
    validate(artifact.weights, artifact.bias, artifact._meta, where=str(path))
    meta_text = artifact._meta_text
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below; must outlive the `with`
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    tmp_path = Path(tmp.name)
    try:
        with tmp:
            # A file object, not a name: numpy would append ".npz" to a name.
            np.savez(tmp, weights=artifact.weights, bias=artifact.bias, meta=np.array(meta_text))
            tmp.flush()
            os.fsync(tmp.fileno())
        tmp_path.chmod(0o644)  # mkstemp makes 0600; the service may run as another user
        tmp_path.replace(path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def load(path: str | os.PathLike[str]) -> Artifact:
    """Read and validate an artifact; every failure becomes an ArtifactError naming the path.

    Each array's .npy header is checked before its data is read, meta first, so that a file of a
    newer schema says so before its arrays are judged.
    """
    where = str(path)
    with open_npz(Path(path), where, _LIMITS) as npz:
        meta = _parse_meta(npz.read_text("meta"), where)
        check_format(meta, where=where)
        weights = npz.read("weights", weights_problem).array()
        n_outputs = weights.shape[1]
        bias = npz.read("bias", functools.partial(bias_problem, n_outputs=n_outputs)).array()
    validate(weights, bias, meta, where=where)
    return Artifact(weights, bias, meta)


def describe(artifact: Artifact) -> dict[str, Any]:
    """A small JSON-ready summary (no arrays, no paths) for listings and logs; a fresh copy."""
    return {
        "kind": artifact.kind,
        "version": artifact.version,
        "created_at": artifact.created_at,
        "class_names": list(artifact.class_names),
        "n_outputs": artifact.n_outputs,
        "metrics": {split: dict(values) for split, values in artifact._meta["metrics"].items()},
    }


class _Unportable(ValueError):
    """JSON Python reads but not every reader can hold: NaN, Infinity, 1e999, ints past 64 bits."""


def _parse_int(text: str) -> int:
    # The length first: int() of 4301 digits or more raises a ValueError of its own.
    if len(text) > 20 or (value := int(text)) not in range(-(2**63), 2**63):
        raise _Unportable(f"integer {text[:24]}... does not fit in 64 bits")
    return value


def _parse_float(text: str) -> float:
    value = float(text)  # also gets "NaN", "Infinity", "-Infinity", as parse_constant
    if not math.isfinite(value):
        raise _Unportable(f"{text[:24]} is not a finite number")
    return value


def _parse_meta(text: str, where: str) -> dict[str, Any]:
    """Strict JSON: what `_dump_meta` writes, so JSON readers other than Python's agree on it."""
    try:
        meta = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_float
        )
        # A JSON escape can make a lone surrogate ("\ud800"), which no UTF-8 encoder takes.
        json.dumps(meta, ensure_ascii=False).encode()
    except _Unportable as exc:
        raise ArtifactError(where, f"meta is not portable JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(where, f"meta is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ArtifactError(where, f"meta must be a JSON object, got {json_type(meta)}")
    return meta


def _dump_meta(meta: Mapping[str, Any], where: str) -> str:
    try:  # strict JSON (no NaN) so that any JSON reader, not just Python's, can read meta
        text = json.dumps(dict(meta), allow_nan=False, ensure_ascii=False)
        text.encode()  # refuses lone surrogates
    except (TypeError, ValueError, RecursionError) as exc:
        raise ArtifactError(where, f"meta is not JSON-serialisable: {exc}") from None
    return text


def _plain_json(value: Any) -> Any:
    # Metrics come from NumPy (np.float32, NaN AUC for a one-class split); JSON has neither.
    if isinstance(value, Mapping):
        return {str(key): _plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain_json(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _frozen(array: ArrayLike) -> NDArray[Any]:
    # A view of immutable bytes: unlike setflags(write=False) on an array owning its memory, no
    # caller can turn writing back on. C order whatever the input's (a file may be Fortran).
    array = np.asarray(array)
    return np.frombuffer(array.tobytes(order="C"), dtype=array.dtype).reshape(array.shape)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every OS/filesystem, hence best effort.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
