"""POST /predict over HTTP against a real uvicorn process: every input form, both models, and the
error catalogue, each error in the one JSON shape."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from tests.service.catalogue import (
    GOOD_PNG,
    JSON,
    JSON_IMAGE,
    ONE,
    PIXELS,
    PNG,
    RAW,
    RAW_TYPE,
    assert_error,
    case,
    check_case,
    multipart,
    pixels_with,
    typed,
    uploads,
)
from tests.service.reference import check_predictions, reference
from tests.support.requests import encode, png_declaring
from tests.support.server import Server, run_server
from trainer import artifacts
from trainer.artifacts import Artifact

Images = tuple[NDArray[np.uint8], NDArray[np.uint8]]
N_SINGLE = 6  # images sent one request each, per form: enough to differ, few enough to be quick
LIMIT_BYTES = 4096
LIMIT_BATCH = 4


@pytest.fixture(scope="module")
def models(server: Server) -> dict[str, Artifact]:
    return {
        name: artifacts.load(server.model_dir / f"{name}.npz") for name in ("softmax", "binary")
    }


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second server with small body and batch limits."""
    env = {
        "SOFTSERVE_MAX_BODY_BYTES": str(LIMIT_BYTES),
        "SOFTSERVE_MAX_BATCH": str(LIMIT_BATCH),
    }
    with run_server(tmp_path_factory.mktemp("limited"), env) as running:
        yield running


# --- the input forms ----------------------------------------------------------------------------


def decoded(data: bytes) -> NDArray[np.uint8]:
    """What Pillow decodes an image to: for JPEG (lossy) that, not the pixels encoded."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.uint8).reshape(1, 784)


@dataclass
class Request:
    kwargs: dict[str, Any]
    pixels: NDArray[Any]  # what the server should classify


def _json_flat(images: NDArray[np.uint8]) -> list[Request]:
    return [Request({"json": {"pixels": im.tolist()}}, im) for im in images[:N_SINGLE]]


def _json_28x28(images: NDArray[np.uint8]) -> list[Request]:
    nested = [im.reshape(28, 28).tolist() for im in images[:N_SINGLE]]
    return [Request({"json": {"pixels": n}}, im) for n, im in zip(nested, images, strict=False)]


def _json_batch(images: NDArray[np.uint8]) -> list[Request]:
    return [Request({"json": {"images": images.tolist()}}, images)]


def _octet_stream(images: NDArray[np.uint8]) -> list[Request]:
    return [Request({"content": images.tobytes(), "headers": RAW}, images)]


def _image_files(fmt: str) -> Callable[[NDArray[np.uint8]], list[Request]]:
    def build(images: NDArray[np.uint8]) -> list[Request]:
        requests = []
        for image in images[:N_SINGLE]:
            data = encode(image, fmt)
            kwargs = {"content": data, "headers": {"content-type": f"image/{fmt.lower()}"}}
            requests.append(Request(kwargs, decoded(data)))
        return requests

    return build


def _multipart(images: NDArray[np.uint8]) -> list[Request]:
    files, pixels = [], []
    for i, image in enumerate(images[:8]):
        fmt = "PNG" if i % 2 else "JPEG"
        data = encode(image, fmt)
        files.append(("file", (f"{i}.{fmt.lower()}", data, f"image/{fmt.lower()}")))
        pixels.append(decoded(data))
    return [Request({"files": files}, np.concatenate(pixels))]


FORMS: dict[str, Callable[[NDArray[np.uint8]], list[Request]]] = {
    "json-flat": _json_flat,
    "json-28x28": _json_28x28,
    "json-batch": _json_batch,
    "octet-stream-batch": _octet_stream,
    "png": _image_files("PNG"),
    "jpeg": _image_files("JPEG"),
    "multipart-png-and-jpeg": _multipart,
}
ROUTES = [
    ("/predict", "softmax"),
    ("/predict?model=softmax", "softmax"),
    ("/predict?model=binary", "binary"),
    ("/models/softmax/predict", "softmax"),
    ("/models/binary/predict", "binary"),
]


@pytest.mark.parametrize(("url", "name"), ROUTES)
@pytest.mark.parametrize("form", list(FORMS))
def test_predictions_equal_the_artifact_applied_with_numpy(
    client: httpx.Client,
    models: dict[str, Artifact],
    test_images: Images,
    form: str,
    url: str,
    name: str,
) -> None:
    images, _ = test_images
    for request in FORMS[form](images):
        response = client.post(url, **request.kwargs)
        check_predictions(response, models[name], name, request.pixels)


def test_the_softmax_model_is_right_on_most_real_images(
    client: httpx.Client, test_images: Images
) -> None:
    images, labels = test_images
    response = client.post("/predict", content=images.tobytes(), headers=RAW)
    predicted = np.array([p["label"] for p in response.json()["predictions"]])
    assert (predicted == labels).mean() >= 0.75  # the shipped model scores 0.848 on the test set


def test_the_binary_model_answers_for_its_positive_class(
    client: httpx.Client, models: dict[str, Artifact], test_images: Images
) -> None:
    images, labels = test_images
    response = client.post("/models/binary/predict", json={"images": images.tolist()})
    predictions = check_predictions(response, models["binary"], "binary", images)
    assert models["binary"].class_names == ("not Shirt", "Shirt")
    shirt = 6  # Fashion-MNIST label of "Shirt"
    proba = np.array([p["probability"] for p in predictions])
    # The positive class's probability: higher on shirts than on the rest, on average.
    assert proba[labels == shirt].mean() > proba[labels != shirt].mean()


@pytest.mark.parametrize(
    ("route", "name"), [("/predict", "softmax"), ("/models/binary/predict", "binary")]
)
@pytest.mark.parametrize("form", ["raw", "json", "multipart"])
def test_accept_octet_stream_answers_with_raw_float32_probabilities(
    client: httpx.Client,
    models: dict[str, Artifact],
    test_images: Images,
    route: str,
    name: str,
    form: str,
) -> None:
    images, _ = test_images
    sent = {
        "raw": {"content": images.tobytes(), "headers": {**RAW, "accept": RAW_TYPE}},
        "json": {"json": {"images": images.tolist()}, "headers": {"accept": RAW_TYPE}},
        "multipart": {
            "files": [
                ("file", (f"{i}.png", encode(im, "PNG"), "image/png"))
                for i, im in enumerate(images[:5])
            ],
            "headers": {"accept": RAW_TYPE},
        },
    }[form]
    expected_pixels = images[:5] if form == "multipart" else images
    response = client.post(route, **sent)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    artifact = models[name]
    k = 1 if name == "binary" else 10
    assert response.headers["content-type"] == RAW_TYPE
    assert response.headers["x-softserve-model"] == name
    assert response.headers["x-softserve-version"] == artifact.version
    assert response.headers["x-softserve-shape"] == f"{len(expected_pixels)},{k}"
    assert response.headers["x-softserve-dtype"] == "<f4"
    got = np.frombuffer(response.content, dtype="<f4").reshape(len(expected_pixels), k)
    _, proba = reference(artifact, expected_pixels)
    np.testing.assert_allclose(got, proba.reshape(len(expected_pixels), k), rtol=1e-4, atol=1e-6)


def test_raw_responses_take_no_top_k_and_an_empty_model_is_unknown(client: httpx.Client) -> None:
    r = client.post("/predict?top_k=3", content=bytes(784), headers={**RAW, "accept": RAW_TYPE})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_parameter"
    r = client.post("/predict?model=", content=bytes(784), headers=RAW)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_model"


@pytest.mark.parametrize("k", [1, 3, 10, 1000])
@pytest.mark.parametrize("route", ["/predict", "/models/softmax/predict"])
def test_top_k_lists_the_likeliest_classes(
    client: httpx.Client, models: dict[str, Artifact], test_images: Images, k: int, route: str
) -> None:
    images, _ = test_images
    artifact = models["softmax"]
    for kwargs in (
        {"json": {"images": images[:8].tolist()}},
        {
            "files": [
                ("file", (f"{i}.png", encode(im, "PNG"), "image/png"))
                for i, im in enumerate(images[:8])
            ]
        },
    ):
        response = client.post(f"{route}?top_k={k}", **kwargs)
        predictions = check_top_k(response, artifact, images[:8], k)
        assert all(len(p["top_k"]) == min(k, 10) for p in predictions)


def check_top_k(
    response: httpx.Response, artifact: Artifact, pixels: NDArray[Any], k: int
) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    labels, proba = reference(artifact, pixels)
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    for prediction, label, row in zip(predictions, labels, proba, strict=True):
        probabilities = np.array(prediction["probabilities"])
        np.testing.assert_allclose(probabilities, row, rtol=1e-4, atol=1e-6)
        top = prediction["top_k"]
        # Ordered by the served probabilities (a float64 reference may swap near-ties).
        expected = np.argsort(-probabilities.astype(np.float32), kind="stable")[: min(k, 10)]
        assert [t["label"] for t in top] == expected.tolist()
        assert [t["probability"] for t in top] == probabilities[expected].tolist()
        assert [t["class_name"] for t in top] == [artifact.class_names[i] for i in expected]
        assert top[0]["label"] == prediction["label"] == label
    return predictions


# --- the error catalogue ------------------------------------------------------------------------


CATALOGUE = [
    # 400: the body cannot be parsed at all
    case("malformed-json", "/predict", typed(b'{"pixels": [1, 2,', JSON), 400, "invalid_json",
         "body is not valid JSON"),
    case("truncated-json", "/predict", typed(JSON_IMAGE[:-40], JSON), 400, "invalid_json",
         "body is not valid JSON"),
    case("empty-json", "/predict", typed(b"", JSON), 400, "invalid_json", "empty body"),
    case("not-multipart", "/predict", typed(b"junk", "multipart/form-data; boundary=x"), 400,
         "invalid_multipart", "malformed multipart body"),
    case("no-boundary", "/predict", typed(b"junk", "multipart/form-data"), 400,
         "invalid_multipart", "malformed multipart body: Missing boundary"),
    # 404: no such model (names are checked before any file is looked for)
    case("unknown-model", "/predict?model=nope", ONE, 404, "unknown_model",
         "unknown model 'nope'; loaded models: binary, softmax"),
    case("unknown-model-path", "/models/nope/predict", ONE, 404, "unknown_model",
         "unknown model 'nope'"),
    case("unknown-model-multipart", "/models/nope/predict", uploads(("a.png", GOOD_PNG)), 404,
         "unknown_model", "unknown model 'nope'"),
    case("traversal-query", "/predict?model=..%2F..%2Fetc", ONE, 404, "unknown_model",
         "invalid model name '../../etc'"),
    case("dot-dot-path", "/models/%2E%2E/predict", ONE, 404, "unknown_model",
         "invalid model name '..'"),
    case("uppercase-name", "/models/Softmax/predict", ONE, 404, "unknown_model",
         "invalid model name 'Softmax'"),
    case("no-such-endpoint", "/predictions", ONE, 404, "not_found",
         "no such endpoint: POST /predictions"),
    case("get-predict", "GET /predict", {}, 405, "method_not_allowed",
         "method GET is not allowed on /predict"),
    # 413 for images; body and batch limits are tested on a server with small ones, below
    case("image-bomb", "/predict", typed(png_declaring(20000, 20000), PNG), 413,
         "image_too_large", "image is too large to decode"),
    case("image-over-limit", "/predict", typed(png_declaring(5000, 5000), PNG), 413,
         "image_too_large", "image is 5000x5000 = 25000000 pixels, over the limit of 16777216"),
    case("bomb-upload", "/predict", uploads(("big.png", png_declaring(9000, 9000))), 413,
         "image_too_large", "file 0 ('big.png') is 9000x9000"),
    # 415: what the body is, is not said or not understood
    case("no-content-type", "/predict", {"content": JSON_IMAGE}, 415, "unsupported_media_type",
         "missing Content-Type"),
    case("text-plain", "/predict", typed(JSON_IMAGE, "text/plain"), 415,
         "unsupported_media_type", "unsupported Content-Type 'text/plain'"),
    case("form-urlencoded", "/predict", {"data": {"pixels": "0"}}, 415,
         "unsupported_media_type", "'application/x-www-form-urlencoded'"),
    case("gif", "/models/softmax/predict", typed(b"GIF89a", "image/gif"), 415,
         "unsupported_media_type", "'image/gif'"),
    # 422: the body parses, the pixels are wrong
    case("783-pixels", "/predict", {"json": {"pixels": PIXELS[:783]}}, 422, "invalid_pixels",
         "expected 784 pixels, got 783"),
    case("ragged-28x28", "/predict", {"json": {"pixels": [[0] * 28] * 27 + [[0] * 29]}}, 422,
         "invalid_pixels", "expected 28 rows of 28 pixels, got 28 rows of 28/29"),
    case("string-pixel", "/predict", {"json": {"images": [PIXELS, PIXELS, pixels_with(10, "x")]}},
         422, "invalid_pixels", "image 2, pixel 10: expected a number 0..255, got the string 'x'"),
    case("nan-pixel", "/predict", typed(json.dumps({"pixels": pixels_with(7, math.nan)}).encode(),
         JSON), 422, "invalid_pixels", "pixel 7: expected a finite number 0..255, got nan"),
    case("null-pixel", "/models/binary/predict", {"json": {"pixels": pixels_with(5, None)}}, 422,
         "invalid_pixels", "pixel 5: expected a number 0..255, got null"),
    case("pixel-256", "/predict", {"json": {"images": [PIXELS, pixels_with(99, 256)]}}, 422,
         "invalid_pixels", "image 1, pixel 99: value 256 is outside 0..255"),
    case("empty-batch", "/predict", {"json": {"images": []}}, 422, "invalid_input",
         "'images' is empty"),
    case("unknown-key", "/predict", {"json": {"pixels": PIXELS, "model": "binary"}}, 422,
         "invalid_input", "unknown field 'model'"),
    case("json-array", "/predict", {"json": [PIXELS]}, 422, "invalid_input",
         "expected a JSON object with 'pixels' or 'images'"),
    case("raw-785", "/predict", typed(b"\0" * 785, RAW_TYPE), 422, "invalid_input",
         "raw body of 785 bytes is not a multiple of 784"),
    case("raw-empty", "/predict", typed(b"", RAW_TYPE), 422, "invalid_input", "empty body"),
    case("garbage-png", "/predict", typed(b"\x89PNG\r\n\x1a\ngarbage", PNG), 422,
         "invalid_image", "image is not a PNG or JPEG image"),
    case("truncated-png", "/predict", typed(GOOD_PNG[: len(GOOD_PNG) // 2], PNG), 422,
         "invalid_image", "image is not a readable PNG or JPEG"),
    case("garbage-file", "/predict", uploads(("a.png", GOOD_PNG), ("b.png", b"garbage")), 422,
         "invalid_image", "file 1 ('b.png') is not a PNG or JPEG image"),
    case("field-not-file", "/predict", multipart(("f", "a.png", GOOD_PNG), ("note", None, b"hi")),
         422, "invalid_input", "multipart field 'note' is not a file upload"),
    case("no-files", "/predict", multipart(), 422, "invalid_input",
         "multipart body holds no files"),
    # 422: the query is wrong
    case("unknown-param", "/predict?foo=1", ONE, 422, "invalid_parameter",
         "unknown query parameter 'foo': expected model, version, top_k"),
    case("model-param-on-path", "/models/softmax/predict?model=binary", ONE, 422,
         "invalid_parameter", "unknown query parameter 'model': expected version, top_k"),
    case("top-k-0", "/predict?top_k=0", ONE, 422, "invalid_parameter",
         "top_k must be a whole number from 1 to 1000, got '0'"),
    case("top-k-1001", "/predict?top_k=1001", ONE, 422, "invalid_parameter", "got '1001'"),
    case("top-k-negative", "/predict?top_k=-1", ONE, 422, "invalid_parameter", "got '-1'"),
    case("top-k-text", "/predict?top_k=three", ONE, 422, "invalid_parameter", "got 'three'"),
    case("top-k-empty", "/predict?top_k=", ONE, 422, "invalid_parameter", "got ''"),
    case("top-k-multipart", "/predict?top_k=x", uploads(("a.png", GOOD_PNG)), 422,
         "invalid_parameter", "got 'x'"),
    case("top-k-binary", "/predict?model=binary&top_k=2", ONE, 422, "invalid_parameter",
         "top_k applies to softmax models; 'binary' is binary"),
    case("top-k-binary-path", "/models/binary/predict?top_k=1", ONE, 422, "invalid_parameter",
         "top_k applies to softmax models"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "url", "request_kwargs", "status", "code", "message"), CATALOGUE
)
def test_error_catalogue(
    client: httpx.Client,
    method: str,
    url: str,
    request_kwargs: dict[str, Any],
    status: int,
    code: str,
    message: str,
) -> None:
    check_case(client, method, url, request_kwargs, status, code, message)


def test_pixel_errors_list_every_bad_image(client: httpx.Client) -> None:
    bad = [*PIXELS[:3], -5, *PIXELS[4:]]
    response = client.post("/predict", json={"images": [bad, PIXELS, PIXELS[:10], bad]})
    error = assert_error(response, 422, "invalid_pixels", "image 0, pixel 3: value -5 is outside")
    assert [(d["image"], d.get("pixel")) for d in error["details"]] == [(0, 3), (2, None), (3, 3)]


def test_a_path_traversal_model_name_reaches_no_file(client: httpx.Client) -> None:
    for url in ("/models/..%2F..%2Fetc/predict", "/models/..%2F..%2Fetc%2Fpasswd/predict"):
        response = client.post(url, json={"pixels": PIXELS})
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] in ("not_found", "unknown_model")
        assert "root:" not in response.text
    response = client.get("/models/..%2F..%2Fetc")
    assert response.status_code == 404
    assert "root:" not in response.text


def test_after_the_catalogue_the_server_is_ready_and_right(
    server: Server, client: httpx.Client, models: dict[str, Artifact], test_images: Images
) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["problems"] == {}
    images, _ = test_images
    check_predictions(
        client.post("/predict", json={"images": images.tolist()}),
        models["softmax"],
        "softmax",
        images,
    )
    check_predictions(
        client.post("/predict?model=binary", content=images.tobytes(), headers=RAW),
        models["binary"],
        "binary",
        images,
    )
    log = server.log_text()
    assert "Traceback" not in log
    assert "unhandled error" not in log


# --- limits: a second server with small ones ----------------------------------------------------


def test_a_body_over_the_limit_is_413(limited: Server) -> None:
    with limited.client() as client:
        response = client.post("/predict", content=b"\0" * (LIMIT_BYTES + 1), headers=RAW)
        error = assert_error(
            response,
            413,
            "payload_too_large",
            f"request body is {LIMIT_BYTES + 1} bytes; the limit is {LIMIT_BYTES} bytes",
        )
        assert error["details"] == {"limit": LIMIT_BYTES, "content_length": LIMIT_BYTES + 1}
        assert response.headers["connection"] == "close"
        noise = encode(np.random.default_rng(0).integers(0, 256, 784), "PNG")  # ~800 bytes
        for request in (
            {"json": {"pixels": [255] * 784, "pad": "x" * LIMIT_BYTES}},
            uploads(*[(f"{i}.png", noise) for i in range(6)]),
        ):
            too_big = client.post("/predict", **request)
            assert_error(too_big, 413, "payload_too_large", "SOFTSERVE_MAX_BODY_BYTES")


def test_a_streamed_body_over_the_limit_is_413(limited: Server) -> None:
    def chunks(head: bytes) -> Iterator[bytes]:  # no Content-Length: the server counts
        yield head  # a well-formed start, so that the size is the only thing wrong
        for _ in range(10):
            yield b"0" * 784

    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    with limited.client() as client:
        for url, content_type, head in (
            ("/predict", RAW_TYPE, b""),
            ("/models/softmax/predict", "application/json", b'{"pixels": ['),
            ("/predict", "multipart/form-data; boundary=x", part),
            ("/train", "application/json", b'{"epochs": 1, "pad": "'),  # read by FastAPI
        ):
            headers = {"content-type": content_type}
            response = client.post(url, content=chunks(head), headers=headers)
            assert_error(
                response, 413, "payload_too_large", f"request body is over {LIMIT_BYTES} bytes"
            )


def test_a_batch_over_the_limit_is_413(limited: Server) -> None:
    with limited.client() as client:
        raw = client.post("/predict", content=b"\0" * 784 * (LIMIT_BATCH + 1), headers=RAW)
        error = assert_error(
            raw,
            413,
            "batch_too_large",
            f"batch of {LIMIT_BATCH + 1} images is over the limit of {LIMIT_BATCH}",
        )
        assert error["details"] == {"images": LIMIT_BATCH + 1, "limit": LIMIT_BATCH}
        files = [("file", (f"{i}.png", GOOD_PNG, "image/png")) for i in range(LIMIT_BATCH + 1)]
        assert_error(
            client.post("/predict", files=files), 413, "batch_too_large", "SOFTSERVE_MAX_BATCH"
        )


def test_at_the_limits_the_limited_server_predicts(limited: Server) -> None:
    with limited.client() as client:
        raw = client.post("/predict", content=b"\0" * 784 * LIMIT_BATCH, headers=RAW)
        assert raw.status_code == 200, raw.text
        assert len(raw.json()["predictions"]) == LIMIT_BATCH
        files = [("file", (f"{i}.png", GOOD_PNG, "image/png")) for i in range(LIMIT_BATCH)]
        response = client.post("/predict", files=files)
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == LIMIT_BATCH
        assert client.get("/health/ready").status_code == 200
