"""POST /predict and /models/{name}/predict, as FastAPI routes: the documented interface.

service.fastpath answers most of these requests before FastAPI routes them; what reaches these
routes (multipart uploads) runs through the same service.predicting functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from service import inputs, predicting
from service.errors import BadRequest, InvalidInput, PayloadTooLarge
from service.schemas import ErrorResponse, PredictResponse, predict_openapi
from service.state import AppState, get_state

__all__ = ["router"]

router = APIRouter(tags=["predict"])

_EXAMPLE: dict[str, Any] = {
    "model": "softmax",
    "version": "20261122T045742Z-1f3a1006",
    "predictions": [
        {
            "label": 9,
            "class_name": "Ankle boot",
            "probabilities": [0.0, 0.0, 0.0, 0.0, 0.0, 0.01, 0.0, 0.03, 0.0, 0.96],
            "top_k": [{"label": 9, "class_name": "Ankle boot", "probability": 0.96}],
        }
    ],
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/json": {"example": _EXAMPLE},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "with Accept: application/octet-stream: the probabilities as "
                "little-endian float32, N x K row-major (binary models: K = 1, the positive "
                "class); headers X-Softserve-Model, -Version, -Shape ('N,K') and -Dtype",
            },
        }
    },
    **{
        status: {"model": ErrorResponse, "description": what}
        for status, what in (
            (400, "Malformed JSON or multipart body"),
            (404, "Unknown model"),
            (413, "Body, batch or image over its limit"),
            (415, "Unsupported or missing Content-Type"),
            (422, "Pixels of the wrong count, shape, type or range (the message names the image)"),
        )
    },
}
_DESCRIPTION = (
    "Classify 28x28 grayscale images (pixel intensities 0..255, a light item on a dark "
    'background as in Fashion-MNIST). Send JSON `{"pixels": [...784]}` (or 28 rows of 28) or '
    '`{"images": [[...], ...]}`, raw uint8 bytes (N x 784) as application/octet-stream, '
    "a PNG or JPEG (converted to grayscale, resized to 28x28 if needed), or multipart uploads "
    "of PNG/JPEG files. With `Accept: application/octet-stream` the answer is the "
    "probabilities alone as raw float32 (N x K), for bulk clients: label = argmax (softmax) or "
    "probability > 0.5 (binary)."
)
_TOP_K = {
    "name": "top_k", "in": "query", "required": False,
    "description": "also list the k likeliest classes (softmax models)",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
}  # fmt: skip
_MODEL = {
    "name": "model", "in": "query", "required": False,
    "description": "model name (default: softmax, or SOFTSERVE_DEFAULT_MODEL)",
    "schema": {"type": "string", "maxLength": 64},
}  # fmt: skip


def _doc(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    extra = predict_openapi()
    extra["parameters"] = parameters
    return {
        "response_model": PredictResponse,
        "responses": _RESPONSES,
        "openapi_extra": extra,
        "description": _DESCRIPTION,
    }


@router.post("/predict", summary="Classify images (?model= chooses)", **_doc([_MODEL, _TOP_K]))
async def predict(request: Request) -> Response:
    return await _predict(request, None)


@router.post(
    "/models/{name}/predict", summary="Classify images with the named model", **_doc([_TOP_K])
)
async def predict_named(request: Request, name: str) -> Response:
    return await _predict(request, name)


async def _predict(request: Request, name: str | None) -> Response:
    state = get_state(request)
    query = predicting.parse_query(request.url.query, named=name is not None)
    served = predicting.served_model(state, name, query)
    media = predicting.media_type(request.headers.get("content-type"))
    if media == predicting.MULTIPART:
        pixels = await _read_multipart(request, state)
    else:
        pixels = await predicting.read_pixels(media, await request.body(), state)
    raw = predicting.wants_raw(request.headers.get("accept"))
    reply = predicting.classify(state, served, pixels, query.top_k, raw=raw)
    return Response(reply.body, headers=dict(reply.headers))


async def _read_multipart(request: Request, state: AppState) -> inputs.Pixels:
    settings = state.settings
    try:
        form = await request.form(max_files=settings.max_batch, max_fields=settings.max_batch)
    except (MultiPartException, HTTPException) as e:
        # Starlette turns the parser's MultiPartException into HTTPException(400) inside an app.
        message = e.message if isinstance(e, MultiPartException) else str(e.detail)
        if message.startswith("Too many files"):
            raise PayloadTooLarge(
                f"more than {settings.max_batch} files: the batch limit is {settings.max_batch} "
                "images (SOFTSERVE_MAX_BATCH)",
                code="batch_too_large",
                details={"limit": settings.max_batch},
            ) from e
        raise BadRequest(f"malformed multipart body: {message}", code="invalid_multipart") from e
    try:
        images: list[inputs.Pixels] = []
        for field, value in form.multi_items():
            if not isinstance(value, UploadFile):
                raise InvalidInput(f"multipart field {field[:100]!r} is not a file upload")
            what = f"file {len(images)} ({(value.filename or field)[:100]!r})"
            data = await value.read()
            images.append(
                await run_in_threadpool(
                    inputs.from_image, data, max_pixels=settings.max_image_pixels, what=what
                )
            )
        if not images:
            raise InvalidInput("multipart body holds no files: upload PNG or JPEG files")
        return np.concatenate(images)
    finally:
        await form.close()
