"""The IDX file format (LeCun's MNIST layout), raw or gzip'd: header-checked reading.

Images come back as ``(N, 784)`` uint8 rows (row-major 28x28), labels as ``(N,)`` uint8. Arrays are
read-only views of the decompressed file bytes, so loading costs one decompression and no copy.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from trainer.errors import TrainerError

__all__ = ["DataError", "decompressed", "load_images", "load_labels", "read_idx"]

_IDX_DTYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
               0x0D: "float32", 0x0E: "float64"}  # fmt: skip


class DataError(TrainerError):
    """Any problem finding, downloading or reading a dataset; the message says what and where."""


def decompressed(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic (whatever the name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt gzip stream ({e}); fetch the file again") from None


def read_idx(path: Path) -> tuple[NDArray[np.uint8], str]:
    """Read a raw or gzip'd IDX file of unsigned bytes.

    Returns the array shaped as the header says (1 to 4 dimensions) and the SHA-256 hex digest of
    the decompressed bytes.
    """
    data = decompressed(path)
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file: {len(data)} bytes, the header alone needs 4")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file: first two bytes are {data[:2].hex()}, not 0000")
    code, ndim = data[2], data[3]
    if code != 0x08:
        name = _IDX_DTYPES.get(code, "unknown")
        raise DataError(
            f"{path}: dtype code 0x{code:02X} ({name}) is not supported, "
            "expected 0x08 (unsigned byte)"
        )
    if not 1 <= ndim <= 4:
        raise DataError(f"{path}: header declares {ndim} dimensions, expected 1 to 4")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DataError(f"{path}: header truncated: {ndim} dimensions need {start} bytes")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if 0 in dims:
        raise DataError(f"{path}: header declares an empty dimension: {'x'.join(map(str, dims))}")
    expected, held = math.prod(dims), len(data) - start  # Python ints: no overflow
    if held < expected:
        raise DataError(
            f"{path}: truncated: header promises {expected} bytes of data, file holds {held}"
        )
    if held > expected:
        raise DataError(f"{path}: {held - expected} trailing bytes after the {expected} promised")
    array = np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)
    return array, hashlib.sha256(data).hexdigest()


def load_images(path: Path) -> tuple[NDArray[np.uint8], str]:
    """Read an N x 28 x 28 IDX image file as ``(N, 784)`` C-contiguous uint8 rows, plus its hash."""
    array, sha = read_idx(path)
    if array.ndim != 3:
        shape = "x".join(map(str, array.shape))
        raise DataError(f"{path}: expected N x 28 x 28 images, got {array.ndim}-d {shape}")
    if array.shape[1:] != (28, 28):
        raise DataError(f"{path}: expected 28x28 images, got {array.shape[1]}x{array.shape[2]}")
    return np.ascontiguousarray(array.reshape(array.shape[0], 784)), sha


def load_labels(path: Path) -> tuple[NDArray[np.uint8], str]:
    """Read a one-dimensional IDX label file as ``(N,)`` uint8, plus its hash."""
    array, sha = read_idx(path)
    if array.ndim != 1:
        shape = "x".join(map(str, array.shape))
        raise DataError(f"{path}: expected 1 dimension for labels, got {array.ndim} ({shape})")
    return array, sha
