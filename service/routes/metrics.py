"""GET /metrics: latest loss and accuracy as JSON, or Prometheus text when a scraper asks."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from starlette.concurrency import run_in_threadpool

from service.state import AppState, get_state

__all__ = ["router"]

router = APIRouter(tags=["metrics"])
_SPLITS = ("train", "validation", "test")
_EXAMPLE = {
    "models": {
        "softmax": {
            "version": "20261122T045742Z-1f3a1006",
            "kind": "softmax",
            "created_at": "2026-11-22T04:57:42Z",
            "loaded_at": "2026-11-22T05:00:00Z",
            "source": {"artifact": "softmax.npz", "job_id": None},
            "train": {"loss": 0.41, "accuracy": 0.86},
            "test": {"loss": 0.452, "accuracy": 0.848},
        }
    },
    "jobs": {
        "counts": {"queued": 0, "running": 1},
        "running": [
            {
                "job_id": "6f1c...",
                "model": "softmax",
                "progress": {"epoch": 2, "epochs": 5},
                "latest": {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.82},
            }
        ],
    },
}


@router.get(
    "/metrics",
    summary="Latest loss and accuracy (JSON), or Prometheus text with Accept: text/plain",
    responses={
        200: {
            "content": {
                "application/json": {"example": _EXAMPLE},
                "text/plain": {"example": 'softserve_model_accuracy{model="softmax",...} 0.848\n'},
                "application/openmetrics-text": {"example": "# EOF\n"},
            }
        }
    },
)
async def metrics(request: Request) -> Response:
    state = get_state(request)
    accept = request.headers.get("accept", "").lower()
    if "application/openmetrics-text" in accept:
        body = await run_in_threadpool(openmetrics.generate_latest, state.telemetry.registry)
        return Response(body, media_type=openmetrics.CONTENT_TYPE_LATEST)
    if "text/plain" in accept:
        body = await run_in_threadpool(generate_latest, state.telemetry.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
    return Response(
        orjson.dumps(await run_in_threadpool(_json, state)), media_type="application/json"
    )


def _json(state: AppState) -> dict[str, Any]:
    recent = state.jobs.list(limit=200)
    job_of = {j.version: j.id for j in recent if j.version and j.promoted}
    models: dict[str, Any] = {}
    for name, served in sorted(state.registry.models.items()):
        metrics = served.summary["metrics"]
        models[name] = {
            "version": served.version,
            "kind": served.kind,
            "created_at": served.artifact.created_at,
            "loaded_at": served.loaded_at,
            "source": {"artifact": f"{name}.npz", "job_id": job_of.get(served.version)},
            **{split: metrics[split] for split in _SPLITS if split in metrics},
        }
    running = [
        {
            "job_id": j.id,
            "model": j.model,
            "progress": j.progress,
            "latest": j.history[-1] if j.history else None,
        }
        for j in state.jobs.list(limit=1000, status="running")
    ]
    return {"models": models, "jobs": {"counts": state.jobs.counts(), "running": running}}
