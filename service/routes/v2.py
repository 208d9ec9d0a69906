"""The Open Inference Protocol (V2 REST) under /v2: health, server and model metadata, readiness,
and inference, through the one prediction pipeline (`service.predicting`).

Every model endpoint also answers with ``/versions/{version}`` after the model name: a kept
version, served as ``?version=`` serves it on /predict. Inference has twins on the fast path
(`FAST_ROUTES`), as /predict has; the FastAPI routes answer the same way when the fast path is
off (CORS).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from service import __version__, inputs
from service.edge import PREDICTION
from service.fastpath import FastRequest, FastRoute, Reply
from service.openapi import body_schema, v2_errors
from service.predicting import (
    JSON,
    NOTHING_DECLARED,
    RAW,
    Declared,
    Limits,
    Predictor,
    PredictRequest,
    off_the_loop_if_large,
)
from service.routes.health import unready
from service.state import get_state
from service.v2 import answer, encoding, tensors
from service.v2.schemas import (
    V2InferenceRequest,
    V2InferenceResponse,
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
)
from trainer.contract import N_FEATURES

__all__ = ["EXTENSIONS", "FAST_ROUTES", "PLATFORM", "router"]

router = APIRouter(prefix="/v2", tags=["v2"])

PLATFORM = "softserve_linear"
EXTENSIONS = ["binary_tensor_data", "classification"]
_MODEL = "/models/{name}"
_VERSION = "/models/{name}/versions/{version}"
_MODEL_ERRORS = v2_errors(
    {404: "Unknown model", 422: "Invalid request", 503: "The model is not loaded"}
)
_VERSION_ERRORS = v2_errors(
    {404: "Unknown model, or no such kept version", 422: "A malformed version",
     503: "The model is not loaded"}
)  # fmt: skip


@router.get("", summary="V2 server metadata", response_model=V2ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    return {"name": "softserve", "version": __version__, "extensions": EXTENSIONS}


router.add_api_route("/", server_metadata, methods=["GET"], include_in_schema=False)


@router.get("/health/live", summary="V2 liveness", response_model=V2Live)
async def live() -> dict[str, Any]:
    return {"live": True}


@router.get(
    "/health/ready",
    summary="V2 readiness: 503 with ready false until every required model is loaded",
    response_model=V2Ready,
    responses={503: {"model": V2Ready, "description": "Not ready"}},
)
async def ready(request: Request) -> Response:
    ok = unready(get_state(request)) is None
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get(_MODEL, summary="V2 model metadata", response_model=V2ModelMetadata,
            responses=_MODEL_ERRORS)  # fmt: skip
async def model_metadata(request: Request, name: str) -> dict[str, Any]:
    return await _metadata(request, name, None)


@router.get(_VERSION, summary="V2 model version metadata", response_model=V2ModelMetadata,
            responses=_VERSION_ERRORS)  # fmt: skip
async def version_metadata(request: Request, name: str, version: str) -> dict[str, Any]:
    return await _metadata(request, name, version)


@router.get(f"{_MODEL}/ready", summary="V2 model readiness", response_model=V2ModelReady,
            responses=_MODEL_ERRORS)  # fmt: skip
async def model_ready(request: Request, name: str) -> dict[str, Any]:
    served = await get_state(request).predictor.model(name, None)
    return {"name": served.name, "ready": True}


@router.get(f"{_VERSION}/ready", summary="V2 model version readiness",
            response_model=V2ModelReady, responses=_VERSION_ERRORS)  # fmt: skip
async def version_ready(request: Request, name: str, version: str) -> dict[str, Any]:
    served = await get_state(request).predictor.model(name, version)
    return {"name": served.name, "ready": True}


async def _metadata(request: Request, name: str, version: str | None) -> dict[str, Any]:
    state = get_state(request)
    served = await state.predictor.model(name, version)  # a malformed version: the registry's 422
    kept = set(await run_in_threadpool(state.models.versions, name))
    kept |= {served.version, state.registry.get(name).version}
    classes = served.weights.shape[1]  # binary: 1, the positive class
    outputs = [{"name": tensors.OUTPUT, "datatype": "FP32", "shape": [-1, classes]}]
    if served.detector is not None and state.predictor.assess:
        outputs += [
            {"name": tensors.OOD_SCORE, "datatype": "FP32", "shape": [-1, 1]},
            {"name": tensors.OOD_FLAG, "datatype": "BOOL", "shape": [-1, 1]},
        ]
    return {
        "name": served.name,
        "versions": sorted(kept, reverse=True),
        "platform": PLATFORM,
        "inputs": [{"name": tensors.INPUT, "datatype": "UINT8", "shape": [-1, N_FEATURES]}],
        "outputs": outputs,
    }


_HEADER_LENGTH = answer.HEADER_LENGTH.encode()


class _Tensors:
    """The payload of a V2 inference request: decoded and parsed when the pipeline asks for its
    pixels (after the model is found), and kept for the answer."""

    __slots__ = ("parsed", "request")

    def __init__(self, request: FastRequest) -> None:
        self.request = request
        self.parsed: tensors.InferRequest | None = None

    @property
    def declared(self) -> Declared:
        return self.parsed.declared if self.parsed is not None else NOTHING_DECLARED

    async def pixels(self, limits: Limits) -> inputs.Pixels:
        body = await self.request.body()
        coding = self.request.header(b"content-encoding")
        if coding is not None:  # inflated off the event loop
            body = await run_in_threadpool(
                encoding.decompress, body, coding.decode("latin-1"), limits.max_body_bytes
            )
        header, binary = tensors.split(body, self.request.header(_HEADER_LENGTH))
        self.parsed = await off_the_loop_if_large(
            lambda text: tensors.parse(text, binary, limits), header
        )
        return self.parsed.pixels


async def _infer(predictor: Predictor, request: FastRequest) -> Reply:
    version = request.params.get("version")
    payload = _Tensors(request)
    prediction = await predictor.predict(PredictRequest(request.params["name"], version), payload)
    assert payload.parsed is not None  # the pipeline read the pixels
    accept = request.header(b"accept-encoding")
    return answer.render(
        prediction, payload.parsed, None if accept is None else accept.decode("latin-1")
    )


_INFER_DOCS: dict[str, Any] = {
    "response_model": V2InferenceResponse,
    "responses": {
        200: {
            "content": {
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                    "description": "when an output asks for binary data: the JSON response "
                    "(Inference-Header-Content-Length bytes), then each binary output's data",
                }
            }
        },
        **v2_errors(
            {
                400: "Malformed JSON, header length, binary data or compressed body",
                404: "Unknown model, or no such kept version",
                413: "Body (also once decompressed) or batch over its limit",
                415: "Unsupported Content-Encoding",
                422: "A tensor of the wrong name, datatype, shape or values (0..255)",
                503: "The model is not loaded",
            }
        ),
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {"schema": body_schema(V2InferenceRequest)},
                RAW: {
                    "schema": {"type": "string", "format": "binary"},
                    "description": "the JSON request (Inference-Header-Content-Length bytes), "
                    "then the input's binary data (binary_data_size bytes)",
                },
            },
        }
    },
    "description": "Classify images sent as one tensor, `pixels` ([N, 784] or [N, 28, 28]). "
    "The Inference-Header-Content-Length header, never Content-Type, says whether binary data "
    "follows the JSON. gzip and deflate both ways (Content-Encoding, Accept-Encoding).",
}


@router.post(f"{_MODEL}/infer", summary="V2 inference", **_INFER_DOCS)
async def infer(request: Request, name: str) -> Response:
    return await _framework_infer(request)


@router.post(f"{_VERSION}/infer", summary="V2 inference with a kept version", **_INFER_DOCS)
async def infer_version(request: Request, name: str, version: str) -> Response:
    return await _framework_infer(request)


async def _framework_infer(request: Request) -> Response:
    """The fast path's handler, on the request as FastAPI has it (with CORS on)."""
    predictor = get_state(request).predictor
    fast = FastRequest(
        dict(request.path_params), request.scope["query_string"], None, None, request.receive,
        predictor.limits.max_body_bytes, request.scope["headers"],
    )  # fmt: skip
    reply = await _infer(predictor, fast)
    request.scope[PREDICTION] = reply.prediction  # for the access line
    response = Response(reply.body)
    response.raw_headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
    return response


FAST_ROUTES = (
    FastRoute("POST", f"/v2{_MODEL}/infer", _infer),
    FastRoute("POST", f"/v2{_VERSION}/infer", _infer),
)
