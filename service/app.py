"""The FastAPI app: `create_app(settings)` builds it; ``uvicorn service.app:app`` serves it."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from types import FrameType
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.config import Settings
from service.edge import EdgeMiddleware
from service.errors import ServiceError, error_body
from service.fastpath import FastPredict
from service.jobs import JobRunner
from service.jobstore import JobStore
from service.modelstore import ModelStore, StoreError
from service.registry import Registry
from service.routes import health, metrics, models, predict, train
from service.state import AppState
from service.telemetry import Telemetry

__all__ = ["SoftserveApp", "app", "create_app"]

log = logging.getLogger("softserve")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}
DESCRIPTION = """\
Classifies 28x28 grayscale images (Fashion-MNIST by default) with linear models trained by
softserve's own NumPy trainer, trains new versions in the background and swaps them in.

Every error has one shape: `{"error": {"code": ..., "message": ..., "details": ...}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """An app serving ``settings.model_dir``; nothing touches the disk until its lifespan starts."""
    settings = settings if settings is not None else Settings()
    holder: dict[str, AppState] = {}

    def served_models() -> Mapping[str, Any]:
        return holder["state"].registry.models if "state" in holder else {}

    def job_counts() -> Mapping[str, int]:
        return holder["state"].jobs.counts() if "state" in holder else {}

    telemetry = Telemetry(served_models, job_counts, settings.prometheus_multiproc_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await run_in_threadpool(_build_state, settings, telemetry)
        holder["state"] = state
        # Imports and startup leave ~10^5 long-lived objects; without this every full garbage
        # collection walks them all, which showed as 40% fewer predictions per second.
        gc.collect()
        gc.freeze()
        app.state.softserve = state
        _notice_shutdown(state.stopping)
        await state.runner.start()
        watcher = asyncio.create_task(_watch(state))
        try:
            yield
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
            await state.runner.stop()
            app.state.softserve = None
            holder.pop("state", None)

    app = SoftserveApp(
        title="softserve",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # OpenTelemetry off: checking whether it is configured costs ~13 us on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    for router in (health.router, predict.router, models.router, train.router, metrics.router):
        app.include_router(router)
    _add_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    framework: ASGIApp = EdgeMiddleware(
        functools.partial(FastAPI.__call__, app),
        max_body_bytes=settings.max_body_bytes,
        telemetry=telemetry,
    )
    if not settings.cors_origins:  # with CORS on, predictions take the framework's path too
        framework = FastPredict(
            framework,
            state=lambda: holder.get("state"),
            max_body_bytes=settings.max_body_bytes,
            telemetry=telemetry,
        )
    app.outer = framework
    return app


class SoftserveApp(FastAPI):
    """FastAPI, with plain-ASGI layers in front for HTTP: size limits and metrics for every
    request, and the prediction fast path (service.fastpath) before routing.

    They sit outside FastAPI's own middleware stack because the stack alone costs more per
    request than scoring an image does.
    """

    outer: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.outer is not None and scope["type"] == "http":
            await self.outer(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _build_state(settings: Settings, telemetry: Telemetry) -> AppState:
    store = ModelStore(settings.model_dir)
    if settings.seed_dir is not None:
        try:
            seeded = store.seed_from(settings.seed_dir)
        except (StoreError, OSError) as exc:  # e.g. a read-only folder: serve what is there
            log.error("seeding models from %s: %s", settings.seed_dir, exc)
        else:
            for name in seeded:
                log.info("model %r seeded from %s", name, settings.seed_dir)
    for path in store.remove_stale_temp_files():
        log.warning("removed %s, left by an interrupted save", path)
    registry = Registry(store, settings.required_models)
    registry.refresh()
    jobs = JobStore(settings.job_store_dir / "jobs.sqlite3")
    jobs.prune(settings.jobs_kept)

    def finished(_job: Any) -> None:
        registry.refresh()  # this worker serves its own job's version at once
        jobs.prune(settings.jobs_kept)

    runner = JobRunner(
        jobs,
        model_dir=settings.model_dir,
        data_dir=settings.data_dir,
        concurrency=settings.train_concurrency,
        on_finished=finished,
    )
    return AppState(settings, store, registry, jobs, runner, telemetry)


def _notice_shutdown(stopping: asyncio.Event) -> None:
    """Chain onto the server's SIGTERM and SIGINT handlers (uvicorn's, which it restores when it
    stops) to set ``stopping`` as soon as the signal arrives: uvicorn runs the lifespan's end
    only after every open connection has closed, and an event stream stays open until its job
    ends, which would hold a ``docker stop`` past its 10 s."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach only the main thread; in-process test clients run elsewhere
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(
            signum: int, frame: FrameType | None, previous: Callable[..., Any] = previous
        ) -> None:
            loop.call_soon_threadsafe(stopping.set)
            previous(signum, frame)

        signal.signal(signum, handler)


async def _watch(state: AppState) -> None:
    """Poll the model folder, so versions promoted by other workers or copied in are served."""
    while True:
        await asyncio.sleep(state.settings.watch_interval)
        try:
            await run_in_threadpool(state.registry.refresh)
        except Exception:  # a transient filesystem error must not stop the watching
            log.exception("refreshing models from %s failed", state.registry.root)


def _add_error_handlers(app: FastAPI) -> None:
    def render(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Response:
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> Response:
        return render(exc.status, exc.body(), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if isinstance(exc.body, bytes) and exc.body:
            # FastAPI parses a body only when it is declared JSON; any other is validated as bytes
            # and fails as "not a valid dictionary", which hides the real problem.
            declared = request.headers.get("content-type")
            message = (
                f"unsupported Content-Type {declared[:100]!r}: send application/json"
                if declared
                else "missing Content-Type: send application/json"
            )
            return render(415, error_body("unsupported_media_type", message))
        for e in exc.errors():  # FastAPI reports unparsable JSON as a 422 at loc (body, offset)
            if e.get("type") == "json_invalid":
                reason = e.get("ctx", {}).get("error", "JSON decode error")
                where = e.get("loc", ())[-1]
                return render(
                    400,
                    error_body(
                        "invalid_json", f"body is not valid JSON: {reason} at character {where}"
                    ),
                )
        details = [
            {"loc": [_short(p) for p in e.get("loc", ())], "message": e.get("msg", ""),
             "type": e.get("type", "")}
            for e in exc.errors()
        ]  # fmt: skip
        first = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return render(422, error_body("invalid_request", f"{where}: {first['message']}", details))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path[:200]}"
        elif exc.status_code == 400 and message == "There was an error parsing the body":
            code, message = "invalid_json", _unparsable(exc.__cause__)
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path[:200]}"
            allowed = _allowed(request)
            if allowed is not None:
                return render(405, error_body(code, message), {"Allow": allowed})
        return render(exc.status_code, error_body(code, message), exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render(
            500, error_body("internal_error", "internal error; the server log has details")
        )


def _short(part: Any) -> Any:
    """A location part as a message shows it: an unknown 1 MB field name is not echoed whole."""
    return f"{part[:40]}..." if isinstance(part, str) and len(part) > 40 else part


def _unparsable(cause: BaseException | None) -> str:
    """The message for a JSON body FastAPI could not parse, though it was no JSONDecodeError."""
    if isinstance(cause, UnicodeDecodeError):
        return "body is not valid JSON: it is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "body is not valid JSON: nested too deeply"
    return "body is not valid JSON"


def _allowed(request: Request) -> str | None:
    """Every method the path answers, from the documented paths. Starlette's 405 names only the
    first route matching the path, so `Allow: POST` left out GET /train (schemathesis found it)."""
    app: FastAPI = request.app
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) or None


app = create_app()
