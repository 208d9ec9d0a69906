"""The bearer token that guards the endpoints which change things (when one is configured).

A guarded route lists `TOKEN` in its dependencies: the check, and the OpenAPI security scheme
(HTTP bearer), so a docs page's "Authorize" sends the token. A router of guarded routes uses
`TokenFirstRoute`, which runs the check before FastAPI reads the body (the dependency then finds
it done).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from service.errors import Forbidden, Unauthorized
from service.state import get_state

__all__ = ["TOKEN", "TokenFirstRoute", "require_token"]

# Declares the scheme in the OpenAPI; it checks nothing (require_token does, with our messages).
_bearer = HTTPBearer(auto_error=False, description="SOFTSERVE_API_TOKEN, when one is set")
_CHECKED = "softserve.token_checked"  # set in the request's scope once the token passed


def require_token(request: Request) -> None:
    """Bearer-token check. The comparison is constant-time, and the token is never logged or
    echoed."""
    token = get_state(request).settings.api_token
    if token is None or request.scope.get(_CHECKED):
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
    request.scope[_CHECKED] = True


TOKEN = [Security(_bearer), Depends(require_token)]


class TokenFirstRoute(APIRoute):
    """A route that lists `TOKEN` checks the token before FastAPI reads and validates the body:
    a caller without the token learns only that (401/403), never how its body would have been
    judged (FastAPI parses the body before it runs dependencies)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not any(d.dependency is require_token for d in self.dependencies):
            return handler

        async def token_first(request: Request) -> Response:
            require_token(request)
            return await handler(request)

        return token_first
