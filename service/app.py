"""The FastAPI app: `create_app(settings)` builds it; ``uvicorn service.app:app`` serves it."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from types import FrameType
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from service import __version__, console, docs_offline
from service.config import Settings
from service.database import Database
from service.drift import Drift
from service.edge import EdgeMiddleware, Observer
from service.error_handlers import add_error_handlers
from service.fastpath import FastPath
from service.jobs.record import Job
from service.jobs.runner import JobRunner
from service.jobs.sqlite import SQLiteJobStore
from service.jobs.store import JobStore
from service.logs import STDERR, AccessLog, Writer, default_format
from service.logs import configure as configure_logs
from service.modelstore import ModelStore, StoreError
from service.modelstore.folder import FolderModelStore
from service.predicting import Limits, Predictor
from service.registry import Registry
from service.routes import datasets, health, metrics, models, predict, train, v2
from service.state import AppState
from service.telemetry import Telemetry
from service.testset import TestSet

__all__ = ["FAST_ROUTES", "SoftserveApp", "app", "create_app"]

FAST_ROUTES = (*predict.FAST_ROUTES, *v2.FAST_ROUTES)  # answered before FastAPI routes them

log = logging.getLogger("softserve")

DESCRIPTION = """\
Classifies 28x28 grayscale images (Fashion-MNIST by default) with linear models trained by
softserve's own NumPy trainer, trains new versions in the background and swaps them in.

Every error has one shape: `{"error": {"code": ..., "message": ..., "details": ...,
"request_id": ...}}`. Every response carries its request's id in `X-Request-ID` (the caller's,
when it sends a valid one), and the access log writes one line per request with it.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """An app serving ``settings.model_dir``; nothing touches the disk until its lifespan starts."""
    settings = settings if settings is not None else Settings()
    holder: dict[str, AppState] = {}

    def served_models() -> Mapping[str, Any]:
        return holder["state"].registry.models if "state" in holder else {}

    def job_counts() -> Mapping[str, int]:
        return holder["state"].jobs.counts() if "state" in holder else {}

    def drift_figures() -> Mapping[str, Mapping[str, Any]]:
        return holder["state"].drift_report() if "state" in holder else {}

    def database_status() -> Mapping[str, Any]:
        return holder["state"].database_status() if "state" in holder else {}

    telemetry = Telemetry(
        served_models, job_counts, settings.prometheus_multiproc_dir, drift_figures,
        settings.replica_name, database_status,
    )  # fmt: skip
    writer = Writer(
        STDERR,
        default_format(settings.log_format),
        capacity=settings.log_queue_size,
        count=telemetry.log_lines,
    )
    access = AccessLog(writer, enabled=settings.access_log, sample=settings.access_log_sample)
    observer = Observer(telemetry, access, settings.replica_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer.start()
        restore_logging = configure_logs(writer, settings.log_level)
        try:
            async with _running(app, settings, telemetry, holder):
                yield
        finally:
            restore_logging()
            await asyncio.to_thread(writer.stop)

    app = SoftserveApp(
        title="softserve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # OpenTelemetry off: checking whether it is configured costs ~13 us on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # docs_offline.install serves /docs and /redoc without a CDN
        redoc_url=None,
    )
    for router in (health.router, predict.router, models.router, train.router, metrics.router,
                   v2.router, datasets.router, console.router):  # fmt: skip
        app.include_router(router)
    add_error_handlers(app)
    docs_offline.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-Request-ID",
                "Content-Encoding",
                "Inference-Header-Content-Length",
            ],
            expose_headers=[
                "X-Request-ID",
                "X-Softserve-Replica",
                "Content-Encoding",
                "Inference-Header-Content-Length",
            ],
        )
    framework: ASGIApp = EdgeMiddleware(
        functools.partial(FastAPI.__call__, app),
        max_body_bytes=settings.max_body_bytes,
        observer=observer,
    )
    if not settings.cors_origins:  # with CORS on, predictions take the framework's path too
        framework = FastPath(
            framework,
            FAST_ROUTES,
            predictor=lambda: holder["state"].predictor if "state" in holder else None,
            max_body_bytes=settings.max_body_bytes,
            observer=observer,
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


@asynccontextmanager
async def _running(
    app: FastAPI, settings: Settings, telemetry: Telemetry, holder: dict[str, AppState]
) -> AsyncIterator[None]:
    """The app's state from startup to shutdown: models loaded, jobs run, the folder watched."""
    state = await run_in_threadpool(_build_state, settings, telemetry)
    holder["state"] = state
    # Imports and startup leave ~10^5 long-lived objects; without this every full garbage
    # collection walks them all, which showed as 40% fewer predictions per second.
    gc.collect()
    gc.freeze()
    app.state.softserve = state
    restore_signals = _notice_shutdown(state.stopping)
    await state.runner.start()
    watcher = asyncio.create_task(_watch(state))
    if state.database is not None:  # promotions on any replica arrive at once
        state.database.listen(state.registry.refresh)
    drift = state.predictor.drift
    keeper = asyncio.create_task(drift.run(lambda: state.registry.models)) if drift else None
    try:
        yield
    finally:
        for task in (watcher, keeper):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        if drift is not None:
            drift.close()
        await state.runner.stop()
        if state.database is not None:
            await asyncio.to_thread(state.database.close)
        restore_signals()
        app.state.softserve = None
        holder.pop("state", None)


def _build_state(settings: Settings, telemetry: Telemetry) -> AppState:
    database = None
    store: ModelStore
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        # A training child opens the stores again by their locations, which leave the password
        # out: it finds the URL in the environment it inherits, never on a command line.
        os.environ["SOFTSERVE_DATABASE_URL"] = url
        database = Database(url)
        store = database.models
    else:
        store = FolderModelStore(settings.model_dir)
    if settings.seed_dir is not None:
        try:
            seeded = store.seed_from(settings.seed_dir)
        except (StoreError, OSError) as exc:  # e.g. a read-only folder: serve what is there
            log.error("seeding models from %s: %s", settings.seed_dir, exc)
        else:
            for name in seeded:
                log.info("model %r seeded from %s", name, settings.seed_dir)
    for leftover in store.tidy():
        log.warning("removed %s, left by an interrupted save", leftover)
    if (problem := store.problem()) is not None:
        log.warning("%s", problem)
    if settings.prometheus_multiproc_dir is None and multiprocessing.parent_process() is not None:
        log.warning(
            "this worker runs in a child process (uvicorn --workers N, or --reload) and "
            "PROMETHEUS_MULTIPROC_DIR is not set: with several workers, each Prometheus scrape "
            "of /metrics counts only the requests of the worker that answers it. "
            "python -m service --workers N sets it up; else set PROMETHEUS_MULTIPROC_DIR to an "
            "empty folder"
        )
    registry = Registry(store, settings.required_models)
    registry.refresh()
    for name, why in registry.not_loaded().items():
        log.warning("model %r is not served: %s", name, why)
    if settings.default_model not in registry.models:
        log.warning(
            "the default model %r (SOFTSERVE_DEFAULT_MODEL) is not served: /predict without a "
            "model answers 503 until it is",
            settings.default_model,
        )
    jobs: JobStore = (
        database.jobs if database is not None
        else SQLiteJobStore(settings.job_store_dir / "jobs.sqlite3")
    )  # fmt: skip
    jobs.prune(settings.jobs_kept)

    def finished(job: Job) -> None:
        if job.promoted and job.version is not None:
            registry.catch_up(job.model, job.version)  # this worker serves its job's version now
        jobs.prune(settings.jobs_kept)

    runner = JobRunner(
        jobs,
        models=store,
        data_dir=settings.data_dir,
        concurrency=settings.train_concurrency,
        on_finished=finished,
        log_format=default_format(settings.log_format),
        replica=settings.replica_name,
    )
    shared = settings.prometheus_multiproc_dir  # set when several workers share the counts
    drift = Drift(
        settings.drift_window, settings.drift_alert_factor,
        shared / "drift" if shared is not None else None,
    )  # fmt: skip
    predictor = Predictor(
        registry, Limits.from_settings(settings), telemetry, settings.default_model, settings.ood,
        drift,
    )  # fmt: skip
    served = ", ".join(f"{name} {s.version}" for name, s in sorted(registry.models.items()))
    log.info(
        "softserve %s (pid %d) serving %s from %s; jobs in %s",
        __version__, os.getpid(), served or "no model", settings.model_dir.resolve(),
        settings.job_store_dir.resolve(),
    )  # fmt: skip
    testset = TestSet(settings.data_dir)
    return AppState(
        settings, store, registry, predictor, jobs, runner, telemetry, testset, database
    )


def _notice_shutdown(stopping: asyncio.Event) -> Callable[[], None]:
    """Chain onto the server's SIGTERM and SIGINT handlers (uvicorn's) to set ``stopping`` as
    soon as the signal arrives: uvicorn runs the lifespan's end only after every open connection
    has closed, and an event stream stays open until its job ends, which would hold a
    ``docker stop`` past its 10 s. Returns what puts the previous handlers back, for the
    lifespan's end (an app run in-process on the main thread must not leave them chained)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals reach only the main thread; test clients run elsewhere
    loop = asyncio.get_running_loop()
    chained: dict[int, tuple[Callable[..., Any], Callable[..., Any]]] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(
            signum: int, frame: FrameType | None, previous: Callable[..., Any] = previous
        ) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(stopping.set)
            previous(signum, frame)

        signal.signal(signum, handler)
        chained[signum] = (handler, previous)

    def restore() -> None:
        for signum, (handler, previous) in chained.items():
            if signal.getsignal(signum) is handler:  # unless someone has replaced ours since
                signal.signal(signum, previous)

    return restore


async def _watch(state: AppState) -> None:
    """Poll the model folder, so versions promoted by other workers or copied in are served."""
    while True:
        await asyncio.sleep(state.settings.watch_interval)
        try:
            await run_in_threadpool(state.registry.refresh)
        except Exception:  # a transient filesystem error must not stop the watching
            log.exception("refreshing models from %s failed", state.models.location)


app = create_app()
