"""Liveness and readiness, for load balancers and container health checks."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request

from service.errors import ServiceUnavailable
from service.openapi import errors
from service.schemas import Live, Ready
from service.state import AppState, get_state

__all__ = ["router", "unready"]

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", summary="The process answers", response_model=Live)
async def live() -> dict[str, Any]:
    return {"status": "live", "pid": os.getpid()}


@router.get(
    "/ready",
    summary="200 only when every required model is loaded and valid",
    response_model=Ready,
    responses=errors({503: "Not ready; the message says why"}),
)
async def ready(request: Request) -> dict[str, Any]:
    state = get_state(request)
    problem = unready(state)
    if problem is not None:
        raise problem
    registry = state.registry
    return {
        "status": "ready",
        "pid": os.getpid(),
        "models": {name: served.version for name, served in sorted(registry.models.items())},
        "problems": dict(registry.problems),
        "database": state.database_status(),
    }


def unready(state: AppState) -> ServiceUnavailable | None:
    """Why the server is not ready (shutting down, or a required model not loaded), or None."""
    if state.stopping.is_set():
        return ServiceUnavailable("the server is shutting down", code="shutting_down")
    missing = state.registry.not_ready()
    if missing:
        reasons = "; ".join(f"model {name!r} is not loaded: {why}" for name, why in missing.items())
        return ServiceUnavailable(reasons, code="not_ready", details={"problems": missing})
    return None
