"""Routes answered without the framework: a plain ASGI layer in front of FastAPI.

FastAPI's routing and dependency solving cost ~250 us a request here, more than parsing and
scoring an image. Each `FastRoute` is the twin of a documented FastAPI route: same method, same
path template compiled by the same Starlette function, and a handler that parses the request,
calls the prediction pipeline and renders its answer, as the route does. A handler may decline a
request before reading its body (multipart uploads need Starlette's form parser); it then goes to
FastAPI, as does everything else and every request before startup. This layer sits outside
`service.edge` and applies its rules with its functions (body limit, metrics, error rendering),
as a wrapper around every send and receive costs more here than the checks do.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.edge import (
    CLIENT_GONE,
    REPLICA,
    UNROUTED,
    ClientDisconnect,
    Observer,
    content_length,
    read_body,
    send_error,
    too_large,
)
from service.errors import ServiceError
from service.logs import request_id
from service.predicting import Predictor

__all__ = ["FastPath", "FastRequest", "FastRoute", "Reply"]

log = logging.getLogger("softserve.fastpath")


class Reply(NamedTuple):
    """A 200 answer: raw ASGI headers (content-type first) and the body; for the access log,
    the model, version and number of images of a prediction."""

    headers: list[tuple[bytes, bytes]]
    body: bytes
    prediction: tuple[str, str, int] | None = None


class FastRequest:
    """What a handler gets: the path's parameters, the headers most need, any other header by
    name, and the body on demand (read within the body limit)."""

    __slots__ = ("_limit", "_receive", "accept", "content_type", "headers", "params", "query")

    def __init__(
        self,
        params: dict[str, str],
        query: bytes,
        content_type: str | None,
        accept: str | None,
        receive: Receive,
        limit: int,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.params, self.query = params, query
        self.content_type, self.accept = content_type, accept
        self._receive, self._limit = receive, limit
        self.headers = headers  # raw ASGI headers, lowercase names

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lowercase), as Starlette reads it."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def body(self) -> bytes:
        return await read_body(self._receive, self._limit)


Handler = Callable[[Predictor, FastRequest], Awaitable[Reply | None]]


@dataclass(frozen=True)
class FastRoute:
    """A handler for ``method`` on ``path`` (a route template such as ``/models/{name}/predict``,
    also the label its requests are counted under)."""

    method: str
    path: str
    handler: Handler

    def pattern(self) -> re.Pattern[str]:
        return compile_path(self.path)[0]  # what Starlette's router matches the path with


class FastPath:
    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[FastRoute],
        *,
        predictor: Callable[[], Predictor | None],
        max_body_bytes: int,
        observer: Observer,
    ) -> None:
        self.app = app
        self.routes = [(route, route.pattern()) for route in routes]
        self.methods = frozenset(route.method for route in routes)
        self.predictor = predictor
        self.max_body_bytes = max_body_bytes
        self.observer = observer

    def match(self, method: str, path: str) -> tuple[FastRoute, dict[str, str]] | None:
        """The route answering ``method path`` here, with the path's parameters, or None."""
        if method in self.methods:
            for route, pattern in self.routes:
                found = pattern.match(path)
                if found is not None and route.method == method:
                    return route, found.groupdict()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        matched = self.match(scope["method"], scope["path"])
        predictor = self.predictor()
        if matched is None or predictor is None:
            await self.app(scope, receive, send)
            return
        route, params = matched
        started, start = time.time(), time.perf_counter()
        content_type = accept = length = given = None
        for key, value in scope["headers"]:  # the first of a repeated header, as Starlette reads
            if key == b"content-type":
                content_type = value.decode("latin-1") if content_type is None else content_type
            elif key == b"accept":
                accept = value.decode("latin-1") if accept is None else accept
            elif key == b"content-length" and length is None:
                length = value
            elif key == b"x-request-id" and given is None:
                given = value
        declared = None if length is None else content_length(length)
        request = FastRequest(
            params, scope["query_string"], content_type, accept, receive, self.max_body_bytes,
            scope["headers"],
        )  # fmt: skip
        status = 500
        label = route.path
        rid = request_id(given)
        prediction = error = None
        declined = False
        try:
            if declared is not None and declared > self.max_body_bytes:
                label = UNROUTED  # as the edge counts it: refused before any routing
                raise too_large(declared, self.max_body_bytes)
            reply = await route.handler(predictor, request)
            if reply is None:  # declined, before reading the body: the edge takes it all on
                declined = True
            else:
                headers = [
                    *reply.headers,
                    (b"content-length", str(len(reply.body)).encode()),
                    (b"x-request-id", rid.encode()),
                    (REPLICA, self.observer.replica),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": reply.body})
                status, prediction = 200, reply.prediction
        except ServiceError as e:
            status, error = e.status, e.code
            await send_error(send, e, rid, scope["path"], self.observer.replica)
        except ClientDisconnect:
            status = CLIENT_GONE  # nobody to answer
        except Exception:
            log.exception(
                "unhandled error on %s %s (request %s)", scope["method"], scope["path"], rid
            )
            failure = ServiceError("internal error; the server log has details")
            status, error = failure.status, failure.code
            await send_error(send, failure, rid, scope["path"], self.observer.replica)
        finally:
            if not declined:
                self.observer.finish(scope, label, status, started, start, rid, prediction, error)
        if declined:  # outside the handling above: whatever happens there is the edge's
            await self.app(scope, receive, send)
