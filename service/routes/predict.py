"""POST /predict and /models/{name}/predict: our own prediction API, on both transports.

The FastAPI routes are the documented interface; `FAST_ROUTES` are their twins on the fast path
(`service.fastpath`), which answers every request but multipart uploads before FastAPI routes it.
Both parse with `parse_request`, call the one pipeline (`service.predicting`) and answer with
`reply`, so the two cannot differ.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from service import inputs
from service.edge import PREDICTION
from service.errors import BadRequest, InvalidInput, PayloadTooLarge
from service.fastpath import FastRequest, FastRoute, Reply
from service.modelstore import StoreError, check_version
from service.openapi import predict_docs
from service.predicting import (
    MAX_TOP_K,
    NOTHING_DECLARED,
    RAW,
    Body,
    Limits,
    Prediction,
    Predictor,
    PredictRequest,
    is_multipart,
    json_ready,
)
from service.state import get_state

__all__ = ["FAST_ROUTES", "parse_request", "reply", "router"]

router = APIRouter(tags=["predict"])

_JSON_HEADERS = [(b"content-type", b"application/json")]
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
# a raw answer's flagged images, neighbours as ranges: "0,3-5" (empty: none)
OOD_FLAGGED = b"x-softserve-ood-flagged"


def parse_request(query: bytes | str, accept: str | None, *, named: str | None) -> PredictRequest:
    """``?model=NAME`` (on /predict only: ``named`` is the model the path names),
    ``?version=V``, ``?top_k=K`` and ``?scale=unit``; ``Accept: application/octet-stream`` asks
    for raw float32."""
    raw = accept is not None and RAW in accept.lower()
    if not query:
        return PredictRequest(named, None, None, raw)
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    model, version, top_k, unit, strict = named, None, None, False, False
    for key, value in parse_qsl(text, keep_blank_values=True):
        if key == "model" and named is None:
            model = value
        elif key == "version":
            try:
                version = check_version(value)
            except StoreError as e:
                raise InvalidInput(str(e), code="invalid_version") from None
        elif key == "top_k":
            if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_TOP_K):
                raise InvalidInput(
                    f"top_k must be a whole number from 1 to {MAX_TOP_K}, got {value[:40]!r}",
                    code="invalid_parameter",
                )
            top_k = int(value)
        elif key == "scale":
            if value != "unit":
                raise InvalidInput(
                    f"scale must be 'unit' (pixels scaled to 0..1), got {value[:40]!r}; leave it "
                    "out for intensities 0..255",
                    code="invalid_parameter",
                )
            unit = True
        elif key == "strict":
            if value not in _BOOLEANS:
                raise InvalidInput(
                    f"strict must be true or false, got {value[:40]!r}", code="invalid_parameter"
                )
            strict = _BOOLEANS[value]
        else:
            allowed = "version, top_k, scale, strict"
            allowed = allowed if named is not None else f"model, {allowed}"
            raise InvalidInput(
                f"unknown query parameter {key[:40]!r}: expected {allowed}",
                code="invalid_parameter",
            )
    return PredictRequest(model, version, top_k, raw, unit, strict)


def reply(prediction: Prediction, raw: bool) -> Reply:
    """JSON, or with ``raw`` the (N, K) float32 probabilities as bytes, with their shape in the
    headers (binary models: K = 1, the positive class)."""
    served = prediction.served
    what = (served.name, served.version, len(prediction))
    if not raw:
        body = orjson.dumps(json_ready(prediction), option=orjson.OPT_SERIALIZE_NUMPY)
        return Reply(_JSON_HEADERS, body, what)
    table = np.ascontiguousarray(prediction.proba.reshape(len(prediction), -1), "<f4")
    headers = [
        (b"content-type", RAW.encode()),
        (b"x-softserve-model", served.name.encode()),
        (b"x-softserve-version", served.version.encode()),
        (b"x-softserve-shape", f"{table.shape[0]},{table.shape[1]}".encode()),
        (b"x-softserve-dtype", b"<f4"),
    ]
    if prediction.assessment is not None:
        headers.append((OOD_FLAGGED, prediction.assessment.flagged_ranges().encode()))
    return Reply(headers, table.tobytes(), what)


async def _fast(predictor: Predictor, request: FastRequest) -> Reply | None:
    if is_multipart(request.content_type):
        return None  # Starlette's form parser, through the FastAPI route
    parsed = parse_request(request.query, request.accept, named=request.params.get("name"))
    prediction = await predictor.predict(parsed, Body(request.content_type, request.body))
    return reply(prediction, parsed.raw)


@router.post("/predict", summary="Classify images (?model= chooses)", **predict_docs(named=False))
async def predict(request: Request) -> Response:
    return await _predict(request, None)


@router.post(
    "/models/{name}/predict",
    summary="Classify images with the named model",
    **predict_docs(named=True),
)
async def predict_named(request: Request, name: str) -> Response:
    return await _predict(request, name)


FAST_ROUTES = (
    FastRoute("POST", "/predict", _fast),
    FastRoute("POST", "/models/{name}/predict", _fast),
)


async def _predict(request: Request, name: str | None) -> Response:
    predictor = get_state(request).predictor
    parsed = parse_request(request.url.query, request.headers.get("accept"), named=name)
    content_type = request.headers.get("content-type")
    payload: Body | _Multipart
    if is_multipart(content_type):
        payload = _Multipart(request)
    else:
        payload = Body(content_type, request.body)
    answer = reply(await predictor.predict(parsed, payload), parsed.raw)
    request.scope[PREDICTION] = answer.prediction  # for the access line
    return Response(answer.body, headers={k.decode(): v.decode() for k, v in answer.headers})


class _Multipart:
    """Multipart uploads of PNG or JPEG files, one image each (the payload of a form)."""

    declared = NOTHING_DECLARED

    def __init__(self, request: Request) -> None:
        self.request = request

    async def pixels(self, limits: Limits) -> inputs.Pixels:
        try:
            form = await self.request.form(max_files=limits.max_batch, max_fields=limits.max_batch)
        except (MultiPartException, HTTPException) as e:
            # Starlette turns the parser's MultiPartException into HTTPException(400) in an app.
            message = e.message if isinstance(e, MultiPartException) else str(e.detail)
            if message.startswith("Too many files"):
                raise PayloadTooLarge(
                    f"more than {limits.max_batch} files: the batch limit is {limits.max_batch} "
                    "images (SOFTSERVE_MAX_BATCH)",
                    code="batch_too_large",
                    details={"limit": limits.max_batch},
                ) from e
            raise BadRequest(
                f"malformed multipart body: {message}", code="invalid_multipart"
            ) from e
        try:
            images: list[inputs.Pixels] = []
            for field, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    raise InvalidInput(f"multipart field {field[:100]!r} is not a file upload")
                what = f"file {len(images)} ({(value.filename or field)[:100]!r})"
                data = await value.read()
                images.append(
                    await run_in_threadpool(
                        inputs.from_image, data, max_pixels=limits.max_image_pixels, what=what
                    )
                )
            if not images:
                raise InvalidInput("multipart body holds no files: upload PNG or JPEG files")
            return np.concatenate(images)
        finally:
            await form.close()
