"""GET /metrics: latest loss and accuracy as JSON, or Prometheus text when a scraper asks."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from starlette.concurrency import run_in_threadpool

from service.database import FAILURES
from service.schemas import MetricsReport
from service.state import AppState, get_state
from trainer.metrics import SPLITS

__all__ = ["router"]

router = APIRouter(tags=["metrics"])
_RECENT_JOBS = 200  # how far back a served version's job is looked for
_PROMETHEUS_EXAMPLE = 'softserve_model_accuracy{model="softmax",split="test",...} 0.848\n'


@router.get(
    "/metrics",
    summary="Latest loss and accuracy (JSON), or Prometheus text with Accept: text/plain",
    response_model=MetricsReport,
    responses={
        200: {
            "content": {
                "text/plain": {"example": _PROMETHEUS_EXAMPLE},
                "application/openmetrics-text": {"example": _PROMETHEUS_EXAMPLE + "# EOF\n"},
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
        orjson.dumps(await run_in_threadpool(_report, state)), media_type="application/json"
    )


def _report(state: AppState) -> dict[str, Any]:
    """The JSON body (a `MetricsReport`)."""
    try:
        recent = state.jobs.list(limit=_RECENT_JOBS)
        running_jobs = state.jobs.list(limit=1000, status="running")
        counts = state.jobs.counts()
    except FAILURES:  # the database is away: the rest of the report still comes
        recent, running_jobs, counts = [], [], {}
    job_of = {j.version: j.id for j in recent if j.version and j.promoted}
    models: dict[str, Any] = {}
    for name, served in sorted(state.registry.models.items()):
        artifact = served.artifact
        models[name] = {
            "version": served.version,
            "kind": served.kind,
            "created_at": artifact.created_at,
            "loaded_at": served.loaded_at,
            "source": {"artifact": state.models.label(name), "job_id": job_of.get(served.version)},
            **{split: figures for split in SPLITS if (figures := artifact.metrics(split))},
        }
    running = [
        {"job_id": j.id, "model": j.model, "progress": j.progress, "latest": j.latest}
        for j in running_jobs
    ]
    jobs = {"counts": counts, "running": running}
    return {
        "replica": state.settings.replica_name, "database": state.database_status(),
        "models": models, "jobs": jobs, "drift": state.drift_report(),
        "requests": state.telemetry.requests(),
    }  # fmt: skip
