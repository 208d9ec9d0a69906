"""POST /predict without the framework: a plain ASGI layer in front of FastAPI.

FastAPI's routing and dependency solving cost ~250 us a request here, more than parsing and
scoring an image; this layer answers the prediction routes itself, through the same functions
the FastAPI routes use (service.predicting), and hands everything else on, including multipart
uploads (which need Starlette's form parser) and requests before startup.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import predicting
from service.errors import ServiceError, error_body
from service.state import AppState

__all__ = ["ROUTE_KEY", "FastPredict"]

log = logging.getLogger("softserve.predict")

ROUTE_KEY = "softserve.route"  # the route label EdgeMiddleware records for requests answered here
_NAMED = re.compile(r"^/models/([^/]+)/predict$")
_JSON = [(b"content-type", b"application/json")]


class FastPredict:
    def __init__(self, app: ASGIApp, *, state: Callable[[], AppState | None]) -> None:
        self.app = app
        self.state = state

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
        content_type, accept = _headers(scope)
        if state is None or (content_type or "").lower().startswith(predicting.MULTIPART):
            await self.app(scope, receive, send)
            return
        scope[ROUTE_KEY] = "/predict" if name is None else "/models/{name}/predict"
        try:
            query = predicting.parse_query(
                scope["query_string"].decode("latin-1"), named=name is not None
            )
            served = predicting.served_model(state, name, query)
            media = predicting.media_type(content_type)
            pixels = await predicting.read_pixels(media, await _body(receive), state)
            raw = predicting.wants_raw(accept)
            reply = predicting.classify(state, served, pixels, query.top_k, raw=raw)
        except ServiceError as e:
            headers = [*_JSON, *((k.lower().encode(), v.encode()) for k, v in e.headers.items())]
            await _reply(send, e.status, e.body(), headers)
            return
        except Exception:
            log.exception("unhandled error on POST %s", path)
            message = "internal error; the server log has details"
            await _reply(send, 500, error_body("internal_error", message), _JSON)
            return
        headers = [(k.encode(), v.encode("latin-1")) for k, v in reply.headers]
        await _reply(send, 200, reply.body, headers)


def _headers(scope: Scope) -> tuple[str | None, str | None]:
    """Content-Type and Accept, in one pass over the headers."""
    content_type = accept = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value.decode("latin-1")
        elif key == b"accept":
            accept = value.decode("latin-1")
    return content_type, accept


async def _body(receive: Receive) -> bytes:
    message: Message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
