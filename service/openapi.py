"""What ``/openapi.json`` says beyond the response models: the /predict bodies and answers
(which pydantic does not parse), examples, error statuses, and links between operations."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from service import examples
from service.modelstore import NAME_PATTERN
from service.predicting import MAX_TOP_K
from service.schemas import ErrorResponse, PredictJSON, PredictResponse
from service.v2.schemas import V2Error
from trainer.artifacts import VERSION_PATTERN

__all__ = ["body_schema", "errors", "link", "predict_docs", "v2_errors"]


def errors(statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """Error responses in the one shape, by status: ``errors({404: "Unknown model"})``."""
    return {
        status: {"model": ErrorResponse, "description": what} for status, what in statuses.items()
    }


def v2_errors(statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """Error responses under /v2, in V2's shape ``{"error": "<message>"}``, by status."""
    return {status: {"model": V2Error, "description": what} for status, what in statuses.items()}


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A request body's JSON schema with its nested models written in place: a body documented
    through ``openapi_extra`` has no components of its own for a ``$ref`` to point at."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def link(path: str, method: str, body: Any = None, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link: which values of a response another operation takes (``$response.body#/x``
    expressions), so clients and schemathesis's stateful tests can follow one call with the next."""
    ref = "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method
    return {"operationRef": ref, "parameters": parameters} | (
        {"requestBody": body} if body is not None else {}
    )


_PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/json": {"example": examples.PREDICTION},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "with Accept: application/octet-stream: the probabilities as "
                "little-endian float32, N x K row-major (binary models: K = 1, the positive "
                "class); headers X-Softserve-Model, -Version, -Shape ('N,K') and -Dtype, and "
                "X-Softserve-OOD-Flagged: the indices of the images flagged as unlike the "
                "training data ('0,7'; empty: none; absent: not assessed)",
            },
        }
    },
    **errors(
        {
            400: "Malformed JSON or multipart body",
            404: "Unknown model, or no such kept version",
            413: "Body, batch or image over its limit",
            415: "Unsupported or missing Content-Type",
            422: "Pixels of the wrong count, shape, type or range (the message names the image); "
            "a malformed version or query parameter",
        }
    ),
}
_PREDICT_DESCRIPTION = (
    "Classify 28x28 grayscale images (pixel intensities 0..255, a light item on a dark "
    'background as in Fashion-MNIST). Send JSON `{"pixels": [...784]}` (or 28 rows of 28) or '
    '`{"images": [[...], ...]}`, raw uint8 bytes (N x 784) as application/octet-stream, '
    "a PNG or JPEG (converted to grayscale, resized to 28x28 if needed), or multipart uploads "
    "of PNG/JPEG files. With `Accept: application/octet-stream` the answer is the "
    "probabilities alone as raw float32 (N x K), for bulk clients: label = argmax (softmax) or "
    "probability > 0.5 (binary). `?version=` answers with a kept version instead of the active "
    "one (GET /models/{name}/versions lists them)."
)
_MODEL = {
    "name": "model", "in": "query", "required": False,
    "description": "model name (default: softmax, or SOFTSERVE_DEFAULT_MODEL)",
    "schema": {"type": "string", "pattern": NAME_PATTERN},
}  # fmt: skip
_VERSION = {
    "name": "version", "in": "query", "required": False,
    "description": "a kept version of the model (default: the active one)",
    "schema": {"type": "string", "pattern": VERSION_PATTERN},
}  # fmt: skip
_SCALE = {
    "name": "scale", "in": "query", "required": False,
    "description": "unit: the pixels are scaled to 0..1 and are multiplied by 255 (without it, "
    "an image whose brightest pixel is above 0 and at most 1 is refused as looking so scaled)",
    "schema": {"type": "string", "enum": ["unit"]},
}  # fmt: skip
_STRICT = {
    "name": "strict", "in": "query", "required": False,
    "description": "true: refuse (422, code out_of_distribution) a request with any image the "
    "out-of-distribution assessment flags, naming it and why",
    "schema": {"type": "boolean"},
}  # fmt: skip
_TOP_K = {
    "name": "top_k", "in": "query", "required": False,
    "description": "also list the k likeliest classes (softmax models)",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
}  # fmt: skip


def _predict_body() -> dict[str, Any]:
    """The request body of /predict: every content type it reads."""
    image = {"schema": {"type": "string", "format": "binary"}}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": body_schema(PredictJSON),
                "examples": {
                    "one image": {"value": {"pixels": examples.PIXELS}},
                    "a batch": {"value": {"images": [examples.PIXELS, examples.PIXELS]}},
                },
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "N x 784 raw uint8 pixels, row-major: the fast path",
            },
            "image/png": image,
            "image/jpeg": image,
            "multipart/form-data": {
                "schema": {  # a form without a file is a 422
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                        }
                    },
                    "required": ["file"],
                }
            },
        },
    }


def predict_docs(*, named: bool) -> dict[str, Any]:
    """The route arguments that document /predict (``named``: /models/{name}/predict)."""
    parameters = [_VERSION, _TOP_K, _SCALE, _STRICT]
    if not named:
        parameters.insert(0, _MODEL)
    return {
        "response_model": PredictResponse,
        "responses": _PREDICT_RESPONSES,
        "openapi_extra": {"requestBody": _predict_body(), "parameters": parameters},
        "description": _PREDICT_DESCRIPTION,
    }
