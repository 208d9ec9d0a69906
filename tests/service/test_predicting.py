"""The prediction pipeline (service.predicting) on its own: what it decides, in which order it
finds problems, and what it reads; and the fast path's agreement with the router."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

import service.app
from service import inputs
from service.app import SoftserveApp, create_app
from service.config import Settings
from service.edge import Observer
from service.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from service.fastpath import FastPath
from service.logs import AccessLog, Writer
from service.modelstore.folder import FolderModelStore
from service.predicting import NOTHING_DECLARED, Body, Limits, Predictor, PredictRequest
from service.registry import Registry
from service.routes.predict import FAST_ROUTES, parse_request, reply
from service.telemetry import Telemetry
from tests.support.server import copy_shipped_models
from trainer import artifacts, linear

T = TypeVar("T")
LIMITS = Limits(max_body_bytes=2**20, max_batch=4, max_image_pixels=4096)
IMAGES = np.random.default_rng(0).integers(0, 256, (3, 784), dtype=np.uint8)


def quiet(telemetry: Telemetry) -> Observer:
    """Metrics as the app keeps them, and no access log."""
    access = AccessLog(Writer(2, "json", capacity=1), enabled=False, sample=1)
    return Observer(telemetry, access, "replica-test")


def run(coroutine: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await coroutine

    return asyncio.run(wrapped())


@pytest.fixture
def predictor(tmp_path: Path) -> Predictor:
    store = FolderModelStore(copy_shipped_models(tmp_path / "models"))
    registry = Registry(store, ("softmax", "binary"))
    registry.refresh()
    return Predictor(registry, LIMITS, Telemetry(dict, dict), "softmax")


class Pixels:
    """A payload that counts how often it was read."""

    declared = NOTHING_DECLARED

    def __init__(self, pixels: inputs.Pixels) -> None:
        self.value = pixels
        self.reads = 0

    async def pixels(self, limits: Limits) -> inputs.Pixels:
        self.reads += 1
        return self.value


def body(content_type: str | None, data: bytes) -> tuple[Body, list[int]]:
    reads: list[int] = []

    async def read() -> bytes:
        reads.append(len(data))
        return data

    return Body(content_type, read), reads


@pytest.mark.parametrize("name", ["softmax", "binary"])
def test_predictions_are_the_artifacts_math(predictor: Predictor, name: str) -> None:
    prediction = run(predictor.predict(PredictRequest(model=name), Pixels(IMAGES)))
    artifact = artifacts.load(predictor.registry.store.location + f"/{name}.npz")
    labels, proba = linear.predict(
        artifact.kind, artifact.weights, artifact.bias, linear.pixels_to_features(IMAGES)
    )
    assert prediction.served.name == name
    assert prediction.labels.tolist() == labels.tolist()
    # one matrix product gives the logits and the assessment's projections: rounding may differ
    np.testing.assert_allclose(prediction.proba, proba, rtol=1e-5, atol=1e-7)
    assert len(prediction) == 3


def test_the_default_model_answers_without_a_name(predictor: Predictor) -> None:
    prediction = run(predictor.predict(PredictRequest(), Pixels(IMAGES)))
    assert prediction.served.name == "softmax"
    sample = predictor.telemetry.registry.get_sample_value(
        "softserve_predictions_total", {"model": "softmax"}
    )
    assert sample == 3.0


def test_a_kept_version_answers_when_named(predictor: Predictor) -> None:
    base = predictor.registry.get("softmax").artifact
    older = artifacts.Artifact(
        base.weights * 0, base.bias, base.meta | {"version": "20200101T000000Z-00000000"}
    )
    store = predictor.registry.store
    assert isinstance(store, FolderModelStore)
    store.add_version("softmax", older)
    prediction = run(predictor.predict(PredictRequest(version=older.version), Pixels(IMAGES)))
    assert prediction.served.version == older.version
    np.testing.assert_allclose(prediction.proba.sum(axis=1), 1.0, rtol=1e-6)
    uniform = linear.softmax(np.tile(base.bias, (3, 1)))  # zero weights: the bias alone
    np.testing.assert_allclose(prediction.proba, uniform, rtol=1e-6)
    assert predictor.registry.get("softmax").version == base.version  # active one unchanged


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (PredictRequest(model="nope"), NotFound, "unknown model 'nope'"),
        (PredictRequest(version="20200101T000000Z-00000000"), NotFound, "has no version"),
        (PredictRequest(model="binary", top_k=3), InvalidInput, "top_k applies to softmax"),
        (PredictRequest(top_k=3, raw=True), InvalidInput, "not raw ones"),
    ],
    ids=["unknown-model", "unknown-version", "top-k-binary", "top-k-raw"],
)
def test_problems_with_the_request_come_before_the_payload_is_read(
    predictor: Predictor, request_: PredictRequest, error: type[Exception], message: str
) -> None:
    payload = Pixels(IMAGES)
    with pytest.raises(error, match=message):
        run(predictor.predict(request_, payload))
    assert payload.reads == 0


def test_an_unsupported_body_is_never_read(predictor: Predictor) -> None:
    for content_type, message in ((None, "missing Content-Type"), ("text/plain", "text/plain")):
        payload, reads = body(content_type, b"x")
        with pytest.raises(UnsupportedMediaType, match=message):
            run(predictor.predict(PredictRequest(), payload))
        assert reads == []


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/json", orjson.dumps({"images": IMAGES.tolist()})),
        ("application/json; charset=utf-8", orjson.dumps({"images": IMAGES.tolist()})),
        ("application/octet-stream", IMAGES.tobytes()),
    ],
)
def test_each_body_reads_to_the_same_prediction(
    predictor: Predictor, content_type: str, data: bytes
) -> None:
    payload, reads = body(content_type, data)
    prediction = run(predictor.predict(PredictRequest(), payload))
    direct = run(predictor.predict(PredictRequest(), Pixels(IMAGES)))
    np.testing.assert_array_equal(prediction.proba, direct.proba)
    assert reads == [len(data)]


def test_the_limits_bound_the_batch(predictor: Predictor) -> None:
    payload, _ = body("application/octet-stream", bytes(784 * 5))
    with pytest.raises(PayloadTooLarge, match="batch of 5 images is over the limit of 4"):
        run(predictor.predict(PredictRequest(), payload))


def test_rendered_answers(predictor: Predictor) -> None:
    prediction = run(predictor.predict(PredictRequest(top_k=2), Pixels(IMAGES)))
    as_json = orjson.loads(reply(prediction, raw=False).body)
    assert [p["label"] for p in as_json["predictions"]] == prediction.labels.tolist()
    for row, entry in zip(prediction.proba, as_json["predictions"], strict=True):
        assert entry["probabilities"] == pytest.approx(row.tolist(), rel=1e-6)
        assert [k["label"] for k in entry["top_k"]] == np.argsort(-row)[:2].tolist()
    raw = reply(run(predictor.predict(PredictRequest(raw=True), Pixels(IMAGES))), raw=True)
    headers = dict(raw.headers)
    assert headers[b"x-softserve-shape"] == b"3,10"
    np.testing.assert_array_equal(np.frombuffer(raw.body, "<f4").reshape(3, 10), prediction.proba)


@pytest.mark.parametrize(
    ("query", "named", "expected"),
    [
        (b"", None, PredictRequest()),
        (b"model=binary&top_k=3", None, PredictRequest("binary", None, 3)),
        (b"version=20200101T000000Z-00000000", "binary",
         PredictRequest("binary", "20200101T000000Z-00000000")),
    ],
)  # fmt: skip
def test_parse_request(query: bytes, named: str | None, expected: PredictRequest) -> None:
    assert parse_request(query, None, named=named) == expected
    assert parse_request(query, "application/octet-stream", named=named).raw


# --- the fast path and the router -------------------------------------------------------------


def concrete(path: str) -> str:
    """A path the template matches: every parameter filled in."""
    filled = path.replace("{name}", "softmax").replace("{job_id}", "0" * 32)
    return filled.replace("{version}", "20261122T045742Z-1f3a1006")


def fast_path(tmp_path: Path) -> tuple[SoftserveApp, FastPath]:
    app = create_app(Settings(model_dir=tmp_path / "models", state_dir=tmp_path / "state"))
    assert isinstance(app, SoftserveApp) and isinstance(app.outer, FastPath)
    return app, app.outer


def routed(app: SoftserveApp, method: str, path: str) -> str | None:
    """The template of the route FastAPI's own router picks for ``method path`` (the request
    goes through the framework alone; outside the lifespan it is answered 503 or 4xx)."""
    scope: dict[str, Any] = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(),
        "query_string": b"", "headers": [], "root_path": "", "http_version": "1.1",
        "scheme": "http", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    run(FastAPI.__call__(app, scope, receive, send))
    route = scope.get("route")
    return getattr(route, "path", None)


def test_the_fast_path_answers_exactly_the_routes_it_twins(tmp_path: Path) -> None:
    """For every documented operation, the fast path takes the request if and only if the
    operation is one of its twins, and then it is the route FastAPI's router picks too."""
    app, fast = fast_path(tmp_path)
    twins = {(route.method, route.path) for route in service.app.FAST_ROUTES}
    assert {("POST", "/predict"), ("POST", "/v2/models/{name}/infer")} <= twins
    seen = set()
    for template, operations in app.openapi()["paths"].items():
        for method in (m.upper() for m in operations):
            path = concrete(template)
            assert routed(app, method, path) == template, (method, path)
            matched = fast.match(method, path)
            assert (matched is not None) == ((method, template) in twins), (method, template)
            if matched is not None:
                assert matched[0].path == template
                seen.add((method, template))
    assert seen == twins


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/predict"),
        ("POST", "/predict/"),
        ("POST", "/models/predict"),
        ("POST", "/models/a/b/predict"),
        ("POST", "/models//predict"),
        ("PUT", "/models/softmax/predict"),
    ],
)
def test_other_requests_pass_through(tmp_path: Path, method: str, path: str) -> None:
    _, fast = fast_path(tmp_path)
    assert fast.match(method, path) is None


def test_before_startup_and_for_multipart_the_framework_answers(tmp_path: Path) -> None:
    """No predictor yet (outside the lifespan), or a multipart body: handed on untouched."""
    handed: list[str] = []

    async def framework(scope: Scope, receive: Receive, send: Send) -> None:
        handed.append(scope["path"])

    async def never() -> Message:
        raise AssertionError("the body was read")

    async def send(message: Message) -> None:
        raise AssertionError("the fast path answered")

    telemetry = Telemetry(dict, dict)

    def make(predictor: Callable[[], Predictor | None]) -> FastPath:
        return FastPath(
            framework,
            FAST_ROUTES,
            predictor=predictor,
            max_body_bytes=1024,
            observer=quiet(telemetry),
        )

    scope = {"type": "http", "method": "POST", "path": "/predict", "query_string": b"",
             "headers": [(b"content-type", b"application/json")]}  # fmt: skip
    run(make(lambda: None)(scope, never, send))
    store = FolderModelStore(copy_shipped_models(tmp_path / "models"))
    registry = Registry(store, ())
    registry.refresh()
    predictor = Predictor(registry, LIMITS, telemetry, "softmax")
    upload = scope | {"headers": [(b"content-type", b"multipart/form-data; boundary=x")]}
    run(make(lambda: predictor)(upload, never, send))
    assert handed == ["/predict", "/predict"]


def test_a_declined_request_is_the_frameworks_alone_even_when_it_fails(tmp_path: Path) -> None:
    """What the framework does with a declined request (here: raises) is not the fast path's to
    answer, count or log: the edge around it does that, once."""
    store = FolderModelStore(copy_shipped_models(tmp_path / "models"))
    registry = Registry(store, ())
    registry.refresh()
    telemetry = Telemetry(dict, dict)
    finished: list[int] = []

    class Counting(Observer):
        def finish(self, scope: Scope, route: str, status: int, *args: Any, **kw: Any) -> None:
            finished.append(status)

    async def framework(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("the framework broke")

    async def never() -> Message:
        raise AssertionError("the body was read")

    fast = FastPath(
        framework, FAST_ROUTES,
        predictor=lambda: Predictor(registry, LIMITS, telemetry, "softmax"),
        max_body_bytes=1024, observer=Counting(telemetry, quiet(telemetry).access, "replica-test"),
    )  # fmt: skip
    scope = {"type": "http", "method": "POST", "path": "/predict", "query_string": b"",
             "headers": [(b"content-type", b"multipart/form-data; boundary=x")]}  # fmt: skip
    sent = Sent()
    with pytest.raises(RuntimeError, match="the framework broke"):
        run(fast(scope, never, sent))
    assert sent.messages == [] and finished == []


class Sent:
    """An ASGI ``send`` that keeps what the app sent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.messages if "status" in m), None)

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        return dict(start["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages)


def serve(
    tmp_path: Path, headers: list[tuple[bytes, bytes]], chunks: list[Message]
) -> tuple[Sent, list[str]]:
    """One request through a FastPath on the shipped models: what it sent, and the paths it
    handed on to the framework."""
    store = FolderModelStore(copy_shipped_models(tmp_path / "models"))
    registry = Registry(store, ())
    registry.refresh()
    telemetry = Telemetry(dict, dict)
    predictor = Predictor(registry, LIMITS, telemetry, "softmax")
    handed: list[str] = []

    async def framework(scope: Scope, receive: Receive, send: Send) -> None:
        handed.append(scope["path"])

    messages = iter(chunks)

    async def receive() -> Message:
        return next(messages)

    fast = FastPath(
        framework, FAST_ROUTES, predictor=lambda: predictor, max_body_bytes=2**20,
        observer=quiet(telemetry),
    )  # fmt: skip
    scope = {"type": "http", "method": "POST", "path": "/predict", "query_string": b"",
             "headers": headers}  # fmt: skip
    sent = Sent()
    run(fast(scope, receive, sent))
    return sent, handed


def whole(body: bytes) -> list[Message]:
    return [{"type": "http.request", "body": body, "more_body": False}]


JSON_BODY = orjson.dumps({"pixels": [0] * 784})


def test_a_fast_answer_declares_its_length(tmp_path: Path) -> None:
    sent, _ = serve(tmp_path, [(b"content-type", b"application/json")], whole(JSON_BODY))
    assert sent.status == 200
    assert int(sent.headers[b"content-length"]) == len(sent.body) > 0


def test_the_first_of_a_repeated_header_counts_as_starlette_reads_it(tmp_path: Path) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-type", b"application/json")]
    sent, _ = serve(tmp_path, headers, whole(JSON_BODY))
    assert sent.status == 415
    assert b"text/plain" in sent.body


def test_a_client_that_leaves_mid_body_gets_nothing(tmp_path: Path) -> None:
    chunks: list[Message] = [
        {"type": "http.request", "body": JSON_BODY[:100], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent, handed = serve(tmp_path, [(b"content-type", b"application/json")], chunks)
    assert sent.messages == [] and handed == []


def test_only_a_body_over_the_size_limit_closes_the_connection(tmp_path: Path) -> None:
    raw = [(b"content-type", b"application/octet-stream")]
    batch, _ = serve(tmp_path, raw, whole(bytes(784 * (LIMITS.max_batch + 1))))
    assert batch.status == 413 and b"batch_too_large" in batch.body
    assert b"connection" not in batch.headers  # the body was read whole: the connection stays
    declared = [*raw, (b"content-length", str(2**20 + 1).encode())]
    body, _ = serve(tmp_path / "again", declared, whole(b""))
    assert body.status == 413 and body.headers[b"connection"] == b"close"


def test_a_missing_default_model_is_503_saying_why(tmp_path: Path) -> None:
    """The caller named no model: the server is not ready for it, the caller is not wrong."""
    store = FolderModelStore(copy_shipped_models(tmp_path / "models"))
    registry = Registry(store, ())
    registry.refresh()
    predictor = Predictor(registry, LIMITS, Telemetry(dict, dict), "shirt")
    with pytest.raises(ServiceUnavailable, match=r"default model 'shirt' is not loaded: no shirt"):
        run(predictor.predict(PredictRequest(), Pixels(IMAGES)))
    with pytest.raises(NotFound, match="unknown model 'shirt'"):  # named by the caller
        run(predictor.predict(PredictRequest(model="shirt"), Pixels(IMAGES)))
