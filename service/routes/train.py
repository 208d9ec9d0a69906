"""POST/GET /train, GET /train/{id}, its Server-Sent Events, DELETE /train/{id} (cancel)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.auth import TOKEN, TokenFirstRoute
from service.edge import REQUEST_ID
from service.errors import InvalidInput, NotFound, TooManyRequests
from service.jobs.record import Job, JobStatus
from service.jobs.store import QueueFull
from service.openapi import errors, link
from service.schemas import Job as JobView
from service.schemas import JobList, TrainRequest
from service.state import AppState, get_state
from trainer.config import ConfigError, TrainConfig
from trainer.tasks import make_task

__all__ = ["router"]

# 422 is listed so the docs show the error shape the app sends, not FastAPI's default one.
router = APIRouter(
    prefix="/train",
    tags=["train"],
    route_class=TokenFirstRoute,
    responses=errors({422: "Invalid request"}),
)
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_EVENT_POLL = 0.25  # seconds between looks at the job store while streaming
_KEEPALIVE = 15.0
_AUTH = errors({401: "Token missing", 403: "Token wrong"})
_404 = errors({404: "Unknown job"})
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
    """A `schemas.Job`: the record as the API shows it."""
    out = job.to_dict()
    out["job_id"] = out.pop("id")
    return out


@router.post(
    "",
    status_code=202,
    summary="Start a training job; needs the token",
    dependencies=TOKEN,
    response_model=JobView,
    responses={
        **_AUTH,
        **errors(
            {
                400: "Malformed JSON body",
                415: "Body not sent as application/json",
                429: "Queue full",
            }
        ),
        202: {"links": _LINKS},
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
            request_id=request.scope.get(REQUEST_ID),
        )
    except QueueFull as e:
        raise TooManyRequests(
            f"{e} (SOFTSERVE_TRAIN_QUEUE_SIZE)", code="queue_full", headers={"Retry-After": "10"}
        ) from e
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
        # The training data's classes, as the served models record them; when they do not
        # say (none served, or trained on different data), the job itself will check them.
        names = state.registry.dataset_class_names()
        if names is not None:
            make_task(config, names)  # unknown classes, one both positive and negative, no negative
    except ConfigError as e:
        raise InvalidInput(str(e), code="invalid_parameter") from e
    return params


@router.get("", summary="Recent jobs, newest first", response_model=JobList)
async def list_jobs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    status: Annotated[JobStatus | None, Query()] = None,
) -> dict[str, Any]:
    state = get_state(request)
    jobs = await run_in_threadpool(state.jobs.list, limit=limit, status=status)
    return {"jobs": [_view(j) for j in jobs]}


@router.get(
    "/{job_id}",
    summary="One job: status, progress, history, result",
    response_model=JobView,
    responses={**_404, 200: {"links": _LINKS}},
)
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    state = get_state(request)
    job = await _job(state, job_id)
    await _serve_if_just_promoted(state, job)
    return _view(job)


@router.delete(
    "/{job_id}",
    summary="Cancel a job; needs the token",
    dependencies=TOKEN,
    response_model=JobView,
    responses={**_404, **_AUTH, 200: {"links": _LINKS}},
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
        if job.updated_at != seen or job.ended:
            seen = job.updated_at
            view = _view(job)
            view.pop("history")  # each event carries the latest epoch; GET /train/{id} has all
            name = "end" if job.ended else "progress"
            if name == "end":
                await _serve_if_just_promoted(state, job)
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
    return job


async def _serve_if_just_promoted(state: AppState, job: Job) -> None:
    """Whoever is told that a job's version was promoted can predict with it at once: this
    worker loads it now instead of at its next look at the store. Only just after the job
    ended: later the watch has it, or another version has replaced it."""
    if job.version is not None and job.promoted_within(2 * state.settings.watch_interval + 2):
        await run_in_threadpool(state.registry.catch_up, job.model, job.version)
