"""Pure ASGI middleware at the edge of the app: body-size limit and request metrics.

Plain ASGI, not BaseHTTPMiddleware: it adds a few microseconds per request, not a task and a
queue, which matters on a path that answers in well under a millisecond.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge
from service.telemetry import Telemetry

__all__ = ["EdgeMiddleware", "too_large"]


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
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                status = 413
                await _send_error(send, too_large(declared, limit))
                return
            # With a Content-Length the server delivers exactly that many bytes: only a chunked
            # body needs counting as it arrives.
            counted = receive if declared is not None else receive_wrapper
            try:
                await self.app(scope, counted, send_wrapper)
            except PayloadTooLarge as e:
                if started:
                    raise
                error = e
                status = 413
                await _send_error(send, error)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.telemetry.observe(path, scope["method"], status, time.perf_counter() - start)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def too_large(declared: int | None, limit: int) -> PayloadTooLarge:
    size = f"{declared} bytes" if declared is not None else f"over {limit} bytes"
    return PayloadTooLarge(
        f"request body is {size}; the limit is {limit} bytes (SOFTSERVE_MAX_BODY_BYTES)",
        details={"limit": limit, "content_length": declared},
    )


async def _send_error(send: Send, error: PayloadTooLarge) -> None:
    body = error.body()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is not read
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": 413, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
