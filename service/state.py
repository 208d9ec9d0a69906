"""What the running app holds: settings, model folder, models, jobs (built by the lifespan)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from service.config import Settings
from service.errors import Forbidden, ServiceUnavailable, Unauthorized
from service.modelstore import ModelStore
from service.registry import Registry
from service.telemetry import Telemetry

if TYPE_CHECKING:
    from service.jobs import JobRunner
    from service.jobstore import JobStore

__all__ = ["AppState", "TokenFirstRoute", "get_state", "require_token"]


@dataclass
class AppState:
    settings: Settings
    store: ModelStore
    registry: Registry
    jobs: JobStore
    runner: JobRunner
    telemetry: Telemetry
    # set when SIGTERM/SIGINT arrives, before uvicorn waits for open connections: event streams
    # end and readiness fails, so a rolling restart drains quickly
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


def get_state(request: Request) -> AppState:
    state: AppState | None = getattr(request.app.state, "softserve", None)
    if state is None:  # only if a request arrives outside the lifespan
        raise ServiceUnavailable("the service is starting or stopping")
    return state


def require_token(request: Request) -> None:
    """Bearer-token check for the endpoints that change things (when a token is configured).

    The comparison is constant-time, and the token is never logged or echoed.
    """
    token = get_state(request).settings.api_token
    if token is None:
        return
    header = request.headers.get("authorization")
    challenge = {"WWW-Authenticate": "Bearer"}
    if not header:
        raise Unauthorized(
            "this endpoint needs a token: send 'Authorization: Bearer <token>'",
            code="missing_token",
            headers=challenge,
        )
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized(
            "malformed Authorization header: expected 'Bearer <token>'",
            code="missing_token",
            headers=challenge,
        )
    expected = token.get_secret_value().encode()
    if not secrets.compare_digest(value.strip().encode(), expected):
        raise Forbidden("the token is not valid", code="invalid_token")


class TokenFirstRoute(APIRoute):
    """A route that depends on `require_token` checks it before FastAPI reads and validates the
    body: a caller without the token learns only that (401/403), never how its body would have
    been judged (FastAPI parses the body before it runs dependencies)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not any(d.dependency is require_token for d in self.dependencies):
            return handler

        async def token_first(request: Request) -> Response:
            require_token(request)
            return await handler(request)

        return token_first
