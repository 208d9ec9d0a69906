"""A V2 inference request -> what it asks for and its pixels, or an error naming the problem.

The body is a JSON header, optionally followed by binary tensor data (the binary tensor data
extension); ``Inference-Header-Content-Length`` says where the JSON ends. That header decides,
never Content-Type: tritonclient's sync client sends none, and its aio client sends
``application/octet-stream`` with a pure-JSON body. A declared shape and ``binary_data_size`` are
checked against the limits before anything is allocated; the values follow `/predict`'s rule,
checked by the same code (`service.pixels.check_values`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from service import inputs
from service.errors import BadRequest, InvalidInput
from service.pixels import check_values
from service.predicting import NOTHING_DECLARED, Declared, Limits
from trainer.contract import IMAGE_SHAPE, N_FEATURES
from trainer.jsontypes import json_type

__all__ = [
    "DATATYPES",
    "INPUT",
    "OOD_FLAG",
    "OOD_SCORE",
    "OUTPUT",
    "OUTPUTS",
    "SHAPES",
    "InferRequest",
    "Output",
    "parse",
    "split",
]

INPUT = "pixels"
OUTPUT = "probabilities"
OOD_SCORE, OOD_FLAG = "ood_score", "ood_flag"  # the assessment (service.trust), when assessed
OUTPUTS = (OUTPUT, OOD_SCORE, OOD_FLAG)
# The datatypes a pixel tensor may have, as little-endian NumPy dtypes: integers and floats whose
# values lie within 0..255. BOOL, BYTES and BF16 are refused.
DATATYPES = {
    "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
SHAPES = f"[N, {N_FEATURES}] or [N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}]"
_MAX_DIGITS = 20  # of a length header: more is no body this service reads (nor an int() it should)


class Output(NamedTuple):
    """One requested output: its name, whether it goes as binary data, and the k of
    ``parameters.classification`` (None: the tensor itself)."""

    name: str
    binary: bool
    classification: int | None = None


class InferRequest(NamedTuple):
    id: str | None
    outputs: tuple[Output, ...]  # as requested, in order; empty: every output the model has
    pixels: inputs.Pixels  # (N, 784), values checked
    declared: Declared = NOTHING_DECLARED  # the request parameters "scale" and "strict"
    binary_output: bool = False  # every output as binary data, unless it says otherwise


def split(body: bytes, header_length: bytes | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary data after it (a view: a batch is not copied), by
    ``Inference-Header-Content-Length``."""
    if header_length is None:
        return body, memoryview(b"")
    text = header_length.decode("latin-1").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
        raise BadRequest(
            f"Inference-Header-Content-Length must be a whole number of bytes, got {text[:40]!r}",
            code="invalid_header",
        )
    length = int(text)
    if length > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length is {length}, but the body has only {len(body)} bytes",
            code="invalid_header",
        )
    view = memoryview(body)
    return body[:length], view[length:]


def parse(header: bytes, binary: bytes | memoryview, limits: Limits) -> InferRequest:
    """The request in ``header`` (JSON) and ``binary`` (the tensor data after it, if any)."""
    doc = _json(header, binary_follows=bool(binary))
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"'id' must be a string, got {json_type(request_id)}")
    parameters = _object(doc.get("parameters"), "'parameters'")
    binary_output = _flag(parameters.get("binary_data_output", False), "binary_data_output")
    scale = parameters.get("scale")
    if scale not in (None, "unit"):
        raise InvalidInput(
            f"parameter 'scale' must be \"unit\" (pixels scaled to 0..1), got {json_type(scale)}",
            code="invalid_parameter",
        )
    tensors = doc.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput(
            f"'inputs' must be an array holding one tensor, {INPUT!r}, got "
            f"{json_type(tensors) if 'inputs' in doc else 'nothing'}"
        )
    if len(tensors) != 1:
        raise InvalidInput(f"expected one input tensor, {INPUT!r}, got {len(tensors)}")
    # bytes() and NumPy both take true and false for 1 and 0: look for them only if the header
    # has any (as /predict does), which an all-numbers request's does not.
    booleans = b"true" in header or b"false" in header
    pixels = _tensor(tensors[0], binary, limits, booleans=booleans)
    strict = _flag(parameters.get("strict", False), "strict")
    outputs = _outputs(doc.get("outputs"), binary_output)
    declared = Declared(scale == "unit", strict)
    return InferRequest(request_id, outputs, pixels, declared, binary_output)


def _json(header: bytes, *, binary_follows: bool) -> dict[str, Any]:
    # A body that declares binary data but came without the length header was read whole as JSON.
    hint = "" if binary_follows or b"binary_data_size" not in header else (
        " (a body with binary tensor data needs the Inference-Header-Content-Length header)"
    )  # fmt: skip
    doc = inputs.parse_json(header, expected="a V2 inference request (JSON)", hint=hint)
    if not isinstance(doc, dict):
        raise InvalidInput(f"expected a JSON object with 'inputs', got {json_type(doc)}")
    return doc


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be an object, got {json_type(value)}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"parameter {name!r} must be true or false, got {json_type(value)}")
    return value


def _named(item: Any, role: str, names: tuple[str, ...]) -> dict[str, Any]:
    """An input or a requested output: an object named one of ``names``."""
    if not isinstance(item, dict):
        raise InvalidInput(f"{role} must be an object, got {json_type(item)}")
    name = item.get("name")
    if name not in names:
        got = repr(name[:40]) if isinstance(name, str) else json_type(name)
        known = f"one {role}, {names[0]!r}" if len(names) == 1 else (
            f"the {role}s {', '.join(map(repr, names))}"
        )  # fmt: skip
        raise InvalidInput(f"unknown {role} {got}: this model has {known}")
    return item


def _tensor(
    item: Any, binary: bytes | memoryview, limits: Limits, *, booleans: bool
) -> inputs.Pixels:
    tensor = _named(item, "input", (INPUT,))
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        got = repr(datatype[:20]) if isinstance(datatype, str) else json_type(datatype)
        raise InvalidInput(
            f"input {INPUT!r} has datatype {got}: send UINT8, or any integer or float type "
            "whose values lie within 0..255",
            code="invalid_datatype",
        )
    n = _batch(tensor.get("shape"), limits)
    count = n * N_FEATURES
    parameters = _object(tensor.get("parameters"), f"input {INPUT!r}'s 'parameters'")
    dtype = np.dtype(DATATYPES[datatype])
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput(
                f"'binary_data_size' must be a whole number of bytes, got {json_type(size)}"
            )
        if size != len(binary):
            raise BadRequest(
                f"input {INPUT!r} declares binary_data_size {size}, but {len(binary)} bytes "
                "follow the JSON header",
                code="invalid_binary_data",
            )
        if size != count * dtype.itemsize:
            raise InvalidInput(
                f"input {INPUT!r} of shape {tensor['shape']} and datatype {datatype} is "
                f"{count * dtype.itemsize} bytes, but binary_data_size is {size}",
                code="invalid_binary_data",
            )
        if "data" in tensor:
            raise InvalidInput(f"input {INPUT!r} has both 'data' and binary_data_size")
        array = np.frombuffer(binary, dtype=dtype).reshape(n, N_FEATURES)
    else:
        if binary:
            raise BadRequest(
                f"{len(binary)} bytes follow the JSON header, but no input declares "
                "binary_data_size",
                code="invalid_binary_data",
            )
        array = _data(tensor.get("data"), count, booleans=booleans).reshape(n, N_FEATURES)
        array = check_values(array)  # before the whole-number rule: NaN is not "a fraction"
        if dtype.kind in "iu" and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
            raise InvalidInput(
                f"input {INPUT!r} is {datatype}, but 'data' holds numbers that are not whole"
            )
        return array
    return check_values(array)


def _batch(shape: Any, limits: Limits) -> int:
    """N, from a shape of [N, 784] or [N, 28, 28], within the batch limit."""
    if not isinstance(shape, list):
        raise InvalidInput(f"input {INPUT!r}: 'shape' must be {SHAPES}, got {json_type(shape)}")
    odd = [d for d in shape if not isinstance(d, int) or isinstance(d, bool)]
    if odd:  # named by json_type, never repr'd: a nested list may be 1,000 deep
        raise InvalidInput(
            f"input {INPUT!r}: 'shape' must be {SHAPES}, whole numbers, got {json_type(odd[0])} "
            "in it"
        )
    shown = str(shape)[:80] if len(shape) <= 4 else f"an array of {len(shape)} dimensions"
    if len(shape) not in (2, 3) or list(shape[1:]) not in ([N_FEATURES], list(IMAGE_SHAPE)):
        raise InvalidInput(f"input {INPUT!r}: 'shape' must be {SHAPES}, got {shown}")
    n = shape[0]
    if n < 1:
        raise InvalidInput(f"input {INPUT!r}: shape {shown} holds no image")
    inputs.check_batch_size(n, limits.max_batch)
    return int(n)


def _data(data: Any, count: int, *, booleans: bool) -> inputs.Pixels:
    """The JSON ``data`` (flat or nested, row-major) as a flat array of ``count`` values."""
    if not isinstance(data, list):
        raise InvalidInput(
            f"input {INPUT!r} needs 'data' (an array of {count} numbers) or binary_data_size, "
            f"got {json_type(data) if data is not None else 'neither'}"
        )
    if booleans and _holds_boolean(data):
        raise InvalidInput(f"input {INPUT!r}: 'data' must hold numbers only, not true or false")
    if len(data) == count:  # flat: whole numbers 0..255 convert in C, as /predict's do
        try:
            return np.frombuffer(bytes(data), dtype=np.uint8)
        except (TypeError, ValueError):  # a float, a nested list, a value outside 0..255
            pass
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"input {INPUT!r}: 'data' is not a rectangular array of numbers"
        ) from None
    if array.dtype.kind not in "iuf" or array.dtype == np.bool_:
        raise InvalidInput(f"input {INPUT!r}: 'data' must hold numbers only")
    if array.size != count:
        raise InvalidInput(
            f"input {INPUT!r}: its shape holds {count} values, but 'data' has {array.size}"
        )
    return array.reshape(-1)  # float64 stays: a value past float32's range is named as sent


def _holds_boolean(data: list[Any]) -> bool:
    stack = [data]
    while stack:
        for value in stack.pop():
            if type(value) is bool:
                return True
            if type(value) is list:
                stack.append(value)
    return False


def _outputs(requested: Any, binary_output: bool) -> tuple[Output, ...]:
    if requested is None:
        return ()
    if not isinstance(requested, list) or not requested:
        raise InvalidInput(f"'outputs' must be a non-empty array, got {json_type(requested)}")
    outputs = []
    for item in requested:
        output = _named(item, "output", OUTPUTS)
        name = output["name"]
        parameters = _object(output.get("parameters"), f"output {name!r}'s 'parameters'")
        binary = _flag(parameters.get("binary_data", binary_output), "binary_data")
        k = parameters.get("classification")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise InvalidInput(
                f"parameter 'classification' must be a whole number of at least 1, got "
                f"{json_type(k)}",
                code="invalid_parameter",
            )
        if k is not None and name != OUTPUT:
            raise InvalidInput(
                f"parameter 'classification' applies to {OUTPUT!r}, not {name!r}",
                code="invalid_parameter",
            )
        outputs.append(Output(name, binary, k))
    return tuple(outputs)
