"""GET /models, /models/{name}, /models/{name}/versions; POST /models/{name}/activate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from service.errors import InvalidInput, NotFound
from service.modelstore import StoreError, check_version, test_accuracy
from service.registry import Served
from service.schemas import ActivateRequest, ErrorResponse, link
from service.state import TokenFirstRoute, get_state, require_token
from trainer.artifacts import ArtifactError

__all__ = ["router"]

router = APIRouter(prefix="/models", tags=["models"], route_class=TokenFirstRoute)
# 422 is listed so the docs show the error shape the app sends, not FastAPI's default one.
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown model"},
    422: {"model": ErrorResponse, "description": "Invalid request"},
}
_NAME = "$response.body#/name"
_MODEL_LINKS = {  # from a model to its kept versions and its predictions
    "GetVersions": link("/models/{name}/versions", "get", name=_NAME),
    "Predict": link("/models/{name}/predict", "post", name=_NAME),
}


def _activate(version: str) -> dict[str, Any]:
    return link(
        "/models/{name}/activate", "post", {"version": version}, name="$response.body#/model"
    )


_SUMMARY_EXAMPLE = {
    "name": "softmax",
    "kind": "softmax",
    "version": "20261122T045742Z-1f3a1006",
    "class_names": ["T-shirt/top", "Trouser", "..."],
    "n_outputs": 10,
    "created_at": "2026-11-22T04:57:42Z",
    "loaded_at": "2026-11-22T05:00:00Z",
    "metrics": {"test": {"loss": 0.452, "accuracy": 0.848}},
    "problem": None,
}


def summary(served: Served, problem: str | None) -> dict[str, Any]:
    return {
        "name": served.name,
        **served.summary,
        "loaded_at": served.loaded_at,
        "problem": problem,
    }


@router.get(
    "",
    summary="Every served model",
    responses={
        200: {
            "content": {"application/json": {"example": {"models": [_SUMMARY_EXAMPLE]}}},
            "links": {
                "GetModel": link("/models/{name}", "get", name="$response.body#/models/0/name")
            },
        }
    },
)
async def list_models(request: Request) -> dict[str, Any]:
    registry = get_state(request).registry
    models = [summary(s, registry.problems.get(n)) for n, s in sorted(registry.models.items())]
    broken = {n: p for n, p in registry.problems.items() if n not in registry.models}
    return {"models": models, "not_loaded": broken}


@router.get(
    "/{name}",
    summary="All metadata of the active version",
    responses={
        **_ERRORS,
        200: {
            "content": {"application/json": {"example": _SUMMARY_EXAMPLE}},
            "links": _MODEL_LINKS,
        },
    },
)
async def get_model(request: Request, name: str) -> dict[str, Any]:
    registry = get_state(request).registry
    served = registry.get(name)
    return {
        "name": name,
        **served.artifact.meta,
        "loaded_at": served.loaded_at,
        "problem": registry.problems.get(name),
    }


@router.get(
    "/{name}/versions",
    summary="Every kept version, newest first",
    responses={
        **_ERRORS,
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "model": "softmax",
                        "active": "v2",
                        "versions": [
                            {
                                "version": "v2",
                                "created_at": "2026-11-22T04:57:42Z",
                                "active": True,
                                "test_accuracy": 0.848,
                                "problem": None,
                            }
                        ],
                    }
                }
            },
            "links": {
                "ActivateNewest": _activate("$response.body#/versions/0/version"),
                "Reactivate": _activate("$response.body#/active"),
            },
        },
    },
)
async def list_versions(request: Request, name: str) -> dict[str, Any]:
    state = get_state(request)
    served = state.registry.get(name)
    return await run_in_threadpool(_versions, state.store, name, served)


def _versions(store: Any, name: str, served: Served) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for version in store.archived_versions(name):
        try:
            artifact = store.load_version(name, version)
        except (ArtifactError, StoreError, OSError) as e:
            rows[version] = {
                "version": version,
                "created_at": None,
                "test_accuracy": None,
                "problem": str(e),
            }
            continue
        rows[version] = {
            "version": version,
            "created_at": artifact.created_at,
            "test_accuracy": test_accuracy(artifact),
            "problem": None,
        }
    if served.version not in rows:  # active but not archived yet (e.g. the shipped model)
        rows[served.version] = {
            "version": served.version,
            "created_at": served.artifact.created_at,
            "test_accuracy": test_accuracy(served.artifact),
            "problem": None,
        }
    versions = sorted(rows.values(), key=lambda r: r["version"], reverse=True)
    for row in versions:
        row["active"] = row["version"] == served.version
    return {"model": name, "active": served.version, "versions": versions}


@router.post(
    "/{name}/activate",
    summary="Serve a kept version (roll back or forward); needs the token",
    dependencies=[Depends(require_token)],
    responses={
        **_ERRORS,
        400: {"model": ErrorResponse, "description": "Malformed JSON body"},
        415: {"model": ErrorResponse, "description": "Body not sent as application/json"},
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        200: {
            "content": {"application/json": {"example": _SUMMARY_EXAMPLE}},
            "links": _MODEL_LINKS,
        },
    },
)
async def activate(request: Request, name: str, body: ActivateRequest) -> dict[str, Any]:
    state = get_state(request)
    state.registry.get(name)
    try:
        check_version(body.version)  # the schema's pattern lets '..' through; the store does not
    except StoreError as e:
        raise InvalidInput(str(e), code="invalid_version") from None
    try:
        await run_in_threadpool(state.store.activate, name, body.version)
    except StoreError as e:
        raise NotFound(str(e), code="unknown_version") from e
    except ArtifactError as e:
        raise InvalidInput(
            f"version {body.version!r} cannot be served: {e}", code="invalid_artifact"
        ) from e
    await run_in_threadpool(state.registry.refresh)
    served = state.registry.get(name)
    return summary(served, state.registry.problems.get(name))
