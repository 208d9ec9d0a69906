"""Wire types: request bodies pydantic validates, and response shapes for the OpenAPI docs.

/predict bodies are not validated by pydantic (see service.inputs: NumPy checks a whole batch at
once); `PredictJSON` only documents them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from service.modelstore import VERSION_PATTERN

__all__ = [
    "ActivateRequest",
    "ErrorResponse",
    "PredictJSON",
    "PredictResponse",
    "TrainRequest",
    "link",
    "predict_openapi",
]

_EXAMPLE_PIXELS: list[JsonValue] = [0] * 784


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_pixels"])
    message: str = Field(examples=["expected 784 pixels, got 783"])
    details: Any = None


class ErrorResponse(BaseModel):
    """Every error, whatever its status, has this shape."""

    error: ErrorDetail


class PredictJSON(BaseModel):
    """One image as ``pixels`` (784 numbers, or 28 rows of 28), or a batch as ``images``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"pixels": _EXAMPLE_PIXELS}]}
    )

    pixels: list[float] | list[list[float]] | None = Field(
        None, description="784 intensities 0..255, row-major, or 28 lists of 28"
    )
    images: list[list[float] | list[list[float]]] | None = Field(
        None, description="A batch of images, each as `pixels` is (up to SOFTSERVE_MAX_BATCH)"
    )


class TopK(BaseModel):
    label: int
    class_name: str
    probability: float


class Prediction(BaseModel):
    label: int = Field(examples=[9])
    class_name: str = Field(examples=["Ankle boot"])
    probabilities: list[float] | None = Field(
        None, description="softmax models: one probability per class, in label order"
    )
    probability: float | None = Field(
        None, description="binary models: probability of the positive class"
    )
    top_k: list[TopK] | None = Field(None, description="with ?top_k=k: the k likeliest classes")


class PredictResponse(BaseModel):
    model: str = Field(examples=["softmax"])
    version: str = Field(examples=["20261122T045742Z-1f3a1006"])
    predictions: list[Prediction]


def _whole(value: Any) -> Any:
    """47.0 is the integer 47, as JSON Schema's "integer" says; 47.5 stays a float and fails."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


class TrainRequest(BaseModel):
    """Hyper-parameters for one training job; anything left out takes the trainer's default."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"model": "softmax", "epochs": 5, "seed": 1}]},
    )

    model: Literal["softmax", "binary"] = "softmax"
    epochs: WholeNumber | None = Field(
        None, ge=1, le=1000, description="passes over the training split"
    )
    batch_size: WholeNumber | None = Field(None, ge=1, le=65536)
    learning_rate: float | None = Field(None, gt=0, le=100, allow_inf_nan=False)
    l2: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    seed: WholeNumber | None = Field(None, ge=0, le=2**32 - 1)
    positive: list[str | int] | None = Field(
        None, min_length=1, max_length=100, description="binary: positive class names or indices"
    )
    negative: list[str | int] | None = Field(
        None, max_length=100, description="binary: negative classes (default: all the others)"
    )
    force: bool = Field(False, description="promote even if test accuracy is worse")


class ActivateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"version": "20261122T045742Z-1f3a1006"}]},
    )

    version: str = Field(pattern=VERSION_PATTERN, max_length=80)


def predict_openapi() -> dict[str, Any]:
    """The request-body part of the /predict docs: every content type it reads."""
    image = {"schema": {"type": "string", "format": "binary"}}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": PredictJSON.model_json_schema(
                        ref_template="#/components/schemas/{model}"
                    ),
                    "examples": {
                        "one image": {"value": {"pixels": _EXAMPLE_PIXELS}},
                        "a batch": {"value": {"images": [_EXAMPLE_PIXELS, _EXAMPLE_PIXELS]}},
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
    }


def link(path: str, method: str, body: Any = None, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link: which values of a response another operation takes (``$response.body#/x``
    expressions), so clients and schemathesis's stateful tests can follow one call with the next."""
    ref = "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method
    return {"operationRef": ref, "parameters": parameters} | (
        {"requestBody": body} if body is not None else {}
    )
