"""GET /models, /models/{name}, /models/{name}/versions; POST /models/{name}/activate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service import trust
from service.auth import TOKEN, TokenFirstRoute
from service.errors import Conflict
from service.modelstore import ModelStore, StoreError
from service.openapi import errors, link
from service.registry import Served, problem_of
from service.schemas import (
    ActivateRequest,
    Confusion,
    DriftFigures,
    ErrorResponse,
    ModelDetail,
    ModelList,
    ModelSummary,
    Versions,
)
from service.state import get_state
from trainer import artifacts
from trainer.artifacts import ArtifactError
from trainer.config import ConfigError
from trainer.evaluate import confusion_matrix
from trainer.metrics import SPLITS

__all__ = ["router"]

router = APIRouter(prefix="/models", tags=["models"], route_class=TokenFirstRoute)
# 422 is listed so the docs show the error shape the app sends, not FastAPI's default one.
_ERRORS = errors({404: "Unknown model", 422: "Invalid request"})
_NAME = "$response.body#/name"
_MODEL_LINKS = {  # from a model to its kept versions and its predictions
    "GetVersions": link("/models/{name}/versions", "get", name=_NAME),
    "Predict": link("/models/{name}/predict", "post", name=_NAME),
}


def _activate(version: str) -> dict[str, Any]:
    return link(
        "/models/{name}/activate", "post", {"version": version}, name="$response.body#/model"
    )


def summary(served: Served, problem: str | None, assess: bool) -> dict[str, Any]:
    """A `ModelSummary`: what a listing shows of a served model."""
    return {
        "name": served.name,
        **artifacts.describe(served.artifact),
        "loaded_at": served.loaded_at,
        "problem": problem,
        "ood": trust.status(served.detector, served.no_detector, assess),
    }


@router.get(
    "",
    summary="Every served model",
    response_model=ModelList,
    responses={
        200: {
            "links": {
                "GetModel": link("/models/{name}", "get", name="$response.body#/models/0/name")
            },
        }
    },
)
async def list_models(request: Request) -> dict[str, Any]:
    state = get_state(request)
    registry, assess = state.registry, state.predictor.assess
    models = [
        summary(s, registry.problems.get(n), assess) for n, s in sorted(registry.models.items())
    ]
    return {"models": models, "not_loaded": registry.not_loaded()}


@router.get(
    "/{name}",
    summary="All metadata of the active version",
    response_model=ModelDetail,
    responses={**_ERRORS, 200: {"links": _MODEL_LINKS}},
)
async def get_model(request: Request, name: str) -> dict[str, Any]:
    state = get_state(request)
    served = state.registry.get(name)
    meta = served.artifact.meta
    block = meta.get("ood")
    return {
        "name": name,
        **meta,
        "ood": trust.status(served.detector, served.no_detector, state.predictor.assess, block),
        "loaded_at": served.loaded_at,
        "problem": state.registry.problems.get(name),
    }


@router.get(
    "/{name}/drift",
    summary="The active version's traffic over the drift window against its training data",
    response_model=DriftFigures,
    responses={**_ERRORS, 409: {"model": ErrorResponse, "description": "Drift figures are off"}},
)
async def get_drift(request: Request, name: str) -> dict[str, Any]:
    """The flag rate against the expected rate, the mean intensity, the predicted classes
    against the training prior (PSI) and the mean top probability, over the last
    SOFTSERVE_DRIFT_WINDOW seconds of every worker (docs/trust.md#drift)."""
    state = get_state(request)
    served = state.registry.get(name)
    drift = state.predictor.drift
    if drift is None:
        raise Conflict("drift figures are off (SOFTSERVE_DRIFT_WINDOW=0)", code="drift_off")
    return await run_in_threadpool(drift.figures, served)


@router.get(
    "/{name}/confusion",
    summary="A version's confusion matrix on the dataset's test split",
    response_model=Confusion,
    responses={
        **_ERRORS,
        409: {"model": ErrorResponse, "description": "Trained on other classes than the data's"},
        503: {"model": ErrorResponse, "description": "No dataset here"},
    },
)
async def get_confusion(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    """The active version's (or ``?version=``'s) counts of true against predicted class, over
    the test split of SOFTSERVE_DATA_DIR (computed when asked: about 10 ms for 10,000 images);
    409, code `dataset_mismatch`, for a version trained on other classes than the dataset's;
    503, code `dataset_unavailable`, where there is no dataset."""
    state = get_state(request)
    served = await state.predictor.model(name, version)
    dataset = await run_in_threadpool(state.testset.get)
    try:
        matrix = await run_in_threadpool(confusion_matrix, served.artifact, dataset)
    except ConfigError as e:
        raise Conflict(f"{name} {served.version}: {e}", code="dataset_mismatch") from None
    total = int(matrix.sum())
    return {
        "model": name,
        "version": served.version,
        "split": "test",
        "class_names": list(served.class_names),
        "matrix": matrix.tolist(),
        "accuracy": float(matrix.trace()) / total if total else 0.0,
    }


@router.get(
    "/{name}/versions",
    summary="Every kept version, newest first",
    response_model=Versions,
    responses={
        **_ERRORS,
        200: {
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
    return await run_in_threadpool(_versions, state.models, name, served)


def _metrics(artifact: artifacts.Artifact) -> dict[str, Any]:
    """Each split's figures the artifact reports (train, validation, test)."""
    return {split: figures for split in SPLITS if (figures := artifact.metrics(split))}


def _versions(store: ModelStore, name: str, served: Served) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for version in store.versions(name):
        try:
            artifact = store.load_version(name, version)
        except (ArtifactError, StoreError, OSError) as e:
            rows[version] = {
                "version": version,
                "created_at": None,
                "test_accuracy": None,
                "metrics": None,
                "class_names": None,
                "problem": problem_of(e),
            }
            continue
        rows[version] = {
            "version": version,
            "created_at": artifact.created_at,
            "test_accuracy": artifact.test_accuracy,
            "metrics": _metrics(artifact),
            "class_names": list(artifact.class_names),
            "problem": None,
        }
    if served.version not in rows:  # active but not kept (yet): e.g. a read-only folder
        rows[served.version] = {
            "version": served.version,
            "created_at": served.artifact.created_at,
            "test_accuracy": served.artifact.test_accuracy,
            "metrics": _metrics(served.artifact),
            "class_names": list(served.artifact.class_names),
            "problem": None,
        }
    versions = sorted(rows.values(), key=lambda r: r["version"], reverse=True)
    for row in versions:
        row["active"] = row["version"] == served.version
    return {"model": name, "active": served.version, "versions": versions}


@router.post(
    "/{name}/activate",
    summary="Serve a kept version (roll back or forward); needs the token",
    dependencies=TOKEN,
    response_model=ModelSummary,
    responses={
        **_ERRORS,
        **errors(
            {
                400: "Malformed JSON body",
                401: "Token missing",
                403: "Token wrong",
                415: "Body not sent as application/json",
            }
        ),
        200: {"links": _MODEL_LINKS},
    },
)
async def activate(request: Request, name: str, body: ActivateRequest) -> dict[str, Any]:
    registry = get_state(request).registry
    served = await run_in_threadpool(registry.activate, name, body.version)
    return summary(served, registry.problems.get(name), get_state(request).predictor.assess)
