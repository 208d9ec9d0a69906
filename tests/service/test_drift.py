"""Drift figures (service.drift) against real uvicorn processes: they stay still for a stream
drawn from the test set and move for a shifted one, in /models/{name}/drift and in /metrics
(JSON and Prometheus); one warning line when the flag rate passes the alert factor; and with
several workers, one window over all of them."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from service.drift import psi
from tests.service.catalogue import assert_error
from tests.support import strangers
from tests.support.server import Server, run_server, wait_for
from trainer.data import load_dataset

RAW = {"content-type": "application/octet-stream", "accept": "application/octet-stream"}


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    prior = [0.1] * 10
    assert psi(prior, prior) == 0
    shifted = [0.55] + [0.05] * 9
    expected = (0.55 - 0.1) * math.log(5.5) + 9 * (0.05 - 0.1) * math.log(0.5)
    assert psi(shifted, prior) == pytest.approx(expected)
    assert psi([1.0] + [0.0] * 9, prior) > psi(shifted, prior) > 0.1  # an empty class is finite


@pytest.fixture
def drifting(tmp_path: Path) -> Iterator[Server]:
    with run_server(tmp_path, {"SOFTSERVE_DRIFT_WINDOW": "600"}) as running:
        yield running


def feed(client: httpx.Client, images: NDArray[np.uint8], singles: int = 20) -> None:
    """``images`` as ``singles`` one-image JSON requests, then raw batches of 100."""
    for image in images[:singles]:
        assert client.post("/predict", json={"pixels": image.tolist()}).status_code == 200
    for start in range(singles, len(images), 100):
        batch = images[start : start + 100]
        assert client.post("/predict", content=batch.tobytes(), headers=RAW).status_code == 200


@pytest.fixture
def test_set(real_data_dir: Path) -> NDArray[np.uint8]:
    """The first 2,000 Fashion-MNIST test images (N, 784)."""
    return load_dataset(real_data_dir).test_images[:2000].reshape(-1, 784)


def test_the_figures_stay_still_for_test_images_and_move_for_a_shifted_stream(
    drifting: Server, test_set: NDArray[np.uint8]
) -> None:
    images = test_set
    with drifting.client() as client:
        empty = client.get("/models/softmax/drift").json()
        assert empty["images"] == 0 and empty["flag_rate"] is None and empty["psi"] is None
        assert empty["expected_flag_rate"] == 0.005

        feed(client, images[:1000])
        still = client.get("/models/softmax/drift").json()
        assert still["images"] == still["assessed"] == 1000
        assert still["flag_rate"] <= 3 * still["expected_flag_rate"]
        assert still["alert"] is False
        assert abs(still["mean_intensity"] - still["training_intensity"]) < 0.02
        assert still["psi"] < 0.05
        assert sum(still["class_shares"].values()) == pytest.approx(1)
        assert 0.7 < still["mean_top_probability"] < 1
        assert "flagged as out of distribution" not in drifting.log_text()

        feed(client, strangers.inverted(images[1000:1400]))
        moved = client.get("/models/softmax/drift").json()
        assert moved["images"] == 1400
        assert moved["flagged"] >= still["flagged"] + 380
        assert moved["flag_ratio"] > 3 and moved["alert"] is True
        assert moved["mean_intensity"] > still["mean_intensity"] + 0.08  # 400 of 1400 inverted
        assert moved["psi"] > still["psi"] + 0.1
        assert moved["mean_top_probability"] > still["mean_top_probability"]

        wait_for(lambda: "flagged as out of distribution" in drifting.log_text())
        feed(client, strangers.noise(200), singles=0)  # still alerting: no second line
        metrics = client.get("/metrics").json()["drift"]["softmax"]
        assert metrics["images"] == 1600 and metrics["version"] == moved["version"]
        text = client.get("/metrics", headers={"accept": "text/plain"}).text
        assert f'softserve_drift_images{{model="softmax",version="{moved["version"]}"}} 1600.0' in (
            text
        )
        assert "softserve_drift_class_psi{" in text
        assert client.get("/models/binary/drift").json()["images"] == 0  # its own window
        time.sleep(2.5)  # two more checks of the window, each still past the factor
    assert drifting.log_text().count("flagged as out of distribution") == 1


def test_unknown_models_and_drift_off_are_clear_errors(tmp_path: Path) -> None:
    with run_server(tmp_path, {"SOFTSERVE_DRIFT_WINDOW": "0"}) as off, off.client() as client:
        assert_error(client.get("/models/softmax/drift"), 409, "drift_off", "drift figures are off")
        assert client.get("/metrics").json()["drift"] == {}
        assert_error(client.get("/models/nope/drift"), 404, "unknown_model", "nope")


def test_several_workers_share_one_window(
    tmp_path: Path, test_images: tuple[NDArray[np.uint8], NDArray[np.uint8]]
) -> None:
    """Each worker counts what it answered; each answers with every worker's count."""
    images = test_images[0].reshape(-1, 784)[:10]
    with run_server(tmp_path, entry="service", workers=2) as server:
        sent: dict[int, int] = {}
        for _ in range(400):  # a new connection each time, until both workers have answered
            with server.client() as client:
                pid = client.get("/health/live").json()["pid"]
                response = client.post("/predict", content=images.tobytes(), headers=RAW)
                assert response.status_code == 200
                sent[pid] = sent.get(pid, 0) + len(images)
            if len(sent) == 2 and sum(sent.values()) >= 200:
                break
        assert len(sent) == 2, "one worker answered every connection"
        total = sum(sent.values())
        answered: dict[int, dict[str, object]] = {}

        def both_report_the_total() -> bool:
            with server.client() as client:
                pid = client.get("/health/live").json()["pid"]
                figures = client.get("/models/softmax/drift").json()
            if figures["images"] == total:
                answered[pid] = figures
            return len(answered) == 2

        wait_for(both_report_the_total)
        assert all(f["workers"] == 2 for f in answered.values())
        with server.client() as client:
            text = client.get("/metrics", headers={"accept": "text/plain"}).text
        version = next(iter(answered.values()))["version"]
        line = f'softserve_drift_images{{model="softmax",version="{version}"}} {float(total)}'
        assert line in text.splitlines()
