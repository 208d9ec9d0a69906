"""The floor: the fastest honest ``POST /predict``, a bare ASGI app with no framework.

    uvicorn bench._floor:app

It does the work the service's prediction must do and nothing else: read the body, parse it
(``{"pixels": [784 numbers]}`` as JSON, or N x 784 raw uint8 bytes as application/octet-stream),
check the shape and the 0..255 range, score with ``trainer.linear.predict_proba`` on the artifact
``trainer.artifacts.load`` returns for ``$SOFTSERVE_MODEL_DIR/softmax.npz`` (default ``models``),
and answer in the service's JSON shape (or, asked with ``Accept: application/octet-stream``, as
raw float32 probabilities, as the service does). No routing beyond one path, no settings, no
logging, no middleware: `bench.serve` measures the service against this.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from trainer import artifacts
from trainer.artifacts import Artifact
from trainer.contract import N_FEATURES, PIXEL_MAX
from trainer.linear import pixels_to_features, predict_proba

__all__ = ["app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODEL = "softmax"
JSON_HEADERS = [(b"content-type", b"application/json")]
RAW_HEADERS = [(b"content-type", b"application/octet-stream")]
_loaded: list[Artifact] = []  # filled at startup, or by the first request without a lifespan


def _model() -> Artifact:
    if not _loaded:
        folder = Path(os.environ.get("SOFTSERVE_MODEL_DIR", "models"))
        _loaded.append(artifacts.load(folder / f"{MODEL}.npz"))
    return _loaded[0]


def _pixels(body: bytes, content_type: bytes) -> NDArray[np.float32] | str:
    """(N, 784) features, or what is wrong with the request."""
    if content_type.startswith(b"application/octet-stream"):
        if not body or len(body) % N_FEATURES:
            return f"expected a multiple of {N_FEATURES} bytes, got {len(body)}"
        return pixels_to_features(np.frombuffer(body, np.uint8).reshape(-1, N_FEATURES))
    try:
        raw = np.asarray(orjson.loads(body)["pixels"], dtype=np.float32)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return f"expected {{'pixels': [{N_FEATURES} numbers]}}: {exc}"
    if raw.shape != (N_FEATURES,):
        return f"expected {N_FEATURES} pixels, got shape {raw.shape}"
    if not (raw.min() >= 0 and raw.max() <= PIXEL_MAX):  # also false for NaN
        return f"pixels must be in 0..{PIXEL_MAX}"
    return pixels_to_features(raw.reshape(1, N_FEATURES))


def _predict(model: Artifact, X: NDArray[np.float32]) -> bytes:
    proba = predict_proba("softmax", model.weights, model.bias, X)
    names = model.class_names
    labels = proba.argmax(axis=1).tolist()
    predictions = [{"label": label, "class_name": names[label], "probabilities": row}
                   for label, row in zip(labels, proba.tolist(), strict=True)]  # fmt: skip
    return orjson.dumps({"model": MODEL, "version": model.version, "predictions": predictions})


async def _reply(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = JSON_HEADERS
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _model()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":  # what bench.serve polls until the server answers
        await _reply(send, 200, b'{"status":"ok"}')
        return
    if scope["method"] != "POST" or scope["path"] != "/predict":
        await _reply(send, 404, b'{"error":"not found"}')
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    headers = dict(scope["headers"])
    X = _pixels(b"".join(chunks), headers.get(b"content-type", b"application/json"))
    if isinstance(X, str):
        await _reply(send, 422, orjson.dumps({"error": X}))
        return
    model = _model()
    if b"application/octet-stream" in headers.get(b"accept", b""):  # raw float32 probabilities
        proba = predict_proba("softmax", model.weights, model.bias, X)
        await _reply(send, 200, proba.astype("<f4").tobytes(), RAW_HEADERS)
        return
    await _reply(send, 200, _predict(model, X))
