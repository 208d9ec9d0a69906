"""GET /metrics (JSON, Prometheus text, OpenMetrics), over HTTP against a real uvicorn process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.jobs.record import STATUSES
from tests.support.requests import png
from tests.support.server import SHIPPED
from trainer import artifacts
from trainer.artifacts import Artifact
from trainer.metrics import BINARY_METRICS, SPLITS

Images = tuple[NDArray[np.uint8], NDArray[np.uint8]]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def shipped() -> dict[str, Artifact]:
    return {name: artifacts.load(SHIPPED / f"{name}.npz") for name in ("softmax", "binary")}


def index(samples: Iterable[Sample]) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value for s in samples}


def scrape(client: httpx.Client) -> Samples:
    """Every sample of the Prometheus text exposition, by name and labels."""
    response = client.get("/metrics", headers={"Accept": "text/plain"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = list(text_string_to_metric_families(response.text))
    return index(s for family in families for s in family.samples)


def parse_openmetrics(text: str) -> list[Metric]:
    # The OpenMetrics parser has no annotations; its text-format twin returns the same types.
    parse = cast(
        Callable[[str], Iterable[Metric]], openmetrics_parser.text_string_to_metric_families
    )
    return list(parse(text))


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 if it is absent (a counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
def test_metrics_json_has_each_models_latest_numbers(
    client: httpx.Client, shipped: dict[str, Artifact], accept: str | None
) -> None:
    response = client.get("/metrics", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert sorted(body["models"]) == ["binary", "softmax"]
    for name, entry in body["models"].items():
        artifact = shipped[name]
        metrics = artifact.meta["metrics"]
        assert entry["version"] == artifact.version
        assert entry["kind"] == artifact.kind
        assert entry["created_at"] == artifact.created_at
        assert entry["loaded_at"].endswith("Z")
        assert entry["source"] == {"artifact": f"{name}.npz", "job_id": None}
        for split in SPLITS:
            assert entry[split] == metrics[split]
            assert isinstance(entry[split]["loss"], float)
            assert isinstance(entry[split]["accuracy"], float)
    assert set(body["models"]["binary"]["test"]) >= {"loss", "accuracy", *BINARY_METRICS}
    assert not set(body["models"]["softmax"]["test"]) & set(BINARY_METRICS)
    assert body["jobs"] == {"counts": dict.fromkeys(STATUSES, 0), "running": []}


# --- Prometheus ---------------------------------------------------------------------------------


def test_prometheus_counts_requests_predictions_and_latency(
    client: httpx.Client, test_images: Images
) -> None:
    images = test_images[0]
    before = scrape(client)
    raw = {"content-type": "application/octet-stream"}
    upload = [("file", ("a.png", png(images[0]), "image/png"))]
    answered = [
        client.post("/predict", json={"images": images[:2].tolist()}),
        client.post("/predict", json={"images": images[2:4].tolist()}),
        client.post("/predict", content=images[4:7].tobytes(), headers=raw),
        client.post("/predict?model=binary", json={"images": images[:5].tolist()}),
        client.post("/models/softmax/predict", files=upload),  # the FastAPI route
        client.post("/predict", json={"pixels": [0] * 783}),
        client.post("/predict", content=images[0].tobytes(), headers={"content-type": "text/csv"}),
    ]
    assert [r.status_code for r in answered] == [200, 200, 200, 200, 200, 422, 415]
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    predict = {"route": "/predict", "method": "POST"}
    named = {"route": "/models/{name}/predict", "method": "POST"}
    assert delta("softserve_requests_total", **predict, status="200") == 4
    assert delta("softserve_requests_total", **predict, status="415") == 1
    assert delta("softserve_requests_total", **predict, status="422") == 1
    assert delta("softserve_requests_total", **named, status="200") == 1
    assert delta("softserve_predictions_total", model="softmax") == 2 + 2 + 3 + 1
    assert delta("softserve_predictions_total", model="binary") == 5
    assert delta("softserve_requests_total", route="/metrics", method="GET", status="200") == 1

    latency = "softserve_request_duration_seconds"
    labels = {**predict, "status": "200"}
    assert delta(f"{latency}_count", **labels) == 4
    assert delta(f"{latency}_sum", **labels) > 0
    buckets: list[tuple[float, float]] = []
    for (name, key), count in after.items():
        bucket = dict(key)
        le = bucket.pop("le", "")
        if name == f"{latency}_bucket" and bucket == labels:
            buckets.append((float(le), count))
    buckets.sort()
    assert len(buckets) >= 10
    assert buckets[-1] == (float("inf"), value(after, f"{latency}_count", **labels))
    counts = [count for _, count in buckets]
    assert counts == sorted(counts)  # cumulative


def test_prometheus_model_gauges_are_the_artifacts_metrics(
    client: httpx.Client, shipped: dict[str, Artifact]
) -> None:
    samples = scrape(client)
    for name, artifact in shipped.items():
        metrics = artifact.meta["metrics"]
        for split in SPLITS:
            key = {"model": name, "version": artifact.version, "split": split}
            acc = value(samples, "softserve_model_accuracy", **key)
            assert acc == pytest.approx(metrics[split]["accuracy"], rel=1e-12)
            loss = value(samples, "softserve_model_loss", **key)
            assert loss == pytest.approx(metrics[split]["loss"], rel=1e-12)
            for metric in BINARY_METRICS:
                sample = (
                    "softserve_model_binary_metric",
                    frozenset({**key, "metric": metric}.items()),
                )
                if artifact.kind == "binary":
                    assert samples[sample] == pytest.approx(metrics[split][metric], rel=1e-12)
                else:
                    assert sample not in samples
    for state in STATUSES:
        assert samples[("softserve_jobs", frozenset({("state", state)}))] == 0


def test_openmetrics_parses_and_agrees(client: httpx.Client, shipped: dict[str, Artifact]) -> None:
    assert client.post("/predict", json={"pixels": [0] * 784}).status_code == 200
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(response.text)}
    assert families["softserve_requests"].type == "counter"
    assert families["softserve_predictions"].type == "counter"
    assert families["softserve_request_duration_seconds"].type == "histogram"
    assert families["softserve_model_accuracy"].type == "gauge"
    samples = index(s for f in families.values() for s in f.samples)
    ok = {"route": "/predict", "method": "POST", "status": "200"}
    assert value(samples, "softserve_requests_total", **ok) >= 1
    assert value(samples, "softserve_predictions_total", model="softmax") >= 1
    softmax = shipped["softmax"]
    key = {"model": "softmax", "version": softmax.version, "split": "test"}
    assert value(samples, "softserve_model_accuracy", **key) == pytest.approx(
        softmax.meta["metrics"]["test"]["accuracy"]
    )
