"""The V2 wire types, as the Open Inference Protocol's REST specification names them (with a V2
prefix here, beside our own API's): the metadata and health answers (response models), and the
inference request and response, which `service.v2.tensors` and `service.v2.answer` read and
write without pydantic (its per-value checks cost more than the prediction) and which these
models document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service import examples
from service.v2.tensors import DATATYPES, INPUT, OUTPUT, OUTPUTS, SHAPES

__all__ = [
    "V2Error",
    "V2InferenceRequest",
    "V2InferenceResponse",
    "V2Live",
    "V2ModelMetadata",
    "V2ModelReady",
    "V2Ready",
    "V2RequestInput",
    "V2RequestOutput",
    "V2ResponseOutput",
    "V2ServerMetadata",
    "V2Tensor",
]


def _shown(example: dict[str, Any], *, extra: bool = False) -> ConfigDict:
    """A model's config with its OpenAPI example; ``extra``: the schema allows unknown fields, as
    V2 says of a request (the parser ignores them)."""
    return ConfigDict(
        extra="allow" if extra else "ignore", json_schema_extra={"examples": [example]}
    )


class V2Error(BaseModel):
    model_config = _shown({"error": "image 0, pixel 783: value 256 is outside 0..255"})
    error: str = Field(description="what is wrong, as our own API's message says it")


class V2ServerMetadata(BaseModel):
    model_config = _shown(examples.V2_SERVER)
    name: str
    version: str
    extensions: list[str]


class V2Live(BaseModel):
    model_config = _shown({"live": True})
    live: bool


class V2Ready(BaseModel):
    model_config = _shown({"ready": True})
    ready: bool


class V2ModelReady(BaseModel):
    model_config = _shown({"name": "softmax", "ready": True})
    name: str
    ready: bool


class V2Tensor(BaseModel):
    """A tensor's metadata."""

    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    model_config = _shown(examples.V2_MODEL)
    name: str
    versions: list[str] = Field(description="every kept version, newest first")
    platform: str
    inputs: list[V2Tensor]
    outputs: list[V2Tensor]


class V2RequestInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(description=f"{INPUT!r}, the one input", examples=[INPUT])
    shape: list[int] = Field(description=SHAPES, examples=[[1, 784]])
    datatype: str = Field(
        description="UINT8, or any integer or float type whose values lie within 0..255",
        json_schema_extra={"enum": list(DATATYPES)},
    )
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_size: bytes of this tensor after the JSON header"
    )
    data: list[Any] | None = Field(
        None, description="the values, flat or nested, row-major (or binary data instead)"
    )


class V2RequestOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(
        description=f"one of {', '.join(OUTPUTS)} (the last two when the model is assessed)",
        examples=[OUTPUT],
    )
    parameters: dict[str, Any] | None = Field(
        None,
        description="binary_data: true for binary data; classification: k for the k likeliest "
        'classes as BYTES "value:index:label"',
    )


class V2InferenceRequest(BaseModel):
    model_config = _shown(examples.V2_REQUEST, extra=True)
    id: str | None = Field(None, description="echoed in the response")
    parameters: dict[str, Any] | None = Field(
        None,
        description='binary_data_output: true for every output as binary data; scale: "unit" '
        "for pixels scaled to 0..1; strict: true to refuse images flagged as unlike the "
        "training data",
    )
    inputs: list[V2RequestInput] = Field(min_length=1, max_length=1)
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(None, description="flat, row-major; absent for binary data")


class V2InferenceResponse(BaseModel):
    model_config = _shown(examples.V2_RESPONSE)
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[V2ResponseOutput]
