"""The app's lifespan run in the test process, as docs/testing-with-httpx.md shows it."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import httpx
import orjson
import pytest

from service import logs
from service.app import create_app
from service.config import Settings
from tests.support.server import copy_shipped_models


def test_an_in_process_lifespan_leaves_signal_handlers_and_logging_as_it_found_them(
    tmp_path: Path,
) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    loggers = [logging.getLogger(name) for name in ("softserve", "uvicorn", "uvicorn.access")]
    logging_before = [(lg.handlers[:], lg.propagate, lg.level, lg.disabled) for lg in loggers]
    models = copy_shipped_models(tmp_path / "models")

    async def scenario() -> int:
        app = create_app(Settings(model_dir=models, state_dir=tmp_path / "state"))
        async with app.router.lifespan_context(app):
            assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]  # chained
            assert loggers[0].handlers != logging_before[0][0]  # the service's writer
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return (await client.post("/predict", json={"pixels": [0] * 784})).status_code

    assert asyncio.run(scenario()) == 200
    assert asyncio.run(scenario()) == 200  # twice: nothing chains onto a closed loop
    assert {s: signal.getsignal(s) for s in before} == before
    assert [(lg.handlers, lg.propagate, lg.level, lg.disabled) for lg in loggers] == logging_before


def test_the_lifespan_writes_every_queued_log_line_before_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The writer's thread would wait an hour before writing: the lines are written at shutdown."""
    monkeypatch.setattr(logs, "DRAIN_EVERY", 3600.0)
    models = copy_shipped_models(tmp_path / "models")
    settings = Settings(model_dir=models, state_dir=tmp_path / "state", log_format="json")

    async def scenario() -> None:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for i in range(3):
                    headers = {"X-Request-ID": f"queued-{i}"}
                    await client.post("/predict", json={"pixels": [0] * 784}, headers=headers)
            assert "queued-" not in capfd.readouterr().err  # still queued

    asyncio.run(scenario())
    ids = [x.get("request_id") for x in map(orjson.loads, capfd.readouterr().err.splitlines())]
    assert [i for i in ids if i and i.startswith("queued-")] == ["queued-0", "queued-1", "queued-2"]
