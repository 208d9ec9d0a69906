"""Hostile input against the whole service, over HTTP to a real uvicorn process with a token set:
what the /predict catalogue (test_predict_api.py) and the training tests do not already send.
Each case gets its documented 4xx in the one JSON error shape, with a message naming the problem,
within a bounded time; afterwards the server is still ready and right, and no job was created."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from tests.service.catalogue import (
    BOUND,
    JSON,
    ONE,
    PIXELS,
    RAW,
    case,
    check_case,
    pixels_with,
    send,
    typed,
)
from tests.service.reference import check_predictions
from tests.support.server import Server, run_server
from tests.synthetic import write_dataset
from trainer import artifacts

TOKEN = "h0stile-Token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = "0123456789abcdef0123456789abcdef"  # well-formed, never created
MAX_BATCH = 1024  # the default SOFTSERVE_MAX_BATCH


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = write_dataset(tmp_path_factory.mktemp("data") / "synthetic")
    env = {"SOFTSERVE_API_TOKEN": TOKEN, "SOFTSERVE_DATA_DIR": str(data)}
    with run_server(tmp_path_factory.mktemp("hostile"), env) as running:
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=BOUND) as c:
        yield c


# --- request builders ----------------------------------------------------------------------------


def body(data: bytes, content_type: str = JSON) -> dict[str, Any]:
    """A body sent with the token (harmless where none is needed)."""
    return {"content": data, "headers": {"content-type": content_type, **AUTH}}


def as_json(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` as a JSON body, with the token."""
    return body(json.dumps(fields).encode())


def pixels_json(last: str) -> bytes:
    """``{"pixels": [...]}`` with 783 zeros and `last`, written as is (any JSON number text)."""
    return b'{"pixels": [' + b"0, " * 783 + last.encode() + b"]}"


def nested(depth: int, key: str) -> bytes:
    return b'{"' + key.encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"


def bearer(value: str) -> dict[str, Any]:
    return {"headers": {"Authorization": value}}


BATCH_28X28 = [np.zeros((28, 28), dtype=int).tolist(), np.zeros((28, 28), dtype=int).tolist()]
BATCH_28X28[1][3][4] = False
ACTIVATE = "/models/softmax/activate"
NOT_AN_OBJECT = "body: Input should be a valid dictionary"
NOT_JSON = "body is not valid JSON"
HEX_IDS = "job ids are 32 hex digits"

CATALOGUE = [
    # JSON that is not an object, where an object belongs
    case("predict-null", "/predict", typed(b"null", JSON), 422, "invalid_input",
         "expected a JSON object with 'pixels' or 'images', got null"),
    case("predict-string", "/predict", typed(b'"pixels"', JSON), 422, "invalid_input",
         "got the string 'pixels'"),
    case("predict-number", "/models/binary/predict", typed(b"784", JSON), 422, "invalid_input",
         "expected a JSON object with 'pixels' or 'images', got the number 784"),
    case("train-string", "/train", body(b'"softmax"'), 422, "invalid_request", NOT_AN_OBJECT),
    case("train-number", "/train", body(b"10"), 422, "invalid_request", NOT_AN_OBJECT),
    case("activate-null", ACTIVATE, body(b"null"), 422, "invalid_request", NOT_AN_OBJECT),
    case("activate-list", ACTIVATE, body(b'["v1"]'), 422, "invalid_request", NOT_AN_OBJECT),
    case("activate-string", ACTIVATE, body(b'"v1"'), 422, "invalid_request", NOT_AN_OBJECT),
    # numbers JSON allows and no pixel can be
    case("pixel-5000-digits", "/predict", typed(pixels_json("1" + "0" * 5000), JSON), 422,
         "invalid_pixels", "pixel 783: expected a finite number 0..255, got inf"),
    case("pixel-minus-5000-digits", "/predict", typed(pixels_json("-" + "9" * 5000), JSON), 422,
         "invalid_pixels", "pixel 783: expected a finite number 0..255, got -inf"),
    case("pixel-1e999999", "/predict", typed(pixels_json("1e999999"), JSON), 422,
         "invalid_pixels", "pixel 783: expected a finite number 0..255, got inf"),
    case("pixel-minus-1e999999", "/predict", typed(pixels_json("-1e999999"), JSON), 422,
         "invalid_pixels", "pixel 783: expected a finite number 0..255, got -inf"),
    case("pixel-true", "/predict", {"json": {"pixels": [True] * 784}}, 422, "invalid_pixels",
         "pixel 0: expected a number 0..255, got true"),
    case("pixel-false-28x28", "/predict", {"json": {"images": BATCH_28X28}}, 422,
         "invalid_pixels", "image 1, pixel 88: expected a number 0..255, got false"),
    case("train-epochs-5000-digits", "/train", body(b'{"epochs": 1' + b"0" * 5000 + b"}"), 422,
         "invalid_request", "a number in the body has more than 4300 digits"),
    # nesting, sizes, encodings
    case("predict-nested-100000", "/predict", typed(nested(100_000, "pixels"), JSON), 400,
         "invalid_json", "depth limit exceeded"),
    case("predict-unclosed-100000", "/predict", typed(b"[" * 100_000, JSON), 400,
         "invalid_json", "depth limit exceeded"),
    case("train-nested-100000", "/train", body(nested(100_000, "positive")), 400,
         "invalid_json", "nested too deeply"),
    case("activate-nested-100000", ACTIVATE, body(nested(100_000, "version")), 400,
         "invalid_json", "nested too deeply"),
    case("batch-over-default-limit", "/predict", {"json": {"images": [PIXELS] * (MAX_BATCH + 1)}},
         413, "batch_too_large", f"batch of {MAX_BATCH + 1} images is over the limit of 1024"),
    case("duplicate-key-last-wins", "/predict", typed(b'{"pixels": ' + json.dumps(PIXELS).encode()
         + b', "pixels": [1]}', JSON), 422, "invalid_pixels", "expected 784 pixels, got 1"),
    case("predict-invalid-utf8", "/predict", typed(b'{"pixels\xff": [0]}', JSON), 400,
         "invalid_json", "not valid UTF-8"),
    case("train-invalid-utf8", "/train", body(b'{"model": "soft\xffmax"}'), 400, "invalid_json",
         "not UTF-8"),
    case("train-malformed", "/train", body(b'{"epochs": 3,'), 400, "invalid_json", NOT_JSON),
    case("activate-truncated", ACTIVATE, body(b'{"version": "2026'), 400, "invalid_json",
         NOT_JSON),
    case("huge-string-pixels", "/predict", {"json": {"pixels": "x" * 4_000_000}}, 422,
         "invalid_pixels",
         "expected an array of 784 pixels, got the string 'xxxxxxxxxxxxxxxxxxxx'"),
    case("huge-key", "/predict", {"json": {"k" * 1_000_000: PIXELS}}, 422, "invalid_input",
         "unknown field 'kkkkkkkkkk"),
    case("train-huge-key", "/train", as_json({"k" * 1_000_000: 1}), 422, "invalid_request",
         "kkkkkkkkkk"),
    # content types
    case("predict-json-suffix", "/predict", typed(json.dumps(ONE["json"]).encode(),
         "application/vnd.api+json"), 415, "unsupported_media_type",
         "unsupported Content-Type 'application/vnd.api+json'"),
    case("predict-empty-content-type", "/predict", typed(b"{}", ""), 415,
         "unsupported_media_type", "missing Content-Type"),
    case("train-text-plain", "/train", body(b'{"epochs": 1}', "text/plain"), 415,
         "unsupported_media_type", "unsupported Content-Type 'text/plain'"),
    case("train-form", "/train", {"data": {"epochs": "1"}, "headers": AUTH}, 415,
         "unsupported_media_type", "'application/x-www-form-urlencoded'"),
    case("train-no-content-type", "/train", {"content": b'{"epochs": 1}', "headers": AUTH}, 415,
         "unsupported_media_type", "missing Content-Type"),
    case("activate-text-plain", ACTIVATE, body(b'{"version": "v1"}', "text/plain"), 415,
         "unsupported_media_type", "unsupported Content-Type 'text/plain'"),
    # every invalid training parameter not in test_train_api.py
    case("epochs-negative", "/train", as_json({"epochs": -1}), 422, "invalid_request", "epochs"),
    case("epochs-huge", "/train", as_json({"epochs": 10**30}), 422, "invalid_request", "epochs"),
    case("epochs-float-1.5", "/train", as_json({"epochs": 1.5}), 422, "invalid_request", "epochs"),
    case("lr-infinity", "/train", body(b'{"learning_rate": Infinity}'), 422, "invalid_request",
         "learning_rate: Input should be a finite number"),
    case("lr-string", "/train", as_json({"learning_rate": "0.1"}), 422, "invalid_request",
         "learning_rate"),
    case("lr-huge", "/train", as_json({"learning_rate": 1e300}), 422, "invalid_request",
         "learning_rate"),
    case("batch-size-huge", "/train", as_json({"batch_size": 10**9}), 422, "invalid_request",
         "batch_size"),
    case("l2-nan", "/train", body(b'{"l2": NaN}'), 422, "invalid_request", "l2"),
    case("seed-2-64", "/train", as_json({"seed": 2**64}), 422, "invalid_request", "seed"),
    case("seed-float", "/train", as_json({"seed": 1.5}), 422, "invalid_request", "seed"),
    case("model-null", "/train", as_json({"model": None}), 422, "invalid_request", "model"),
    case("model-capitalised", "/train", as_json({"model": "Softmax"}), 422, "invalid_request",
         "model"),
    case("positive-a-string", "/train", as_json({"model": "binary", "positive": "Shirt"}), 422,
         "invalid_request", "positive: Input should be a valid list"),
    case("positive-bool", "/train", as_json({"model": "binary", "positive": [True]}), 422,
         "invalid_request", "positive"),
    case("positive-index-10", "/train", as_json({"model": "binary", "positive": [10]}), 422,
         "invalid_parameter", "unknown class '10'"),
    case("positive-index-negative", "/train", as_json({"model": "binary", "positive": [-1]}), 422,
         "invalid_parameter", "unknown class '-1'"),
    case("negative-unknown", "/train", as_json({"model": "binary", "negative": ["Unicorn"]}), 422,
         "invalid_parameter", "unknown class 'Unicorn'"),
    case("positive-and-negative", "/train",
         as_json({"model": "binary", "positive": ["Shirt"], "negative": ["shirt", "Coat"]}), 422,
         "invalid_parameter", "a class cannot be both positive and negative: 'Shirt'"),
    case("every-class-positive", "/train",
         as_json({"model": "binary", "positive": [str(i) for i in range(10)]}), 422,
         "invalid_parameter", "a binary model needs at least one negative class"),
    case("force-1", "/train", as_json({"force": 1}), 422, "invalid_request", "force"),
    case("force-null", "/train", as_json({"force": None}), 422, "invalid_request", "force"),
    case("positive-on-softmax", "/train", as_json({"model": "softmax", "positive": ["Shirt"]}),
         422, "invalid_parameter", "positive/negative classes are for binary models"),
    case("negative-on-softmax", "/train", as_json({"negative": [0]}), 422, "invalid_parameter",
         "positive/negative classes are for binary models"),
    # the token is checked before the body is read: without it, nothing about the body is said
    *[case(f"token-before-body-{what}-{name}", url,
           {"content": b'{"epochs": ', "headers": {"content-type": JSON, **header}}, status,
           code, message)
      for what, url in (("train", "/train"), ("activate", "/models/softmax/activate"))
      for name, header, status, code, message in (
          ("missing", {}, 401, "missing_token", "this endpoint needs a token"),
          ("wrong", {"Authorization": "Bearer nope"}, 403, "invalid_token", "not valid"))],
    # job ids
    *[case(f"job-{name}-{method.lower()}{suffix.replace('/', '-')}",
           f"{method} /train/{job}{suffix}", {"headers": AUTH}, 404, "unknown_job", HEX_IDS)
      for name, job in (("dot-dot-encoded", "%2e%2e"), ("33-hex", "a" * 33),
                        ("uppercase", JOB.upper()), ("unicode", "%C3%A9" * 32),
                        ("nul", "%00"), ("10000-chars", "f" * 10_000))
      for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/events"))],
    case("job-traversal-get", "GET /train/..%2F..%2Fmodels", {}, 404, "not_found",
         "no such endpoint: GET /train/../../models"),
    case("job-traversal-delete", "DELETE /train/..%2F..%2Fmodels%2Fsoftmax.npz", {"headers": AUTH},
         404, "not_found", "no such endpoint: DELETE /train/../../models/softmax.npz"),
    case("job-empty-events", "GET /train//events", {}, 404, "not_found",
         "no such endpoint: GET /train//events"),
    # versions and model names
    case("version-parent", ACTIVATE, as_json({"version": ".."}), 422, "invalid_version",
         "invalid version '..'"),
    case("version-dot-dot-inside", ACTIVATE, as_json({"version": "v1..npz"}), 422,
         "invalid_version", "invalid version 'v1..npz'"),
    case("version-hidden", ACTIVATE, as_json({"version": ".hidden"}), 422, "invalid_version",
         "invalid version '.hidden': versions look like 20261122T045742Z-1f3a1006"),
    case("version-81-chars", ACTIVATE, as_json({"version": "a" * 81}), 422, "invalid_version",
         f"invalid version '{'a' * 80}':"),
    case("version-100000-chars", ACTIVATE, as_json({"version": "a" * 100_000}), 422,
         "invalid_version", f"invalid version '{'a' * 80}':"),
    case("version-null", ACTIVATE, as_json({"version": None}), 422, "invalid_request", "version"),
    case("version-malformed-binary", "/models/binary/activate", as_json({"version": "nope"}), 422,
         "invalid_version", "invalid version 'nope'"),
    case("version-unknown-binary", "/models/binary/activate",
         as_json({"version": "20200101T000000Z-00000000"}), 404, "unknown_version",
         "model 'binary' has no version '20200101T000000Z-00000000'"),
    *[case(f"predict-version-{name}", f"POST /predict?version={version}",
           as_json({"pixels": [0] * 784}), status, code, message)
      for name, version, status, code, message in (
          ("dot-dot", "..", 422, "invalid_version", "invalid version '..'"),
          ("traversal", "..%2F..%2Fsoftmax", 422, "invalid_version", "invalid version '../../sof"),
          ("nul", "%00", 422, "invalid_version", "invalid version '\\x00'"),
          ("10000-chars", "9" * 10_000, 422, "invalid_version", "invalid version '999999"),
          ("empty", "", 422, "invalid_version", "invalid version ''"),
          ("unknown", "20200101T000000Z-00000000", 404, "unknown_version",
           "model 'softmax' has no version '20200101T000000Z-00000000'"))],
    *[case(f"name-{name}-{what}", f"{method} /models/{model}{suffix}", request, 404, code, message)
      for name, model, code, message in (
          ("dot-dot", "%2E%2E", "unknown_model", "invalid model name '..'"),
          ("10000-chars", "m" * 10_000, "unknown_model", "invalid model name 'mmmmmmmm"),
          ("nul", "soft%00max", "unknown_model", "invalid model name 'soft\\x00max'"),
          ("traversal", "..%2Fsoftmax", "not_found", "no such endpoint"))
      for what, method, suffix, request in (
          ("get", "GET", "", {}), ("versions", "GET", "/versions", {}),
          ("activate", "POST", "/activate", as_json({"version": "v1"})))],
    # tokens, on each of the three guarded routes
    *[case(f"token-{name}-{what}", url, {**request, **bearer(value)}, status, code, message)
      for name, value, status, code, message in (
          ("empty", "", 401, "missing_token", "this endpoint needs a token"),
          ("wrong", "Bearer not-the-token", 403, "invalid_token", "the token is not valid"),
          ("other-case", f"Bearer {TOKEN.upper()}", 403, "invalid_token", "the token is not valid"),
          ("bearer-alone", "Bearer", 401, "missing_token", "expected 'Bearer <token>'"),
          ("basic", "Basic dXNlcjpwYXNz", 401, "missing_token", "expected 'Bearer <token>'"),
          ("100000-chars", "Bearer " + "t" * 100_000, 403, "invalid_token", "not valid"))
      for what, url, request in (
          ("train", "/train", {"json": {"epochs": 1}}),
          ("cancel", f"DELETE /train/{JOB}", {}),
          ("activate", ACTIVATE, {"json": {"version": "v1"}}))],
    # methods no resource allows
    *[case(f"method-{method.lower()}-{url.strip('/').replace('/', '-')}", f"{method} {url}",
           {"headers": AUTH}, 405, "method_not_allowed", f"method {method} is not allowed on ")
      for method, url in (("PUT", "/predict"), ("DELETE", "/models/softmax/predict"),
                          ("PATCH", "/train"), ("DELETE", "/train"), ("PUT", f"/train/{JOB}"),
                          ("POST", f"/train/{JOB}"), ("POST", f"/train/{JOB}/events"),
                          ("POST", "/models"), ("DELETE", "/models/softmax"),
                          ("POST", "/models/softmax/versions"), ("GET", ACTIVATE),
                          ("POST", "/metrics"), ("POST", "/health/ready"),
                          ("DELETE", "/health/live"))],
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "url", "request_kwargs", "status", "code", "message"), CATALOGUE
)
def test_hostile_catalogue(
    client: httpx.Client,
    method: str,
    url: str,
    request_kwargs: dict[str, Any],
    status: int,
    code: str,
    message: str,
) -> None:
    response = check_case(client, method, url, request_kwargs, status, code, message)
    assert TOKEN not in response.text


# --- accepted as they are: odd but valid, so answered like the plain request -------------------

PLAIN = json.dumps({"pixels": pixels_with(100, 5)}).encode()
TOLERATED: dict[str, tuple[dict[str, Any], int, float]] = {  # request, and its one pixel not 0
    "minus-zero": (typed(pixels_json("-0"), JSON), 783, 0),
    "exponent": (typed(pixels_json("0.5e1"), JSON), 783, 5),
    "5000-decimals": (typed(pixels_json("5." + "0" * 5000), JSON), 783, 5),
    "tiny-exponent": (typed(pixels_json("1e-999999"), JSON), 783, 0),
    "utf8-bom": (typed(b"\xef\xbb\xbf" + PLAIN, JSON), 100, 5),
    "charset-latin-1": (typed(PLAIN, "application/json; charset=latin-1"), 100, 5),
    "odd-parameter": (typed(PLAIN, "application/json; foo"), 100, 5),
    "upper-case-type": (typed(PLAIN, "APPLICATION/JSON"), 100, 5),
}


@pytest.mark.parametrize("form", list(TOLERATED))
def test_odd_but_valid_bodies_are_answered(server: Server, client: httpx.Client, form: str) -> None:
    request, index, value = TOLERATED[form]
    pixels = np.zeros((1, 784))
    pixels[0, index] = value
    artifact = artifacts.load(server.model_dir / "softmax.npz")
    check_predictions(send(client, "POST", "/predict", request), artifact, "softmax", pixels)


# --- afterwards ----------------------------------------------------------------------------------


def test_after_the_catalogue_the_server_is_ready_and_right(
    server: Server,
    client: httpx.Client,
    test_images: tuple[NDArray[np.uint8], NDArray[np.uint8]],
) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["problems"] == {}
    images, _ = test_images
    for name in ("softmax", "binary"):
        artifact = artifacts.load(server.model_dir / f"{name}.npz")
        check_predictions(
            client.post(f"/predict?model={name}", json={"images": images.tolist()}),
            artifact,
            name,
            images,
        )
        check_predictions(
            client.post(f"/models/{name}/predict", content=images.tobytes(), headers=RAW),
            artifact,
            name,
            images,
        )
    assert client.get("/train").json()["jobs"] == []  # no rejected request created a job
    log = server.log_text()
    assert "Traceback" not in log
    assert "unhandled error" not in log
    assert TOKEN not in log
