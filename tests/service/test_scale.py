"""Pixels scaled to 0..1, the most common mistake in ML code, are refused rather than answered
with noise; ``?scale=unit`` (V2: the request parameter ``"scale": "unit"``) declares them.

The rule (service.pixels.check_scale): an image whose brightest pixel is above 0 and at most 1 is
refused: fractions within 0..1, or a mask of 0s and 1s. An all-black image stays legal. Against
a real uvicorn process, through every body form and V2."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from numpy.typing import NDArray

from tests.service.catalogue import assert_error
from tests.service.reference import reference
from tests.support.requests import png
from tests.support.server import SHIPPED
from trainer import artifacts

Images = tuple[NDArray[np.uint8], NDArray[np.uint8]]
RAW = {"content-type": "application/octet-stream"}
MASK = (np.arange(784) % 3 == 0).astype(np.uint8)  # 0s and 1s
HINT = "send intensities 0..255, or declare the scale with ?scale=unit"


def v2(images: NDArray[Any], datatype: str, **parameters: Any) -> dict[str, Any]:
    tensor = {"name": "pixels", "shape": [len(images), 784], "datatype": datatype,
              "data": images.reshape(-1).tolist()}  # fmt: skip
    return {"inputs": [tensor], **({"parameters": parameters} if parameters else {})}


def assert_v2_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert message in response.json()["error"], response.json()


def test_real_test_images_scaled_to_unit_are_refused_then_served_when_declared(
    client: httpx.Client, test_images: Images
) -> None:
    images = test_images[0]
    unit = (images / 255.0).round(6)
    body = {"images": unit.tolist()}
    refused = client.post("/predict", json=body)
    error = assert_error(refused, 422, "unit_scale", "image 0 looks scaled to 0..1")
    assert HINT in error["message"]
    assert [d["image"] for d in error["details"]] == list(range(10))  # capped at ten
    declared = client.post("/predict?scale=unit", json=body)
    assert declared.status_code == 200, declared.text
    model = artifacts.load(SHIPPED / "softmax.npz")
    labels, proba = reference(model, unit * 255)
    got = declared.json()["predictions"]
    assert [p["label"] for p in got] == labels.tolist()
    np.testing.assert_allclose([p["probabilities"] for p in got], proba, rtol=1e-3, atol=1e-5)
    # and as they would have been sent on 0..255 (they differ only by the rounding above)
    plain = client.post("/predict", json={"images": images.tolist()}).json()["predictions"]
    agree = np.mean([a["label"] == b["label"] for a, b in zip(plain, got, strict=True)])
    assert agree >= 0.95


@pytest.mark.parametrize(
    ("name", "request_", "problem"),
    [
        ("JSON fractions", {"json": {"pixels": [0.0] * 783 + [0.5]}},
         "its values lie within 0..1 (the brightest is 0.5)"),
        ("JSON mask", {"json": {"pixels": MASK.tolist()}}, "it holds only 0s and 1s"),
        ("JSON float mask", {"json": {"pixels": MASK.astype(float).tolist()}},
         "it holds only 0s and 1s"),
        ("raw mask", {"content": MASK.tobytes(), "headers": RAW}, "it holds only 0s and 1s"),
        ("PNG mask", {"content": png(MASK), "headers": {"content-type": "image/png"}},
         "it holds only 0s and 1s"),
        ("multipart mask", {"files": [("file", ("m.png", png(MASK), "image/png"))]},
         "it holds only 0s and 1s"),
    ],
)  # fmt: skip
def test_each_form_refuses_an_image_on_the_unit_scale(
    client: httpx.Client, name: str, request_: dict[str, Any], problem: str
) -> None:
    error = assert_error(client.post("/predict", **request_), 422, "unit_scale", problem)
    assert error["message"].startswith("image 0 looks scaled to 0..1")


def test_the_image_named_is_the_one_in_the_batch(client: httpx.Client) -> None:
    batch = np.full((4, 784), 200, np.uint8)
    batch[2] = MASK
    error = assert_error(
        client.post("/predict", content=batch.tobytes(), headers=RAW), 422, "unit_scale", "image 2"
    )
    assert error["details"] == [{"image": 2, "problem": "it holds only 0s and 1s, as a mask does"}]


def test_an_all_black_image_stays_legal(client: httpx.Client) -> None:
    assert client.post("/predict", json={"pixels": [0] * 784}).status_code == 200
    black = client.post("/predict", content=bytes(784), headers=RAW)
    assert black.status_code == 200
    assert client.post("/predict?scale=unit", json={"pixels": [0] * 784}).status_code == 200


def test_a_mask_declared_unit_is_a_white_on_black_image(client: httpx.Client) -> None:
    declared = client.post("/predict?scale=unit", content=MASK.tobytes(), headers=RAW)
    as_255 = client.post("/predict", content=(MASK * 255).tobytes(), headers=RAW)
    assert declared.status_code == 200, declared.text
    assert declared.json()["predictions"] == as_255.json()["predictions"]


def test_declared_unit_refuses_values_past_1(client: httpx.Client) -> None:
    response = client.post("/predict?scale=unit", json={"pixels": [0] * 783 + [37]})
    assert_error(response, 422, "invalid_pixels", "image 0, pixel 783: value 37 is outside 0..1")


@pytest.mark.parametrize("value", ["", "255", "UNIT", "byte"])
def test_scale_takes_unit_only(client: httpx.Client, value: str) -> None:
    response = client.post(f"/predict?scale={value}", json={"pixels": [0] * 784})
    assert_error(response, 422, "invalid_parameter", "scale must be 'unit'")


def test_v2_refuses_and_declares_the_same_way(client: httpx.Client) -> None:
    images = np.stack([np.full(784, 0.25, np.float32), MASK.astype(np.float32)])
    url = "/v2/models/softmax/infer"
    assert_v2_error(client.post(url, json=v2(images, "FP32")), 422,
                    "image 0 looks scaled to 0..1: its values lie within 0..1")  # fmt: skip
    assert_v2_error(client.post(url, json=v2(MASK[None], "UINT8")), 422,
                    "image 0 looks scaled to 0..1: it holds only 0s and 1s")  # fmt: skip
    declared = client.post(url, json=v2(images, "FP32", scale="unit"))
    assert declared.status_code == 200, declared.text
    model = artifacts.load(SHIPPED / "softmax.npz")
    np.testing.assert_allclose(
        np.array(declared.json()["outputs"][0]["data"]).reshape(2, 10),
        reference(model, images * 255)[1], rtol=1e-4, atol=1e-6,
    )  # fmt: skip
    assert_v2_error(client.post(url, json=v2(images, "FP32", scale="255")), 422,
                    "parameter 'scale' must be \"unit\"")  # fmt: skip
    mask = orjson.dumps(v2(MASK[None], "UINT8", scale="unit"))  # no Content-Type, as tritonclient
    assert client.post(url, content=mask).status_code == 200
