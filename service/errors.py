"""Domain errors that carry their HTTP status, and the one JSON shape every error is sent in.

``{"error": {"code": "...", "message": "...", "details": ..., "request_id": "..."}}``: `code` is
stable and machine-readable, `message` a sentence naming the problem, `details` optional
structure, `request_id` the request's id (its X-Request-ID), as the access log shows it.
`render_error` turns any of them into status, headers and body, for every layer that answers:
the FastAPI handlers, the edge and the fast path. Under ``/v2`` (the Open Inference Protocol)
the body is ``{"error": "<message>"}`` instead, the string V2 clients such as tritonclient parse;
the status and message are the same, and the request id goes in the X-Request-ID header only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_body",
    "is_v2",
    "render_error",
]

V2_PREFIX = "/v2"


def error_body(
    code: str, message: str, details: Any = None, request_id: str | None = None
) -> bytes:
    """The JSON bytes of one error, in the shape every error response uses."""
    return orjson.dumps(
        {"error": {"code": code, "message": message, "details": details, "request_id": request_id}}
    )


class ServiceError(Exception):
    """An expected failure with its HTTP status; the app's handler renders it."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}
        if code is not None:
            self.code = code
        if status is not None:  # for errors the framework raised with a status of its own
            self.status = status

    def body(self, request_id: str | None = None) -> bytes:
        return error_body(self.code, self.message, self.details, request_id)


class Rendered(NamedTuple):
    """An error as it leaves: ASGI status, raw headers (content-type first) and body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


_JSON = (b"content-type", b"application/json")


def is_v2(path: str) -> bool:
    """Whether ``path`` is under the Open Inference Protocol's prefix, where errors are V2's."""
    return path.startswith(V2_PREFIX) and (len(path) == 3 or path[3] == "/")


def render_error(error: ServiceError, request_id: str | None = None, path: str = "") -> Rendered:
    """The one response for an error answering a request for ``path``: its status, its headers
    after the content type, and the error's JSON, naming the request it answers (V2's bare
    string under /v2)."""
    headers = [_JSON, *((k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in error.headers.items())]  # fmt: skip
    if is_v2(path):
        return Rendered(error.status, headers, orjson.dumps({"error": error.message}))
    return Rendered(error.status, headers, error.body(request_id))


class BadRequest(ServiceError):
    status = 400
    code = "bad_request"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"


class InvalidInput(ServiceError):
    status = 422
    code = "invalid_input"


class TooManyRequests(ServiceError):
    status = 429
    code = "too_many_requests"


class ServiceUnavailable(ServiceError):
    status = 503
    code = "unavailable"
