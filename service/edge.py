"""The edge of the app: the body-size limit and request metrics, as plain ASGI.

`EdgeMiddleware` applies them to every request that reaches FastAPI; the fast path
(`service.fastpath`) applies the same rules with the same functions to the requests it answers
itself: `content_length` (the one reading of the header), `read_body`, `too_large`, `send_error`.
Plain ASGI, not BaseHTTPMiddleware: it adds a few microseconds per request, not a task and a
queue, which matters on a path that answers in well under a millisecond.
"""

from __future__ import annotations

import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, ServiceError, render_error
from service.telemetry import Telemetry

__all__ = [
    "CLIENT_GONE",
    "UNROUTED",
    "ClientDisconnect",
    "EdgeMiddleware",
    "content_length",
    "read_body",
    "send_error",
    "too_large",
]

UNROUTED = "unmatched"  # the route label of a request answered before any route matched it
CLIENT_GONE = 499  # the status counted for a request whose client left before the answer


def content_length(value: bytes) -> int | None:
    """A Content-Length header's value: ASCII digits only, else None (unknown: the body is
    counted as it arrives). The HTTP server refuses malformed ones before the app sees them."""
    return int(value) if value.isdigit() else None


def too_large(declared: int | None, limit: int) -> PayloadTooLarge:
    """413 for a body over the limit; the connection closes, as the rest is never read."""
    size = f"{declared} bytes" if declared is not None else f"over {limit} bytes"
    return PayloadTooLarge(
        f"request body is {size}; the limit is {limit} bytes (SOFTSERVE_MAX_BODY_BYTES)",
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


async def send_error(send: Send, error: ServiceError) -> None:
    rendered = render_error(error)
    headers = [*rendered.headers, (b"content-length", str(len(rendered.body)).encode())]
    await send({"type": "http.response.start", "status": rendered.status, "headers": headers})
    await send({"type": "http.response.body", "body": rendered.body})


class EdgeMiddleware:
    """Refuses bodies over ``max_body_bytes`` with 413 (by Content-Length before reading, and by
    counting while streaming), and records every HTTP request's route, status and latency."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, telemetry: Telemetry) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False
        limit = self.max_body_bytes

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
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
            declared = next(
                (content_length(v) for k, v in scope["headers"] if k == b"content-length"), None
            )
            if declared is not None and declared > limit:
                status = 413
                await send_error(send, too_large(declared, limit))
                return
            # With a Content-Length the server delivers exactly that many bytes: only a chunked
            # body needs counting as it arrives.
            counted = receive if declared is not None else receive_wrapper
            try:
                await self.app(scope, counted, send_wrapper)
            except PayloadTooLarge as e:
                if started:
                    raise
                status = 413
                await send_error(send, e)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or UNROUTED
            self.telemetry.observe(path, scope["method"], status, time.perf_counter() - start)
