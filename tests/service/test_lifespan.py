"""The app's lifespan run in the test process, as docs/testing-with-httpx.md shows it."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import httpx

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
