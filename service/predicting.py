"""The prediction itself, shared by the FastAPI routes and the ASGI fast path.

Query, content type and body in; JSON bytes out, or a ServiceError naming the problem.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool

from service import inputs
from service.errors import InvalidInput, UnsupportedMediaType
from service.registry import Served
from service.state import AppState
from trainer import linear

__all__ = [
    "ACCEPTED",
    "JSON",
    "MULTIPART",
    "RAW",
    "PredictQuery",
    "Reply",
    "classify",
    "media_type",
    "parse_query",
    "read_pixels",
    "served_model",
    "wants_raw",
]

ACCEPTED = "application/json, application/octet-stream, image/png, image/jpeg, multipart/form-data"
MULTIPART = "multipart/form-data"
JSON = "application/json"
RAW = "application/octet-stream"
_INLINE_BYTES = 64 * 1024  # bigger JSON bodies are parsed in a thread, off the event loop
_MAX_TOP_K = 1000


class PredictQuery:
    __slots__ = ("model", "top_k")

    def __init__(self, model: str | None, top_k: int | None) -> None:
        self.model = model
        self.top_k = top_k


def parse_query(query: str, *, named: bool) -> PredictQuery:
    """``?model=NAME&top_k=K`` (``model`` only on /predict; the path names it otherwise)."""
    if not query:
        return PredictQuery(None, None)
    model: str | None = None
    top_k: int | None = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "model" and not named:
            model = value
        elif key == "top_k":
            if not (value.isascii() and value.isdigit() and 1 <= int(value) <= _MAX_TOP_K):
                raise InvalidInput(
                    f"top_k must be a whole number from 1 to {_MAX_TOP_K}, got {value[:40]!r}",
                    code="invalid_parameter",
                )
            top_k = int(value)
        else:
            allowed = "top_k" if named else "model, top_k"
            raise InvalidInput(
                f"unknown query parameter {key[:40]!r}: expected {allowed}",
                code="invalid_parameter",
            )
    return PredictQuery(model, top_k)


def media_type(header: str | None) -> str:
    if not header:
        raise UnsupportedMediaType(f"missing Content-Type: send one of {ACCEPTED}")
    return header.partition(";")[0].strip().lower()


async def read_pixels(media: str, body: bytes, state: AppState) -> inputs.Pixels:
    """Pixels from a non-multipart body of the given media type."""
    settings = state.settings
    if media == JSON:
        if len(body) <= _INLINE_BYTES:
            return inputs.from_json(body, max_batch=settings.max_batch)[0]
        return (await run_in_threadpool(inputs.from_json, body, max_batch=settings.max_batch))[0]
    if media == RAW:
        return inputs.from_raw(body, max_batch=settings.max_batch)
    if media in ("image/png", "image/jpeg"):
        return await run_in_threadpool(
            inputs.from_image, body, max_pixels=settings.max_image_pixels
        )
    raise UnsupportedMediaType(f"unsupported Content-Type {media[:100]!r}: send one of {ACCEPTED}")


def served_model(state: AppState, path_name: str | None, query: PredictQuery) -> Served:
    """The model named in the path, else by ``?model=``, else the default one."""
    name = path_name if path_name is not None else query.model
    served = state.registry.get(state.settings.default_model if name is None else name)
    if query.top_k is not None and served.kind != "softmax":
        raise InvalidInput(
            f"top_k applies to softmax models; {served.name!r} is {served.kind}",
            code="invalid_parameter",
        )
    return served


class Reply(NamedTuple):
    body: bytes
    headers: list[tuple[str, str]]  # content-type first


def wants_raw(accept: str | None) -> bool:
    """``Accept: application/octet-stream`` asks for probabilities as raw float32."""
    return accept is not None and RAW in accept.lower()


def classify(
    state: AppState, served: Served, pixels: inputs.Pixels, top_k: int | None, *, raw: bool
) -> Reply:
    """Score and render: JSON, or with ``raw`` the (N, K) float32 probabilities as bytes."""
    if raw and top_k is not None:
        raise InvalidInput(
            "top_k applies to JSON responses, not raw ones", code="invalid_parameter"
        )
    labels, proba = linear.predict(
        served.kind, served.weights, served.bias, linear.pixels_to_features(pixels)
    )
    state.telemetry.predicted(served.name, len(labels))
    if not raw:
        return Reply(_render(served, labels, proba, top_k), [("content-type", JSON)])
    table = np.ascontiguousarray(proba.reshape(len(labels), -1), dtype="<f4")
    return Reply(
        table.tobytes(),
        [
            ("content-type", RAW),
            ("x-softserve-model", served.name),
            ("x-softserve-version", served.version),
            ("x-softserve-shape", f"{table.shape[0]},{table.shape[1]}"),
            ("x-softserve-dtype", "<f4"),
        ],
    )


def _render(served: Served, labels: Any, proba: Any, top_k: int | None) -> bytes:
    names = served.class_names
    label_list: list[int] = labels.tolist()
    predictions: list[dict[str, Any]]
    if served.kind == "binary":
        predictions = [
            {"label": label, "class_name": names[label], "probability": p}
            for label, p in zip(label_list, proba.tolist(), strict=True)
        ]
    else:
        predictions = [
            {"label": label, "class_name": names[label], "probabilities": row}
            for label, row in zip(label_list, proba, strict=True)
        ]
        if top_k is not None:
            k = min(top_k, proba.shape[1])
            order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
            for prediction, row, idx in zip(predictions, proba, order.tolist(), strict=True):
                # row[i] stays float32 so it prints exactly as it does in "probabilities".
                prediction["top_k"] = [
                    {"label": i, "class_name": names[i], "probability": row[i]} for i in idx
                ]
    return orjson.dumps(
        {"model": served.name, "version": served.version, "predictions": predictions},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
