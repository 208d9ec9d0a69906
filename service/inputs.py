"""Request bodies -> an (N, 784) array of pixel intensities 0..255, or an error naming the problem.

The JSON fast path lets NumPy check a whole batch at once (shape, dtype, range); only a request that
fails those checks is walked element by element, to say which image and pixel is wrong. Checking
every value in Python (as pydantic's ``list[float]`` does) costs more than the prediction itself.
"""

from __future__ import annotations

import io
import json
import math
import sys
import warnings
from typing import Any

import numpy as np
import orjson
from PIL import Image, UnidentifiedImageError

from service.errors import BadRequest, InvalidInput, PayloadTooLarge
from service.pixels import MAX_PROBLEMS, Pixels, in_range, value_problem
from trainer.contract import IMAGE_SHAPE, N_FEATURES
from trainer.jsontypes import json_type

__all__ = [
    "MAX_INT_DIGITS",
    "MAX_PROBLEMS",
    "Pixels",
    "check_batch_size",
    "from_image",
    "from_json",
    "from_raw",
    "parse_json",
]

_ROWS, _COLS = IMAGE_SHAPE
_KEYS = frozenset(("pixels", "images"))
_NUMERIC = b"0123456789.,[]-+eE \t\r\n"  # what a JSON array of numbers is made of
MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300  # beyond it, Python refuses int(text)
_PLAIN = frozenset(f'{{"{key}":}}'.encode().translate(None, _NUMERIC) for key in _KEYS)


def from_json(body: bytes, *, max_batch: int) -> tuple[Pixels, bool]:
    """Parse ``{"pixels": [...]}`` or ``{"images": [[...], ...]}``; returns pixels and is-batch."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput(
            f"expected a JSON object with 'pixels' or 'images', got {json_type(doc)}"
        )
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise InvalidInput(
            f"unknown field {unknown[0][:40]!r}: send 'pixels' (one image) or 'images' (a batch)"
        )
    if not doc:
        raise InvalidInput("expected 'pixels' (one image) or 'images' (a batch), got neither")
    if len(doc) != 1:
        raise InvalidInput("send either 'pixels' (one image) or 'images' (a batch), not both")
    batch = "images" in doc
    images = doc["images"] if batch else [doc["pixels"]]
    if not isinstance(images, list):
        raise InvalidInput(f"'images' must be an array of images, got {json_type(images)}")
    if not images:
        raise InvalidInput("'images' is empty: send at least one image")
    check_batch_size(len(images), max_batch)
    if body.translate(None, _NUMERIC) in _PLAIN:
        # Nothing but the key and numbers: whole numbers go straight to uint8, others NumPy may
        # convert straight to float32 (it would also parse a string such as "7", and take true,
        # false and null for 1, 0 and NaN).
        pixels = _whole(images)
        if pixels is None:
            pixels = _fast(images, np.float32)
        if pixels is not None:
            return pixels, batch
    elif not (b"true" in body or b"false" in body or b"null" in body):
        pixels = _fast(images, None)
        if pixels is not None:
            return pixels, batch
    problem = _diagnose(images, batch)
    if problem is not None:
        raise problem
    # Every image is valid on its own; the batch only mixes flat and 28x28 ones.
    return np.concatenate([_image_array(image) for image in images]), batch


def from_raw(body: bytes, *, max_batch: int) -> Pixels:
    """``application/octet-stream``: N x 784 bytes, one uint8 intensity per pixel, row-major."""
    if not body:
        raise InvalidInput("empty body: send N x 784 bytes (uint8 pixels, one image per 784)")
    if len(body) % N_FEATURES:
        raise InvalidInput(
            f"raw body of {len(body)} bytes is not a multiple of {N_FEATURES} "
            f"(one 28x28 uint8 image per {N_FEATURES} bytes)",
            details={"bytes": len(body), "remainder": len(body) % N_FEATURES},
        )
    check_batch_size(len(body) // N_FEATURES, max_batch)
    return np.frombuffer(body, dtype=np.uint8).reshape(-1, N_FEATURES)


def from_image(data: bytes, *, max_pixels: int, what: str = "image") -> Pixels:
    """A PNG or JPEG -> (1, 784): grayscale, resized to 28x28 if needed (light item on dark, as
    in Fashion-MNIST). The size is checked from the header before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"{what} is {width}x{height} = {width * height} pixels, over the limit of "
                    f"{max_pixels} (SOFTSERVE_MAX_IMAGE_PIXELS)",
                    code="image_too_large",
                )
            gray = image.convert("L")
            if gray.size != (_COLS, _ROWS):
                gray = gray.resize((_COLS, _ROWS), Image.Resampling.BILINEAR)
            return np.asarray(gray, dtype=np.uint8).reshape(1, N_FEATURES)
    except UnidentifiedImageError:
        raise InvalidInput(f"{what} is not a PNG or JPEG image", code="invalid_image") from None
    except Image.DecompressionBombError as e:  # Pillow's own limit, hit before the one above
        raise PayloadTooLarge(
            f"{what} is too large to decode: {e} (this service's limit: {max_pixels} pixels, "
            "SOFTSERVE_MAX_IMAGE_PIXELS)",
            code="image_too_large",
        ) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise InvalidInput(
            f"{what} is not a readable PNG or JPEG: {e}", code="invalid_image"
        ) from None


def check_batch_size(n: int, max_batch: int) -> None:
    if n > max_batch:
        raise PayloadTooLarge(
            f"batch of {n} images is over the limit of {max_batch} (SOFTSERVE_MAX_BATCH)",
            code="batch_too_large",
            details={"images": n, "limit": max_batch},
        )


def parse_json(
    body: bytes, *, expected: str = 'JSON like {"pixels": [784 numbers]}', hint: str = ""
) -> Any:
    """A request body's JSON, or 400 ``invalid_json`` saying what was ``expected`` (and
    ``hint``, why it may not be JSON)."""
    if not body.strip():
        raise BadRequest(f"empty body: expected {expected}", code="invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as strict:
        # NaN, Infinity and huge numbers are not JSON, but Python's json.dumps writes the first two:
        # parse them leniently so the answer can say which pixel is wrong instead of "bad JSON".
        try:
            return json.loads(body, parse_int=_parse_int)
        except (ValueError, RecursionError):
            raise BadRequest(
                f"body is not valid JSON: {strict}{hint}", code="invalid_json"
            ) from None


def _parse_int(text: str) -> int | float:
    # Python refuses ints of over MAX_INT_DIGITS digits (a guard against slow conversions); any
    # such number is far outside 0..255, so it becomes an infinity, which the pixel checks name.
    if len(text) <= MAX_INT_DIGITS:
        return int(text)
    return -math.inf if text.startswith("-") else math.inf


def _whole(images: list[Any]) -> Pixels | None:
    """(N, 784) uint8 when every image is a flat array of 784 whole numbers in 0..255, else None.

    ``bytes()`` checks each value's type and range in C: several times faster than NumPy's
    conversion of a list of Python ints, which is most of the cost of a one-image request. Only
    for plain bodies (numbers alone): ``bytes()`` would also take true and false as 1 and 0.
    """
    if not all(type(image) is list and len(image) == N_FEATURES for image in images):
        return None
    try:
        data = bytes(images[0]) if len(images) == 1 else b"".join(map(bytes, images))
    except (TypeError, ValueError):  # a float, a nested row, a value outside 0..255
        return None
    return np.frombuffer(data, dtype=np.uint8).reshape(len(images), N_FEATURES)


def _fast(images: list[Any], dtype: type[np.float32] | None) -> Pixels | None:
    """The whole batch as one array if it is well-formed, else None (then `_diagnose` explains)."""
    try:
        array = np.asarray(images, dtype=dtype)
    except (ValueError, TypeError, OverflowError):  # ragged, or ints beyond 64 bits
        return None
    if array.dtype.kind not in "iuf":
        return None
    n = len(images)
    if array.shape == (n, _ROWS, _COLS):
        array = array.reshape(n, N_FEATURES)
    elif array.shape != (n, N_FEATURES):
        return None
    return array if in_range(array) else None


def _image_array(image: list[Any]) -> Pixels:
    """(1, 784) from one image `_image_problems` found nothing wrong with (flat or 28x28)."""
    return np.asarray(image).reshape(1, N_FEATURES)


def _diagnose(images: list[Any], batch: bool) -> InvalidInput | None:
    """Walk the request to name what is wrong with which image and pixel (None: nothing is)."""
    problems: list[dict[str, Any]] = []
    for index, image in enumerate(images):
        for pixel, problem in _image_problems(image):
            entry: dict[str, Any] = {"image": index, "problem": problem}
            if pixel is not None:
                entry["pixel"] = pixel
            if not problems:
                place = [f"image {index}"] if batch else []
                place += [f"pixel {pixel}"] if pixel is not None else []
                first = ", ".join(place) + ": " + problem if place else problem
            problems.append(entry)
            if len(problems) >= MAX_PROBLEMS:
                return InvalidInput(first, code="invalid_pixels", details=problems)
            break  # one problem per image is enough to fix it
    if not problems:
        return None
    return InvalidInput(first, code="invalid_pixels", details=problems)


def _image_problems(image: Any) -> list[tuple[int | None, str]]:
    if not isinstance(image, list):
        return [(None, f"expected an array of {N_FEATURES} pixels, got {json_type(image)}")]
    values: list[Any] = image
    if image and all(isinstance(row, list) for row in image):
        if len(image) != _ROWS or any(len(row) != _COLS for row in image):
            lengths = sorted({len(row) for row in image})
            return [
                (
                    None,
                    f"expected {_ROWS} rows of {_COLS} pixels, got {len(image)} rows "
                    f"of {'/'.join(map(str, lengths[:5]))}",
                )
            ]
        values = [v for row in image for v in row]
    elif len(image) != N_FEATURES:
        return [(None, f"expected {N_FEATURES} pixels, got {len(image)}")]
    for pixel, value in enumerate(values):
        problem = value_problem(value)
        if problem:
            return [(pixel, problem)]
    return []
