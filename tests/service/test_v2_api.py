"""/v2 over plain HTTP against a real uvicorn process: what the protocol's clients do not send.
Hostile bodies (each a 4xx with a message in V2's ``{"error": "<message>"}``, never a 5xx, within
a time bound), the framework's own errors under /v2, compression bombs, the length header rather
than Content-Type, readiness when not ready, and the metrics and access lines of /v2 routes."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.service.catalogue import send
from tests.service.reference import reference
from tests.support.server import SHIPPED, Server, run_server, wait_for
from trainer import artifacts

INFER = "/v2/models/softmax/infer"
LIMIT_BYTES = 64 * 1024
LIMIT_BATCH = 4
HEADER = "Inference-Header-Content-Length"


def tensor(shape: list[Any], datatype: str = "UINT8", **fields: Any) -> dict[str, Any]:
    return {"name": "pixels", "shape": shape, "datatype": datatype, **fields}


def request(*inputs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"inputs": list(inputs), **fields}


def one(**fields: Any) -> dict[str, Any]:
    return request(tensor([1, 784], data=[0] * 784), **fields)


def binary(header: dict[str, Any], data: bytes, **headers: str) -> dict[str, Any]:
    """A body of JSON then binary data, with the length header (overridable)."""
    text = orjson.dumps(header)
    return {"content": text + data, "headers": {HEADER: str(len(text)), **headers}}


def assert_v2_error(response: httpx.Response, status: int, message: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    assert message in body["error"], body["error"]
    assert response.headers["x-request-id"]
    assert len(response.content) <= 1024, response.content[:500]
    return str(body["error"])


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SOFTSERVE_MAX_BODY_BYTES": str(LIMIT_BYTES), "SOFTSERVE_MAX_BATCH": str(LIMIT_BATCH)}
    with run_server(tmp_path_factory.mktemp("limited"), env) as running:
        yield running


@pytest.fixture
def small(limited: Server) -> Iterator[httpx.Client]:
    with limited.client() as c:
        yield c


U8 = np.arange(784, dtype=np.uint8).reshape(1, 784)
HOSTILE = [
    ("header length past the body", {"content": b"{}", "headers": {HEADER: "999"}}, 400,
     "Inference-Header-Content-Length is 999, but the body has only 2 bytes"),
    ("header length not a number", {"content": b"{}", "headers": {HEADER: "12abc"}}, 400,
     "Inference-Header-Content-Length must be a whole number of bytes, got '12abc'"),
    ("header length negative", {"content": b"{}", "headers": {HEADER: "-1"}}, 400,
     "must be a whole number of bytes"),
    ("binary sizes short of the body",
     binary(request(tensor([1, 784], parameters={"binary_data_size": 784})), U8.tobytes() + b"x"),
     400, "declares binary_data_size 784, but 785 bytes follow the JSON header"),
    ("binary size beyond the body",
     binary(request(tensor([1, 784], parameters={"binary_data_size": 10**15})), U8.tobytes()),
     400, "declares binary_data_size 1000000000000000, but 784 bytes follow"),
    ("binary size not the shape's",
     binary(request(tensor([1, 784], "FP32", parameters={"binary_data_size": 784})),
            U8.tobytes()),
     422, "of shape [1, 784] and datatype FP32 is 3136 bytes, but binary_data_size is 784"),
    ("binary data nobody declared", binary(one(), b"\x00" * 10), 400,
     "10 bytes follow the JSON header, but no input declares binary_data_size"),
    ("binary data without the header",
     {"content": orjson.dumps(request(tensor([1, 784], parameters={"binary_data_size": 784})))
      + U8.tobytes()},
     400, "needs the Inference-Header-Content-Length header"),
    ("shape and data disagree", {"json": request(tensor([2, 784], data=[0] * 784))}, 422,
     "its shape holds 1568 values, but 'data' has 784"),
    ("nested data of the wrong size", {"json": request(tensor([1, 28, 28], data=[[0] * 28] * 27))},
     422, "its shape holds 784 values, but 'data' has 756"),
    ("ragged data", {"json": request(tensor([1, 784], data=[[0] * 392, [0] * 391]))}, 422,
     "not a rectangular array of numbers"),
    ("a negative dimension", {"json": request(tensor([-1, 784], data=[]))}, 422,
     "shape [-1, 784] holds no image"),
    ("a huge dimension", {"json": request(tensor([10**18, 784], data=[]))}, 413,
     "batch of 1000000000000000000 images is over the limit of 4"),
    ("a dimension past 64 bits", {"json": request(tensor([10**30, 784], data=[]))}, 422,
     "'shape' must be [N, 784] or [N, 28, 28], whole numbers"),
    ("a wrong image shape", {"json": request(tensor([1, 785], data=[0] * 785))}, 422,
     "'shape' must be [N, 784] or [N, 28, 28], got [1, 785]"),
    ("too many dimensions", {"json": request(tensor([1] * 40, data=[0]))}, 422,
     "got an array of 40 dimensions"),
    ("a BYTES input", {"json": request(tensor([1, 784], "BYTES", data=["a"] * 784))}, 422,
     "datatype 'BYTES': send UINT8, or any integer or float type"),
    ("a BOOL input", {"json": request(tensor([1, 784], "BOOL", data=[True] * 784))}, 422,
     "datatype 'BOOL'"),
    ("an unknown datatype", {"json": request(tensor([1, 784], "UINT9", data=[0] * 784))}, 422,
     "datatype 'UINT9'"),
    ("strings as data", {"json": request(tensor([1, 784], data=["7"] * 784))}, 422,
     "'data' must hold numbers only"),
    ("true in the data", {"json": request(tensor([1, 784], data=[True] * 784))}, 422,
     "'data' must hold numbers only, not true or false"),
    ("a value past 255", {"json": request(tensor([1, 784], data=[0] * 783 + [256]))}, 422,
     "image 0, pixel 783: value 256 is outside 0..255"),
    ("a negative value", {"json": request(tensor([1, 784], "INT16", data=[-1] + [0] * 783))},
     422, "image 0, pixel 0: value -1 is outside 0..255"),
    ("a fraction in a UINT8 tensor", {"json": request(tensor([1, 784], data=[0.5] * 784))}, 422,
     "is UINT8, but 'data' holds numbers that are not whole"),
    ("an infinite FP32 value",
     binary(request(tensor([1, 784], "FP32", parameters={"binary_data_size": 3136})),
            np.full(784, np.inf, "<f4").tobytes()),
     422, "image 0, pixel 0: expected a finite number 0..255, got inf"),
    ("a wrong input name", {"json": request({**tensor([1, 784], data=[0] * 784), "name": "x"})},
     422, "unknown input 'x': this model has one input, 'pixels'"),
    ("two inputs", {"json": request(tensor([1, 784], data=[0] * 784),
                                    tensor([1, 784], data=[0] * 784))},
     422, "expected one input tensor, 'pixels', got 2"),
    ("no inputs", {"json": {"inputs": []}}, 422, "'inputs' must be an array holding one tensor"),
    ("an unknown output", {"json": one(outputs=[{"name": "logits"}])}, 422,
     "unknown output 'logits': this model has the outputs 'probabilities', 'ood_score', "
     "'ood_flag'"),
    ("classification of 0",
     {"json": one(outputs=[{"name": "probabilities", "parameters": {"classification": 0}}])},
     422, "parameter 'classification' must be a whole number of at least 1"),
    ("an id that is a number", {"json": one(id=7)}, 422, "'id' must be a string"),
    ("nested junk", {"json": {"inputs": [[[[{"a": [1, {"b": None}]}]]]]}}, 422,
     "input must be an object, got an array of 1"),
    ("deep nesting", {"content": b"[" * 60_000}, 400, "body is not valid JSON"),
    ("not JSON", {"content": b"\xff\xfe"}, 400, "body is not valid JSON"),
    ("an empty body", {"content": b""}, 400, "empty body: expected a V2 inference request"),
    ("an array body", {"json": [1, 2]}, 422, "expected a JSON object with 'inputs'"),
    ("an unknown encoding", {"content": b"{}", "headers": {"content-encoding": "br"}}, 415,
     "unsupported Content-Encoding 'br': send gzip, deflate or identity"),
    ("gzip that is not", {"content": b"{}", "headers": {"content-encoding": "gzip"}}, 400,
     "body is not valid gzip data"),
    ("gzip cut short", {"content": gzip.compress(orjson.dumps(one()))[:-12],
                        "headers": {"content-encoding": "gzip"}}, 400, "body is not valid gzip"),
    ("a gzip bomb", {"content": gzip.compress(b" " * 50_000_000),
                     "headers": {"content-encoding": "gzip"}}, 413,
     f"decompressed (gzip) request body is over {LIMIT_BYTES} bytes"),
    ("a deflate bomb", {"content": zlib.compress(b"[" * 50_000_000),
                        "headers": {"content-encoding": "deflate"}}, 413,
     f"decompressed (deflate) request body is over {LIMIT_BYTES} bytes"),
    ("a shape nested 1000 deep",
     {"content": b'{"inputs":[{"name":"pixels","datatype":"UINT8","shape":['
      + b"[" * 1000 + b"]" * 1000 + b',784]}]}'},
     422, "'shape' must be [N, 784] or [N, 28, 28], whole numbers, got an array of 1 in it"),
    ("a length header of 5000 digits", {"content": b"{}", "headers": {HEADER: "9" * 5000}}, 400,
     "Inference-Header-Content-Length must be a whole number of bytes"),
    ("NaN in the data",
     {"content": b'{"inputs":[{"name":"pixels","shape":[1,784],"datatype":"FP32","data":[NaN'
      + b",0" * 783 + b"]}]}"},
     422, "image 0, pixel 0: expected a finite number 0..255, got nan"),
    ("a huge FP64 value",
     binary(request(tensor([1, 784], "FP64", parameters={"binary_data_size": 6272})),
            np.full(784, 1e300, "<f8").tobytes()),
     422, "image 0, pixel 0: value 1e+300 is outside 0..255"),
    ("gzip with junk after it", {"content": gzip.compress(orjson.dumps(one())) + b"JUNK",
                                 "headers": {"content-encoding": "gzip"}}, 400,
     "body has 4 bytes after the end of its gzip data"),
    ("a body over the limit", {"content": b" " * (LIMIT_BYTES + 1)}, 413,
     f"the limit is {LIMIT_BYTES} bytes (SOFTSERVE_MAX_BODY_BYTES)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "sent", "status", "message"), HOSTILE,
                         ids=[row[0] for row in HOSTILE])  # fmt: skip
def test_hostile_bodies(
    small: httpx.Client, name: str, sent: dict[str, Any], status: int, message: str
) -> None:
    assert_v2_error(send(small, "POST", INFER, sent), status, message)


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/v2/no-such-endpoint", 404, "no such endpoint: GET /v2/no-such-endpoint"),
        ("GET", "/v2/models/no-such-model", 404, "unknown model 'no-such-model'"),
        ("POST", "/v2/models/no-such-model/infer", 404, "unknown model 'no-such-model'"),
        ("GET", "/v2/models/softmax/ready/x", 404, "no such endpoint"),
        ("DELETE", INFER, 405, "method DELETE is not allowed on /v2/models/softmax/infer"),
        ("PUT", "/v2/health/live", 405, "method PUT is not allowed"),
        ("POST", "/v2/models/softmax/versions/nope/infer", 422, "invalid version 'nope'"),
        ("GET", "/v2/models/softmax/versions/nope", 422, "invalid version 'nope'"),
        ("POST", "/v2/models/softmax/versions/20200101T000000Z-00000000/infer", 404,
         "model 'softmax' has no version '20200101T000000Z-00000000'"),
        ("GET", "/v2/models/softmax/versions/20200101T000000Z-00000000/ready", 404,
         "has no version"),
    ],
)  # fmt: skip
def test_the_frameworks_errors_take_the_v2_shape(
    client: httpx.Client, method: str, path: str, status: int, message: str
) -> None:
    response = client.request(method, path, json=one())
    assert_v2_error(response, status, message)
    if status == 405:
        assert "POST" in response.headers["allow"] or "GET" in response.headers["allow"]


def test_errors_outside_v2_keep_our_shape(client: httpx.Client) -> None:
    body = client.get("/v2x").json()  # not under /v2: a path that merely starts the same way
    assert body["error"]["code"] == "not_found"
    assert body["error"]["request_id"]


def test_the_length_header_decides_never_content_type(client: httpx.Client) -> None:
    """tritonclient's sync client sends no Content-Type; its aio client sends octet-stream with
    pure JSON; any other type is no reason to refuse either."""
    model = artifacts.load(SHIPPED / "softmax.npz")
    pixels = (np.arange(784) % 256).astype(np.uint8)
    proba = reference(model, pixels.reshape(1, 784))[1]
    text = orjson.dumps(one() | {"inputs": [tensor([1, 784], data=pixels.tolist())]})
    types = ["application/octet-stream", "text/plain", "application/json"]
    for headers in [{}, *({"content-type": t} for t in types)]:
        response = client.post(INFER, content=text, headers=headers)
        assert response.status_code == 200, response.text
        got = response.json()["outputs"][0]
        assert got["shape"] == [1, 10]
        np.testing.assert_allclose(got["data"], proba[0], rtol=1e-4, atol=1e-6)
    header = orjson.dumps(request(tensor([1, 784], parameters={"binary_data_size": 784})))
    for content_type in ("application/json", None):
        headers = {HEADER: str(len(header))} | (
            {"content-type": content_type} if content_type else {}
        )
        response = client.post(INFER, content=header + pixels.tobytes(), headers=headers)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["outputs"][0]["data"], proba[0], rtol=1e-4,
                                   atol=1e-6)  # fmt: skip


def test_binary_output_layout(client: httpx.Client) -> None:
    """An output asked for as binary: octet-stream, the length header, then float32 data."""
    pixels = np.zeros((2, 784), np.uint8)
    wanted = [{"name": "probabilities", "parameters": {"binary_data": True}}]
    body = request(tensor([2, 784], data=pixels.tolist()), id="b", outputs=wanted)
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers[HEADER.lower()])
    header = orjson.loads(response.content[:length])
    assert header["id"] == "b"
    (output,) = header["outputs"]
    assert output["parameters"] == {"binary_data_size": 2 * 10 * 4}
    assert "data" not in output
    data = np.frombuffer(response.content[length:], "<f4").reshape(2, 10)
    model = artifacts.load(SHIPPED / "softmax.npz")
    np.testing.assert_allclose(data, reference(model, pixels)[1], rtol=1e-4, atol=1e-6)


def test_unknown_fields_and_parameters_are_ignored(client: httpx.Client) -> None:
    body = one(model_name="softmax", sequence_id=3, priority=2,
               parameters={"sequence_start": True, "timeout": 5, "whatever": [1]})  # fmt: skip
    body["inputs"][0]["parameters"] = {"shared_memory_region": None}
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text


def test_an_answer_is_compressed_only_when_asked_and_worth_it(client: httpx.Client) -> None:
    body = request(tensor([4, 784], data=[0] * 4 * 784))
    small = client.post(INFER, json=one(), headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in small.headers  # under 500 bytes: sent as it is
    plain = client.post(INFER, json=body, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    for coding in ("gzip", "deflate"):
        response = client.post(INFER, json=body, headers={"accept-encoding": f"br;q=1, {coding}"})
        assert response.headers["content-encoding"] == coding  # httpx inflates it
        assert response.json() == plain.json()
    refused = client.post(INFER, json=body, headers={"accept-encoding": "gzip;q=0, deflate;q=0"})
    assert "content-encoding" not in refused.headers


def test_health_and_metadata_bodies(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json() == client.get("/v2/").json()
    assert client.get("/v2/models/softmax/ready").json() == {"name": "softmax", "ready": True}


def test_readiness_when_a_required_model_is_missing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("unready")
    env = {"SOFTSERVE_REQUIRED_MODELS": "softmax,absent"}
    with run_server(root, env) as server, server.client() as c:
        response = c.get("/v2/health/ready")
        assert response.status_code == 503
        assert response.json() == {"ready": False}
        assert c.get("/v2/health/live").json() == {"live": True}


def test_v2_requests_are_counted_and_logged(server: Server, client: httpx.Client) -> None:
    client.post(INFER, json=one(), headers={"x-request-id": "v2-metrics-1"})
    client.post("/v2/models/softmax/versions/nope/infer", json=one())
    text = client.get("/metrics", headers={"accept": "text/plain"}).text
    assert 'route="/v2/models/{name}/infer"' in text
    assert 'route="/v2/models/{name}/versions/{version}/infer"' in text
    line = wait_for(
        lambda: next((x for x in server.log_text().splitlines() if "v2-metrics-1" in x), None),
        timeout=30,
    )  # the access log is written off the event loop, in batches
    entry = orjson.loads(line)
    assert entry["path"] == INFER
    assert (entry["status"], entry["model"], entry["images"]) == (200, "softmax", 1)
