"""The edge of the app: request ids, the body-size limit, request metrics and the access log, as
plain ASGI.

`EdgeMiddleware` applies them to every request that reaches FastAPI; the fast path
(`service.fastpath`) applies the same rules with the same functions to the requests it answers
itself: `content_length` (the one reading of the header), `read_body`, `too_large`, `send_error`,
`finish` (the metrics and the access line).
Plain ASGI, not BaseHTTPMiddleware: it adds a few microseconds per request, not a task and a
queue, which matters on a path that answers in well under a millisecond.
"""

from __future__ import annotations

import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, ServiceError, render_error
from service.logs import AccessLog, Request, request_id
from service.telemetry import Telemetry

__all__ = [
    "CLIENT_GONE",
    "ERROR",
    "PREDICTION",
    "REPLICA",
    "REQUEST_ID",
    "UNROUTED",
    "ClientDisconnect",
    "EdgeMiddleware",
    "Observer",
    "content_length",
    "read_body",
    "send_error",
    "too_large",
]

UNROUTED = "unmatched"  # the route label of a request answered before any route matched it
CLIENT_GONE = 499  # the status counted for a request whose client left before the answer
# What the layers below tell the edge through the request's scope, for the access line:
REPLICA = b"x-softserve-replica"  # the header naming the replica that answered (every response)
REQUEST_ID = "softserve.request_id"  # str: set by the edge, read by the error handlers
PREDICTION = "softserve.prediction"  # (model, version, images), set by a prediction route
ERROR = "softserve.error"  # the error code, set by the error handlers
_LOGGED_PATH = 500  # characters of a path an access line repeats: the line fits one write


def content_length(value: bytes) -> int | None:
    """A Content-Length header's value: ASCII digits only, else None (unknown: the body is
    counted as it arrives). The HTTP server refuses malformed ones before the app sees them."""
    return int(value) if value.isdigit() else None


def too_large(declared: int | None, limit: int, what: str = "request body") -> PayloadTooLarge:
    """413 for a body over the limit; the connection closes, as the rest is never read."""
    size = f"{declared} bytes" if declared is not None else f"over {limit} bytes"
    return PayloadTooLarge(
        f"{what} is {size}; the limit is {limit} bytes (SOFTSERVE_MAX_BODY_BYTES)",
        details={"limit": limit, "content_length": declared},
        headers={"Connection": "close"},
    )


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused with 413 once it passes ``limit`` bytes (checked as it streams,
    and also for a chunked body that arrived whole before it was read); ClientDisconnect if the
    client leaves first, as Starlette's Request.body raises."""
    message: Message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        if len(body) > limit:
            raise too_large(None, limit)
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise too_large(None, limit)
    return b"".join(chunks)


async def send_error(
    send: Send, error: ServiceError, request_id: str, path: str, replica: bytes
) -> None:
    rendered = render_error(error, request_id, path)
    headers = [
        *rendered.headers,
        (b"content-length", str(len(rendered.body)).encode()),
        (b"x-request-id", request_id.encode()),
        (REPLICA, replica),
    ]
    await send({"type": "http.response.start", "status": rendered.status, "headers": headers})
    await send({"type": "http.response.body", "body": rendered.body})


class Observer:
    """What every answered request leaves behind: its metrics and its access line."""

    def __init__(self, telemetry: Telemetry, access: AccessLog, replica: str) -> None:
        self.telemetry, self.access = telemetry, access
        self.replica = replica.encode()  # every response says which replica answered it

    def finish(
        self,
        scope: Scope,
        route: str,
        status: int,
        started: float,
        start: float,
        request_id: str,
        prediction: tuple[str, str, int] | None = None,
        error: str | None = None,
    ) -> None:
        """``started``: time.time() when it came; ``start``: time.perf_counter() then."""
        seconds = time.perf_counter() - start
        method = scope["method"]
        self.telemetry.observe(route, method, status, seconds)
        model, version, images = prediction or (None, None, None)
        self.access.log(
            Request(started, request_id, method, scope["path"][:_LOGGED_PATH], status,
                    seconds * 1000, model, version, images, error)
        )  # fmt: skip


class EdgeMiddleware:
    """Gives every HTTP request its id (echoed as X-Request-ID), refuses bodies over
    ``max_body_bytes`` with 413 (by Content-Length before reading, and by counting while
    streaming), and records each request's metrics and access line."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, observer: Observer) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, start = time.time(), time.perf_counter()
        status = 500
        sent = False
        limit = self.max_body_bytes
        given: bytes | None = None
        declared: int | None = None
        for key, value in scope["headers"]:  # the first of each, as Starlette reads them
            if key == b"x-request-id" and given is None:
                given = value
            elif key == b"content-length" and declared is None:
                declared = content_length(value)
        rid = request_id(given)
        scope[REQUEST_ID] = rid
        rid_header = (b"x-request-id", rid.encode())
        replica_header = (REPLICA, self.observer.replica)

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                sent = True
                headers = [*message.get("headers", ()), rid_header, replica_header]
                message = {**message, "headers": headers}
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # rendered by whoever reads the body, or below
                    raise too_large(None, limit)
            return message

        try:
            if declared is not None and declared > limit:
                status = 413
                scope[ERROR] = PayloadTooLarge.code
                await send_error(
                    send, too_large(declared, limit), rid, scope["path"], self.observer.replica
                )
                return
            # With a Content-Length the server delivers exactly that many bytes: only a chunked
            # body needs counting as it arrives.
            counted = receive if declared is not None else receive_wrapper
            try:
                await self.app(scope, counted, send_wrapper)
            except PayloadTooLarge as e:
                if sent:
                    raise
                status = 413
                scope[ERROR] = e.code
                await send_error(send, e, rid, scope["path"], self.observer.replica)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNROUTED
            self.observer.finish(
                scope, route, status, started, start, rid, scope.get(PREDICTION), scope.get(ERROR)
            )
