"""POST/GET /train, GET /train/{id}, its Server-Sent Events, DELETE /train/{id} (cancel)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.errors import InvalidInput, NotFound, TooManyRequests
from service.job import TERMINAL, Job
from service.jobstore import QueueFull
from service.schemas import ErrorResponse, TrainRequest, link
from service.state import AppState, TokenFirstRoute, get_state, require_token
from trainer.config import ConfigError, TrainConfig
from trainer.tasks import make_task

__all__ = ["router"]

# 422 is listed so the docs show the error shape the app sends, not FastAPI's default one.
router = APIRouter(
    prefix="/train",
    tags=["train"],
    route_class=TokenFirstRoute,
    responses={422: {"model": ErrorResponse, "description": "Invalid request"}},
)
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_EVENT_POLL = 0.25  # seconds between looks at the job store while streaming
_KEEPALIVE = 15.0
_JOB_EXAMPLE = {
    "job_id": "6f1c0c7a9d8e4b5f8a7b6c5d4e3f2a1b",
    "model": "softmax",
    "status": "running",
    "params": {"epochs": 5},
    "force": False,
    "created_at": "2026-11-22T05:00:00Z",
    "progress": {"phase": "select", "epoch": 2, "epochs": 5, "fraction": 0.25},
    "history": [],
    "latest": None,
    "error": None,
    "version": None,
    "promoted": None,
    "promotion_reason": None,
}
_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Token missing"},
    403: {"model": ErrorResponse, "description": "Token wrong"},
}
_404: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown job"}
}
_JOB = "$response.body#/job_id"
_LINKS = {  # from a job to what can be done with it
    "GetJob": link("/train/{job_id}", "get", job_id=_JOB),
    "JobEvents": link("/train/{job_id}/events", "get", job_id=_JOB),
    "CancelJob": link("/train/{job_id}", "delete", job_id=_JOB),
    "ActivateItsVersion": link(
        "/models/{name}/activate",
        "post",
        {"version": "$response.body#/version"},
        name="$response.body#/model",
    ),
}


def _view(job: Job) -> dict[str, Any]:
    out = job.to_dict()
    out["job_id"] = out.pop("id")
    return out


@router.post(
    "",
    status_code=202,
    summary="Start a training job; needs the token",
    dependencies=[Depends(require_token)],
    responses={
        **_AUTH,
        400: {"model": ErrorResponse, "description": "Malformed JSON body"},
        415: {"model": ErrorResponse, "description": "Body not sent as application/json"},
        202: {"content": {"application/json": {"example": _JOB_EXAMPLE}}, "links": _LINKS},
        429: {"model": ErrorResponse, "description": "Queue full"},
    },
)
async def submit(
    request: Request, response: Response, body: Annotated[TrainRequest | None, Body()] = None
) -> dict[str, Any]:
    state = get_state(request)
    req = body or TrainRequest()
    params = _params(state, req)
    try:
        job = await run_in_threadpool(
            state.jobs.submit,
            req.model,
            params,
            req.force,
            queue_limit=state.settings.train_queue_size,
        )
    except QueueFull as e:
        raise TooManyRequests(str(e), code="queue_full", headers={"Retry-After": "10"}) from e
    state.runner.wake()
    response.headers["Location"] = f"/train/{job.id}"
    return _view(job)


def _params(state: AppState, req: TrainRequest) -> dict[str, Any]:
    """Check the hyper-parameters now, so a bad job is a 422 and not a failed job later."""
    params = req.model_dump(exclude_none=True, exclude={"model", "force"})
    for key in ("positive", "negative"):
        if key in params:
            params[key] = [str(v) for v in params[key]]
    limit = state.settings.train_max_epochs
    if params.get("epochs", 0) > limit:
        raise InvalidInput(
            f"epochs must be at most {limit} (SOFTSERVE_TRAIN_MAX_EPOCHS), got {params['epochs']}",
            code="invalid_parameter",
        )
    try:
        config = TrainConfig.from_dict({"model": req.model, **params})
        names = _class_names(state)
        if names is not None:
            make_task(config, names)  # unknown classes, one both positive and negative, no negative
    except ConfigError as e:
        raise InvalidInput(str(e), code="invalid_parameter") from e
    return params


def _class_names(state: AppState) -> tuple[str, ...] | None:
    """The training data's class names, as the served softmax model records them."""
    served = state.registry.models.get("softmax")
    return served.class_names if served is not None and served.kind == "softmax" else None


@router.get(
    "",
    summary="Recent jobs, newest first",
    responses={200: {"content": {"application/json": {"example": {"jobs": [_JOB_EXAMPLE]}}}}},
)
async def list_jobs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    status: Annotated[
        str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")
    ] = None,
) -> dict[str, Any]:
    state = get_state(request)
    jobs = await run_in_threadpool(state.jobs.list, limit=limit, status=status)
    return {"jobs": [_view(j) for j in jobs]}


@router.get(
    "/{job_id}",
    summary="One job: status, progress, history, result",
    responses={
        **_404,
        200: {"content": {"application/json": {"example": _JOB_EXAMPLE}}, "links": _LINKS},
    },
)
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    return _view(await _job(get_state(request), job_id))


@router.delete(
    "/{job_id}",
    summary="Cancel a job; needs the token",
    dependencies=[Depends(require_token)],
    responses={
        **_404,
        **_AUTH,
        200: {"content": {"application/json": {"example": _JOB_EXAMPLE}}, "links": _LINKS},
    },
)
async def cancel(request: Request, job_id: str) -> dict[str, Any]:
    state = get_state(request)
    await _job(state, job_id)
    job = await run_in_threadpool(state.jobs.request_cancel, job_id)
    if job is None:
        raise NotFound(f"unknown job {job_id!r}", code="unknown_job")
    return _view(job)


@router.get(
    "/{job_id}/events",
    summary="Progress as Server-Sent Events until the job ends",
    description="Events: `progress` (each change), then `end` with the final status. If the "
    "server shuts down first, the stream ends with a `shutdown` event; the job is cancelled.",
    response_class=StreamingResponse,
    responses={
        **_404,
        200: {
            "content": {
                "text/event-stream": {
                    "example": (
                        'event: progress\ndata: {"job_id": "...", "status": "running", ...}\n\n'
                        'event: end\ndata: {"job_id": "...", "status": "succeeded", ...}\n\n'
                    )
                }
            }
        },
    },
)
async def events(request: Request, job_id: str) -> StreamingResponse:
    state = get_state(request)
    first = await _job(state, job_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_stream(state, first), media_type="text/event-stream", headers=headers)


async def _stream(state: AppState, job: Job) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    seen: str | None = None
    while True:
        if job.updated_at != seen or job.status in TERMINAL:
            seen = job.updated_at
            view = _view(job)
            view.pop("history")  # each event carries the latest epoch; GET /train/{id} has all
            name = "end" if job.status in TERMINAL else "progress"
            if name == "end":
                await _serve_result(state, job)
            yield b"event: " + name.encode() + b"\ndata: " + orjson.dumps(view) + b"\n\n"
            last_sent = loop.time()
            if name == "end":
                return
        elif loop.time() - last_sent > _KEEPALIVE:
            yield b": keep-alive\n\n"
            last_sent = loop.time()
        if state.stopping.is_set():  # the server is going: end here, the client may reconnect
            yield b"event: shutdown\ndata: " + orjson.dumps(_shutdown_view(job)) + b"\n\n"
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.stopping.wait(), _EVENT_POLL)
        fresh = await run_in_threadpool(state.jobs.get, job.id)
        if fresh is None:  # pruned while we watched
            return
        job = fresh


def _shutdown_view(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": job.status,
        "message": "the server is shutting down; a running job is cancelled",
    }


async def _job(state: AppState, job_id: str) -> Job:
    if not _JOB_ID.fullmatch(job_id):
        raise NotFound(
            f"unknown job {job_id[:80]!r}: job ids are 32 hex digits", code="unknown_job"
        )
    job = await run_in_threadpool(state.jobs.get, job_id)
    if job is None:
        raise NotFound(f"unknown job {job_id!r}", code="unknown_job")
    await _serve_result(state, job)
    return job


async def _serve_result(state: AppState, job: Job) -> None:
    """Whoever is told that a job's version was promoted can use it at once: this worker loads
    it now instead of at its next look at the model folder."""
    if job.status != "succeeded" or not job.promoted or job.finished_at is None:
        return
    served = state.registry.models.get(job.model)
    if served is not None and served.version == job.version:
        return
    # only just after it finished: later the watch has it, or another version replaced it
    age = datetime.now(UTC) - datetime.fromisoformat(job.finished_at)
    if age.total_seconds() < 2 * state.settings.watch_interval + 2:
        await run_in_threadpool(state.registry.refresh)
