"""The model artifact: one ``.npz`` holding ``weights`` (784, K), ``bias`` (K,) and a JSON ``meta``.

This module is the only place that knows the file layout. The trainer writes artifacts with
`make_artifact` + `save`; the service reads them with `load`. Both go through `validate`, so a file
that loads is one the math in `trainer.linear` can use without further checks.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile
from numpy.typing import NDArray

from trainer._artifact_schema import (
    FORMAT,
    REQUIRED_META,
    SCHEMA_VERSION,
    ArtifactError,
    input_contract,
    json_type,
    new_version,
    utc_now_iso,
    validate,
)
from trainer.contract import IMAGE_SHAPE, N_FEATURES, PIXEL_SCALE

__all__ = [
    "FORMAT",
    "IMAGE_SHAPE",
    "N_FEATURES",
    "PIXEL_SCALE",
    "SCHEMA_VERSION",
    "Artifact",
    "ArtifactError",
    "describe",
    "input_contract",
    "load",
    "make_artifact",
    "new_version",
    "save",
    "utc_now_iso",
    "validate",
]

_ARRAYS = frozenset({"weights", "bias", "meta"})
_NEW = "<new artifact>"


@dataclass(frozen=True, eq=False)
class Artifact:
    """A validated linear model. Arrays are read-only, float32 and C-contiguous.

    weights: (784, K) float32; bias: (K,) float32; K = n classes (softmax) or 1 (binary).
    ``logits = (pixels / 255) @ weights + bias`` for pixels (N, 784) in 0..255.
    """

    weights: NDArray[np.float32]
    bias: NDArray[np.float32]
    meta: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def created_at(self) -> str:
        return str(self.meta["created_at"])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta["class_names"])

    @property
    def n_outputs(self) -> int:
        return int(self.weights.shape[1])


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
    meta = json.loads(_dump_meta(_plain_json(meta), _NEW))
    try:
        with np.errstate(all="ignore"):  # an overflow to inf is reported by validate, by name
            w = np.array(weights, dtype=np.float32, order="C", copy=True)
            b = np.array(bias, dtype=np.float32, order="C", copy=True)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(_NEW, f"weights and bias must be float arrays: {exc}") from None
    validate(w, b, meta, where=_NEW)
    return Artifact(_frozen(w), _frozen(b), meta)


def save(artifact: Artifact, path: str | os.PathLike[str]) -> Path:
    """Validate and write atomically: readers see the old file or the new one, never a mix."""
    path = Path(path)
    validate(artifact.weights, artifact.bias, artifact.meta, where=str(path))
    meta_text = _dump_meta(artifact.meta, str(path))
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
    """Read and validate an artifact; every failure becomes an ArtifactError naming the path."""
    where = str(path)
    arrays = _read_arrays(Path(path), where)
    meta = _parse_meta(arrays["meta"], where)
    validate(arrays["weights"], arrays["bias"], meta, where=where)
    return Artifact(_frozen(arrays["weights"]), _frozen(arrays["bias"]), meta)


def describe(artifact: Artifact) -> dict[str, Any]:
    """A small JSON-ready summary (no arrays, no paths) for listings and logs."""
    return {
        "kind": artifact.kind,
        "version": artifact.version,
        "created_at": artifact.created_at,
        "class_names": list(artifact.class_names),
        "n_outputs": artifact.n_outputs,
        "metrics": artifact.meta["metrics"],
    }


def _read_arrays(path: Path, where: str) -> dict[str, NDArray[Any]]:
    try:  # opened here, not by np.load, which leaks its file when zipfile rejects it
        fh = path.open("rb")
    except FileNotFoundError:
        raise ArtifactError(where, "no such file") from None
    except OSError as exc:
        raise ArtifactError(where, f"cannot read file: {exc}") from None
    with fh:
        try:
            npz = np.load(fh, allow_pickle=False)
        except zipfile.BadZipFile as exc:  # numpy hands only files that start like a zip to zipfile
            raise ArtifactError(where, f"truncated or corrupt .npz file: {exc}") from None
        except OSError as exc:
            raise ArtifactError(where, f"cannot read file: {exc}") from None
        except (ValueError, EOFError):  # numpy's "pickled data" / "no data left" for other bytes
            raise ArtifactError(where, "not an .npz file") from None
        if not isinstance(npz, NpzFile):
            raise ArtifactError(where, "not an .npz file (a bare .npy array)")
        with npz:
            return _npz_arrays(npz, where)


def _npz_arrays(npz: NpzFile[Any], where: str) -> dict[str, NDArray[Any]]:
    names = set(npz.files)
    if missing := sorted(_ARRAYS - names):
        raise ArtifactError(where, f"missing arrays: {', '.join(missing)}")
    if unexpected := sorted(names - _ARRAYS):
        raise ArtifactError(where, f"unexpected arrays: {', '.join(unexpected)}")
    arrays: dict[str, NDArray[Any]] = {}
    for name in sorted(_ARRAYS):
        try:
            array = npz[name]
        except ValueError as exc:
            if "allow_pickle" in str(exc):  # numpy has no dedicated exception type for this
                raise ArtifactError(
                    where, f"contains a pickled object array ({name}); refusing to load"
                ) from None
            raise ArtifactError(where, f"array {name!r} is corrupt: {exc}") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise ArtifactError(where, f"array {name!r} is corrupt: {exc}") from None
        if not isinstance(array, np.ndarray):
            raise ArtifactError(where, f"{name!r} is not a NumPy array")
        arrays[name] = array
    return arrays


def _parse_meta(array: NDArray[Any], where: str) -> dict[str, Any]:
    if array.ndim != 0 or array.dtype.kind != "U":
        raise ArtifactError(
            where, f"meta must be a 0-d unicode array, got {array.dtype} of shape {array.shape}"
        )
    try:
        meta = json.loads(str(array[()]))
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(where, f"meta is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ArtifactError(where, f"meta must be a JSON object, got {json_type(meta)}")
    return meta


def _dump_meta(meta: Mapping[str, Any], where: str) -> str:
    try:  # strict JSON (no NaN) so that any JSON reader, not just Python's, can read meta
        return json.dumps(dict(meta), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ArtifactError(where, f"meta is not JSON-serialisable: {exc}") from None


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


def _frozen(array: NDArray[np.float32]) -> NDArray[np.float32]:
    array = np.ascontiguousarray(array)  # a hand-made file may hold Fortran-ordered arrays
    array.setflags(write=False)  # artifacts are shared between request threads
    return array


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every OS/filesystem, hence best effort.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
