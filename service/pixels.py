"""The value rules every transport applies to decoded pixels: each value a finite 0..255 (naming
the first bad pixel of each image), and the scale (an image that looks scaled to 0..1 is refused
unless the caller declares it). `service.inputs` parses bodies with them; V2 tensors
(`service.v2.tensors`) and the pipeline (`service.predicting`) apply them too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.errors import InvalidInput
from trainer.contract import PIXEL_MAX
from trainer.jsontypes import json_type, shorten

__all__ = [
    "MAX_PROBLEMS",
    "UNIT_SCALE_HINT",
    "Pixels",
    "check_scale",
    "check_values",
    "in_range",
    "value_problem",
]

Pixels = NDArray[Any]  # (N, 784), integer or float dtype, every value finite in 0..PIXEL_MAX
MAX_PROBLEMS = 10  # per response: enough to fix a client, not a second copy of a huge batch


def in_range(array: NDArray[Any]) -> bool:
    """Every value within 0..PIXEL_MAX: the value rule of every transport. Written so that NaN
    fails it (every comparison with NaN is false), and so does infinity."""
    return not array.size or bool(array.min() >= 0 and array.max() <= PIXEL_MAX)


UNIT_SCALE_HINT = (
    "send intensities 0..255, or declare the scale with ?scale=unit (V2: the request parameter "
    '"scale": "unit") to have them multiplied by 255'
)


def check_scale(pixels: Pixels, *, unit: bool) -> Pixels:
    """The pixels on the 0..255 scale. ``unit``: the caller says they are scaled to 0..1, so
    they must lie within 0..1 and are multiplied by 255. Otherwise an image that looks scaled
    to 0..1 is refused, as its answer would be noise: one whose brightest pixel is above 0 and at
    most 1 (fractions within 0..1, or a mask of 0s and 1s). An all-black image stays legal."""
    if unit:
        if pixels.size and pixels.max() > 1:
            index, pixel = np.argwhere(pixels > 1)[0].tolist()
            value = shorten(str(pixels[index, pixel].item()))
            raise InvalidInput(
                f"image {index}, pixel {pixel}: value {value} is outside 0..1, which scale=unit "
                "declares",
                code="invalid_pixels",
                details=[{"image": index, "pixel": pixel, "problem": "outside 0..1"}],
            )
        return pixels.astype(np.float32) * np.float32(PIXEL_MAX)
    if len(pixels) == 1 and not 0 < pixels.max() <= 1:  # the common request: one reduction
        return pixels
    peaks = pixels.max(axis=1)
    suspect = np.flatnonzero((peaks > 0) & (peaks <= 1))
    if not suspect.size:
        return pixels
    problems = []
    for index in suspect[:MAX_PROBLEMS].tolist():
        image = pixels[index]
        if image.dtype.kind in "iu" or bool(np.all(np.mod(image, 1) == 0)):
            problem = "it holds only 0s and 1s, as a mask does"
        else:
            problem = (
                f"its values lie within 0..1 (the brightest is {shorten(str(peaks[index].item()))})"
            )
        problems.append({"image": index, "problem": problem})
    first = problems[0]
    raise InvalidInput(
        f"image {first['image']} looks scaled to 0..1: {first['problem']}; {UNIT_SCALE_HINT}",
        code="unit_scale",
        details=problems,
    )


def check_values(array: NDArray[Any]) -> Pixels:
    """(N, 784) numbers of any integer or float dtype, as decoded from a binary or tensor body:
    returned if every value is a finite 0..255, else InvalidInput naming the first bad pixel of
    each image, as a JSON body's are named."""
    if array.dtype == np.uint8 or in_range(array):  # uint8 holds 0..255 and nothing else
        return array
    problems: list[dict[str, Any]] = []
    bad = ~((array >= 0) & (array <= PIXEL_MAX))  # NaN is bad: both comparisons are false
    for index in np.flatnonzero(bad.any(axis=1))[:MAX_PROBLEMS].tolist():
        pixel = int(np.flatnonzero(bad[index])[0])
        problem = value_problem(array[index, pixel].item())
        problems.append({"image": index, "pixel": pixel, "problem": problem})
    first = problems[0]
    message = f"image {first['image']}, pixel {first['pixel']}: {first['problem']}"
    raise InvalidInput(message, code="invalid_pixels", details=problems)


def value_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number 0..{PIXEL_MAX}, got {json_type(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number 0..{PIXEL_MAX}, got {value}"
    if not 0 <= value <= PIXEL_MAX:
        return f"value {shorten(str(value))} is outside 0..{PIXEL_MAX}"
    return None
