"""The pipeline's prediction as a V2 inference response: JSON, or a JSON header followed by the
binary data of the outputs that asked for it, compressed when the client accepts it.

Outputs: ``probabilities``, FP32 [N, K] (K = 1 for a binary model: the positive class), or with
``parameters.classification: k`` BYTES [N, k] of ``"value:index:label"``, likeliest first, as
Triton's classification extension writes them; and the out-of-distribution assessment
(`service.trust`), when the images were assessed: ``ood_score`` FP32 [N, 1] and ``ood_flag``
BOOL [N, 1]. A request that names no output gets all of them.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from service.errors import InvalidInput
from service.fastpath import Reply
from service.predicting import JSON, RAW, Prediction
from service.v2 import encoding
from service.v2.tensors import OOD_SCORE, OUTPUT, OUTPUTS, InferRequest, Output

__all__ = ["HEADER_LENGTH", "render"]

HEADER_LENGTH = "inference-header-content-length"
_JSON_TYPE = (b"content-type", JSON.encode())
_BINARY_TYPE = (b"content-type", RAW.encode())


def render(prediction: Prediction, request: InferRequest, accept_encoding: str | None) -> Reply:
    served = prediction.served
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for output in request.outputs or _every_output(prediction, request.binary_output):
        tensor, blob = _output(prediction, output)
        outputs.append(tensor)
        if blob is not None:
            blobs.append(blob)
    doc: dict[str, Any] = {"model_name": served.name, "model_version": served.version}
    if request.id is not None:
        doc["id"] = request.id
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if blobs:
        headers = [_BINARY_TYPE, (HEADER_LENGTH.encode(), str(len(header)).encode())]
        body = b"".join([header, *blobs])
    else:
        headers, body = [_JSON_TYPE], header
    chosen = encoding.preferred(accept_encoding)
    if chosen is not None and len(body) >= encoding.MIN_COMPRESSED:
        body = encoding.compress(body, chosen)
        headers.append((b"content-encoding", chosen.encode()))
    return Reply(headers, body, (served.name, served.version, len(prediction)))


def _every_output(prediction: Prediction, binary: bool) -> tuple[Output, ...]:
    """What a request that names no output gets: the probabilities, and the assessment when the
    images were assessed."""
    names = OUTPUTS if prediction.assessment is not None else (OUTPUT,)
    return tuple(Output(name, binary) for name in names)


def _output(prediction: Prediction, output: Output) -> tuple[dict[str, Any], bytes | None]:
    n = len(prediction)
    if output.name != OUTPUT:
        return _assessed(prediction, output)
    if output.classification is None:
        table = prediction.proba.reshape(n, -1)
        tensor: dict[str, Any] = {"name": output.name, "datatype": "FP32", "shape": table.shape}
        if output.binary:
            data = np.ascontiguousarray(table, "<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            return tensor, data
        tensor["data"] = table.reshape(-1)
        return tensor, None
    labels = _classified(prediction, output.classification)
    k = len(labels) // n
    tensor = {"name": output.name, "datatype": "BYTES", "shape": [n, k]}
    if output.binary:  # each element: its length as 4 little-endian bytes, then the bytes
        data = b"".join(struct.pack("<I", len(b)) + b for b in (s.encode() for s in labels))
        tensor["parameters"] = {"binary_data_size": len(data)}
        return tensor, data
    tensor["data"] = labels
    return tensor, None


def _assessed(prediction: Prediction, output: Output) -> tuple[dict[str, Any], bytes | None]:
    """``ood_score`` FP32 [N, 1] or ``ood_flag`` BOOL [N, 1]: 422 if not assessed."""
    assessment = prediction.assessment
    if assessment is None:
        raise InvalidInput(
            f"output {output.name!r} is not available for model {prediction.served.name!r}: "
            f"{prediction.no_assessment}",
            code="invalid_output",
        )
    if output.name == OOD_SCORE:
        values: NDArray[Any] = assessment.score_array().astype("<f4").reshape(-1, 1)
        datatype = "FP32"
    else:
        values, datatype = assessment.flag_array().reshape(-1, 1), "BOOL"
    tensor: dict[str, Any] = {"name": output.name, "datatype": datatype, "shape": values.shape}
    if output.binary:
        data = np.ascontiguousarray(values).tobytes()  # BOOL: one byte each
        tensor["parameters"] = {"binary_data_size": len(data)}
        return tensor, data
    tensor["data"] = values.reshape(-1)
    return tensor, None


def _classified(prediction: Prediction, k: int) -> list[str]:
    """The k likeliest classes of each image, row-major, as ``"value:index:label"``."""
    table, names = prediction.table, prediction.served.class_names
    ranked = prediction.ranked(k)
    return [
        f"{table[row, index]:f}:{index}:{names[index]}"
        for row, indices in enumerate(ranked.tolist())
        for index in indices
    ]
