"""What the running app holds: settings, stores, models, the prediction pipeline, jobs (built
by the lifespan)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from service.config import Settings
from service.database import Database
from service.errors import ServiceUnavailable
from service.jobs.runner import JobRunner
from service.jobs.store import JobStore
from service.modelstore import ModelStore
from service.predicting import Predictor
from service.registry import Registry
from service.telemetry import Telemetry
from service.testset import TestSet

__all__ = ["AppState", "get_state"]


@dataclass
class AppState:
    settings: Settings
    models: ModelStore
    registry: Registry
    predictor: Predictor
    jobs: JobStore
    runner: JobRunner
    telemetry: Telemetry
    testset: TestSet
    database: Database | None = None  # SOFTSERVE_DATABASE_URL: the shared PostgreSQL
    # set when SIGTERM/SIGINT arrives, before uvicorn waits for open connections: event streams
    # end and readiness fails, so a rolling restart drains quickly
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def database_status(self) -> dict[str, Any]:
        """Where jobs and models are kept, and (PostgreSQL) the listener's state."""
        if self.database is None:
            return {"backend": "sqlite", "listener_connected": None,
                    "last_sync_seconds_ago": None, "error": None}  # fmt: skip
        status = self.database.status()
        status.pop("location")  # the host stays out of public bodies
        return status

    def drift_report(self) -> dict[str, dict[str, Any]]:
        """Each model's drift figures (service.drift); empty when they are off."""
        drift = self.predictor.drift
        return drift.report(self.registry.models) if drift is not None else {}


def get_state(request: Request) -> AppState:
    state: AppState | None = getattr(request.app.state, "softserve", None)
    if state is None:  # only if a request arrives outside the lifespan
        raise ServiceUnavailable("the service is starting or stopping")
    return state
