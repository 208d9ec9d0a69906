"""POST /predict without the framework: a plain ASGI layer in front of FastAPI.

FastAPI's routing and dependency solving cost ~250 us a request here, more than parsing and
scoring an image; this layer answers the prediction routes itself, through the same functions
the FastAPI routes use (service.predicting), and hands everything else on, including multipart
uploads (which need Starlette's form parser) and requests before startup. It sits outside
service.edge and does that layer's two jobs itself (the body-size limit and the request metrics),
as a wrapper around every send and receive costs more here than the checks do.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import predicting
from service.edge import too_large
from service.errors import PayloadTooLarge, ServiceError, error_body
from service.predicting import wants_raw
from service.state import AppState
from service.telemetry import Telemetry

__all__ = ["FastPredict"]

log = logging.getLogger("softserve.predict")

_NAMED = re.compile(r"^/models/([^/]+)/predict$")
_JSON = [(b"content-type", b"application/json")]


class FastPredict:
    def __init__(
        self,
        app: ASGIApp,
        *,
        state: Callable[[], AppState | None],
        max_body_bytes: int,
        telemetry: Telemetry,
    ) -> None:
        self.app = app
        self.state = state
        self.max_body_bytes = max_body_bytes
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        name: str | None = None
        if path != "/predict":
            match = _NAMED.match(path)
            if match is None:
                await self.app(scope, receive, send)
                return
            name = match.group(1)
        state = self.state()
        content_type, accept, declared = _headers(scope)
        if state is None or (content_type or "").lower().startswith(predicting.MULTIPART):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        try:
            status = await self._answer(
                scope, receive, send, state, name, content_type, accept, declared
            )
        finally:
            route = "/predict" if name is None else "/models/{name}/predict"
            self.telemetry.observe(route, "POST", status, time.perf_counter() - start)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        state: AppState,
        name: str | None,
        content_type: str | None,
        accept: str | None,
        declared: int | None,
    ) -> int:
        """Reply, and return the status sent."""
        try:
            if declared is not None and declared > self.max_body_bytes:
                raise too_large(declared, self.max_body_bytes)
            query = predicting.parse_query(
                scope["query_string"].decode("latin-1"), named=name is not None
            )
            served = predicting.served_model(state, name, query)
            media = predicting.media_type(content_type)
            body = await _body(receive, self.max_body_bytes)
            pixels = await predicting.read_pixels(media, body, state)
            reply = predicting.classify(state, served, pixels, query.top_k, raw=wants_raw(accept))
        except ServiceError as e:
            headers = [*_JSON, *((k.lower().encode(), v.encode()) for k, v in e.headers.items())]
            if isinstance(e, PayloadTooLarge):  # the rest of the body stays unread
                headers.append((b"connection", b"close"))
            await _reply(send, e.status, e.body(), headers)
            return e.status
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"])
            message = "internal error; the server log has details"
            await _reply(send, 500, error_body("internal_error", message), _JSON)
            return 500
        headers = [(k.encode(), v.encode("latin-1")) for k, v in reply.headers]
        await _reply(send, 200, reply.body, headers)
        return 200


def _headers(scope: Scope) -> tuple[str | None, str | None, int | None]:
    """Content-Type, Accept and Content-Length (None if absent or not a number), in one pass."""
    content_type = accept = None
    declared: int | None = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value.decode("latin-1")
        elif key == b"accept":
            accept = value.decode("latin-1")
        elif key == b"content-length":
            declared = int(value) if value.isdigit() else None
    return content_type, accept, declared


async def _body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused with 413 once it streams past ``limit``."""
    message: Message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:  # a chunked body that arrived whole before it was read
            raise too_large(None, limit)
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise too_large(None, limit)
    return b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
