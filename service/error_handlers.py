"""FastAPI's exception handlers: every error, FastAPI's validation and Starlette's HTTP errors
included, leaves as `service.errors.render_error` renders it, in the one JSON shape
``{"error": {"code", "message", "details", "request_id"}}`` (under /v2, V2's
``{"error": "<message>"}``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from service.database import FAILURES, unavailable
from service.edge import ERROR, REQUEST_ID
from service.errors import (
    BadRequest,
    InvalidInput,
    ServiceError,
    UnsupportedMediaType,
    render_error,
)
from service.inputs import MAX_INT_DIGITS

__all__ = ["add_error_handlers"]

log = logging.getLogger("softserve")

# Codes for the framework's own HTTP errors: the service's error classes', and two it never raises.
_STATUS_CODES = {
    **{cls.status: cls.code for cls in ServiceError.__subclasses__()},
    405: "method_not_allowed",
    406: "not_acceptable",
    422: "invalid_request",  # a request the framework could not validate
}


def add_error_handlers(app: FastAPI) -> None:
    """Render every error, FastAPI's and Starlette's own included, in the one JSON shape."""

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        return _response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if isinstance(exc.body, bytes) and exc.body:
            # FastAPI parses a body only when it is declared JSON; any other is validated as bytes
            # and fails as "not a valid dictionary", which hides the real problem.
            declared = request.headers.get("content-type")
            return _response(
                request,
                UnsupportedMediaType(
                    f"unsupported Content-Type {declared[:100]!r}: send application/json"
                    if declared
                    else "missing Content-Type: send application/json"
                ),
            )
        for e in exc.errors():  # FastAPI reports unparsable JSON as a 422 at loc (body, offset)
            if e.get("type") == "json_invalid":
                reason = e.get("ctx", {}).get("error", "JSON decode error")
                where = e.get("loc", ())[-1]
                return _response(
                    request, _not_json(f"body is not valid JSON: {reason} at character {where}")
                )
        details = [
            {"loc": [_short(p) for p in e.get("loc", ())], "message": e.get("msg", ""),
             "type": e.get("type", "")}
            for e in exc.errors()
        ]  # fmt: skip
        first = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return _response(
            request,
            InvalidInput(f"{where}: {first['message']}", code="invalid_request", details=details),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path[:200]}"
        elif exc.status_code == 400 and message == "There was an error parsing the body":
            return _response(request, _unparsable(exc.__cause__))
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path[:200]}"
            allowed = _allowed(request)
            headers = {"Allow": allowed} if allowed is not None else {}
        return _response(
            request, ServiceError(message, code=code, headers=headers, status=exc.status_code)
        )

    async def database_failed(request: Request, exc: Exception) -> Response:
        return _response(request, unavailable(exc))  # the shared database went away: a 503

    for failure in FAILURES:
        app.add_exception_handler(failure, database_failed)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        rid = request.scope.get(REQUEST_ID)
        log.exception(
            "unhandled error on %s %s (request %s)", request.method, request.url.path, rid
        )
        return _response(request, ServiceError("internal error; the server log has details"))


def _response(request: Request, error: ServiceError) -> Response:
    """The error's response, naming the request it answers; the edge logs its code."""
    request.scope[ERROR] = error.code
    rendered = render_error(error, request.scope.get(REQUEST_ID), request.scope["path"])
    response = Response(rendered.body, status_code=rendered.status)
    response.raw_headers = [
        *rendered.headers,
        (b"content-length", str(len(rendered.body)).encode()),
    ]
    return response


def _short(part: Any) -> Any:
    """A location part as a message shows it: an unknown 1 MB field name is not echoed whole."""
    return f"{part[:40]}..." if isinstance(part, str) and len(part) > 40 else part


def _not_json(message: str) -> ServiceError:
    return BadRequest(message, code="invalid_json")  # as service.inputs says it for /predict


def _unparsable(cause: BaseException | None) -> ServiceError:
    """The error for a JSON body FastAPI could not parse, though it was no JSONDecodeError."""
    if isinstance(cause, ServiceError):  # the edge's 413 for a chunked body over the limit
        return cause
    if isinstance(cause, UnicodeDecodeError):
        return _not_json("body is not valid JSON: it is not UTF-8 text")
    if isinstance(cause, RecursionError):
        return _not_json("body is not valid JSON: nested too deeply")
    if isinstance(cause, ValueError) and "digits" in str(cause):  # valid JSON, an absurd number
        return InvalidInput(
            f"a number in the body has more than {MAX_INT_DIGITS} digits", code="invalid_request"
        )
    return _not_json("body is not valid JSON")


def _allowed(request: Request) -> str | None:
    """Every method the path answers, from the documented paths: Starlette's 405 names only the
    methods of the first route matching the path (POST /train's, not GET's too)."""
    app: FastAPI = request.app
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) or None
