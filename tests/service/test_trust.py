"""Every answer says how far to trust it, against real uvicorn processes: the assessment in JSON,
in a raw answer's header and as V2 outputs; ``strict``; an artifact from before the statistics,
and SOFTSERVE_OOD=off, which serve without flagging and say why."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from numpy.typing import NDArray

from service.trust import detector_for
from tests.service.catalogue import assert_error
from tests.support import strangers
from tests.support.server import SHIPPED, Server, run_server
from trainer import artifacts, ood
from trainer.artifacts import Artifact
from trainer.linear import pixels_to_features

RAW = {"content-type": "application/octet-stream", "accept": "application/octet-stream"}
V2 = "/v2/models/softmax/infer"


@pytest.fixture
def garments(test_images: tuple[NDArray[np.uint8], NDArray[np.uint8]]) -> NDArray[np.uint8]:
    """Real Fashion-MNIST test images: like the training data."""
    return test_images[0][:40]


def typical(garments: NDArray[np.uint8], client: httpx.Client) -> NDArray[np.uint8]:
    """The garments the service does not flag (most of them: about 99.5%)."""
    body = client.post("/predict", json={"images": garments.tolist()}).json()
    keep = [i for i, p in enumerate(body["predictions"]) if not p["ood"]["flag"]]
    assert len(keep) >= len(garments) - 2
    return garments[keep]


def test_json_answers_carry_the_assessment(
    client: httpx.Client, garments: NDArray[np.uint8]
) -> None:
    ordinary = typical(garments, client)[:3]
    odd = np.vstack([strangers.inverted(ordinary[:1]), strangers.noise(1), strangers.glyphs()[:1]])
    body = client.post("/predict", json={"images": np.vstack([ordinary, odd]).tolist()}).json()
    assessed = [p["ood"] for p in body["predictions"]]
    assert [a["flag"] for a in assessed] == [False] * 3 + [True] * 3
    assert all(a["reasons"] == [] and a["score"] <= 1 for a in assessed[:3])
    assert all(a["score"] > 1 for a in assessed[3:])
    inverted, noise, glyph = assessed[3:]
    assert "dark item on a light background" in inverted["reasons"]
    assert any(r.startswith("a light background") for r in noise["reasons"])
    assert any("does not reach two opposite edges" in r for r in glyph["reasons"])
    assert inverted["score"] > noise["score"]  # the lighter frame is the farther from typical


def test_a_raw_answer_names_the_flagged_images_in_a_header(
    client: httpx.Client, garments: NDArray[np.uint8]
) -> None:
    ordinary = typical(garments, client)[:2]
    batch = np.vstack(
        [ordinary[:1], strangers.noise(1), ordinary[1:2], strangers.inverted(ordinary)]
    )
    response = client.post("/predict", content=batch.tobytes(), headers=RAW)
    assert response.status_code == 200
    assert response.headers["x-softserve-ood-flagged"] == "1,3-4"
    noise = np.vstack([strangers.noise(5), ordinary[:1], strangers.noise(1), ordinary[:1]])
    many = client.post("/predict", content=noise.tobytes(), headers=RAW)
    assert many.headers["x-softserve-ood-flagged"] == "0-4,6"
    clean = client.post("/predict", content=ordinary.tobytes(), headers=RAW)
    assert clean.headers["x-softserve-ood-flagged"] == ""


def test_strict_refuses_a_flagged_image_and_names_it(
    client: httpx.Client, garments: NDArray[np.uint8]
) -> None:
    ordinary = typical(garments, client)[:2]
    batch = np.vstack([ordinary, strangers.inverted(ordinary[:1])])
    response = client.post("/predict?strict=true", json={"images": batch.tolist()})
    error = assert_error(response, 422, "out_of_distribution", "image 2 is unlike the images")
    assert "dark item on a light background" in error["message"]
    assert error["details"][0]["image"] == 2
    fine = client.post("/predict?strict=true", json={"images": ordinary.tolist()})
    assert fine.status_code == 200
    assert client.post("/predict?strict=false", json={"images": batch.tolist()}).status_code == 200
    bad = client.post("/predict?strict=yes", json={"images": ordinary.tolist()})
    assert_error(bad, 422, "invalid_parameter", "strict must be true or false")


def test_v2_carries_the_assessment_as_outputs(
    server: Server, client: httpx.Client, garments: NDArray[np.uint8]
) -> None:
    ordinary = typical(garments, client)[:2]
    batch = np.vstack([ordinary, strangers.noise(1)])
    triton_client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        pixels = triton.InferInput("pixels", list(batch.shape), "UINT8")
        pixels.set_data_from_numpy(batch)
        result = triton_client.infer("softmax", [pixels])  # every output, as binary data
        assert result.as_numpy("ood_flag").reshape(-1).tolist() == [False, False, True]
        scores = result.as_numpy("ood_score").reshape(-1)
        assert scores.dtype == np.float32 and scores[2] > scores[0]
        assert result.as_numpy("probabilities").shape == (3, 10)
    finally:
        triton_client.close()
    tensor = {"name": "pixels", "shape": [3, 784], "datatype": "UINT8", "data": batch.tolist()}
    strict = client.post(V2, json={"inputs": [tensor], "parameters": {"strict": True}})
    assert strict.status_code == 422
    assert strict.json()["error"].startswith("image 2 is unlike the images")
    only = client.post(V2, json={"inputs": [tensor], "outputs": [{"name": "ood_flag"}]}).json()
    assert only["outputs"] == [
        {"name": "ood_flag", "datatype": "BOOL", "shape": [3, 1], "data": [False, False, True]}
    ]


def test_models_say_flagging_is_on(client: httpx.Client) -> None:
    for model in client.get("/models").json()["models"]:
        assert model["ood"] == {"enabled": True, "expected_rate": 0.005, "reason": None}


# --- without the statistics -------------------------------------------------------------------


def without_statistics(artifact: Artifact) -> Artifact:
    """The artifact as softserve wrote it before it computed the statistics."""
    meta = artifact.meta
    del meta["ood"]
    return Artifact(artifact.weights, artifact.bias, meta)


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("old")
    models = root / "models"
    models.mkdir()
    artifacts.save(
        without_statistics(artifacts.load(SHIPPED / "softmax.npz")), models / "softmax.npz"
    )
    shutil.copy2(SHIPPED / "binary.npz", models / "binary.npz")
    with run_server(root, model_dir=models) as running:
        yield running


@pytest.fixture(scope="module")
def off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("off"), {"SOFTSERVE_OOD": "off"}) as running:
        yield running


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("old", "the artifact has no out-of-distribution statistics"),
        ("off", "out-of-distribution flagging is off (SOFTSERVE_OOD)"),
    ],
)
def test_without_flagging_answers_still_come_and_say_why(
    request: pytest.FixtureRequest, which: str, reason: str
) -> None:
    server: Server = request.getfixturevalue(which)
    pixels = strangers.noise(2)
    with server.client() as client:
        body = client.post("/predict", json={"images": pixels.tolist()})
        assert body.status_code == 200
        assert [p["ood"] for p in body.json()["predictions"]] == [None, None]
        raw = client.post("/predict", content=pixels.tobytes(), headers=RAW)
        assert raw.status_code == 200 and "x-softserve-ood-flagged" not in raw.headers
        status = {m["name"]: m["ood"] for m in client.get("/models").json()["models"]}
        assert status["softmax"]["enabled"] is False
        assert reason in status["softmax"]["reason"]
        strict = client.post("/predict?strict=true", json={"images": pixels.tolist()})
        error = assert_error(strict, 422, "strict_unavailable", "strict needs out-of-distribution")
        assert reason in error["message"]
        meta = client.get("/v2/models/softmax").json()
        assert [o["name"] for o in meta["outputs"]] == ["probabilities"]
        tensor = {"name": "pixels", "shape": [2, 784], "datatype": "UINT8",
                  "data": pixels.reshape(-1).tolist()}  # fmt: skip
        v2 = client.post(V2, json={"inputs": [tensor]}).json()
        assert [o["name"] for o in v2["outputs"]] == ["probabilities"]
        asked = client.post(V2, json={"inputs": [tensor], "outputs": [{"name": "ood_score"}]})
        assert asked.status_code == 422
        assert "output 'ood_score' is not available" in asked.json()["error"]


# --- one image and a batch ---------------------------------------------------------------------


def on_the_dark_top_threshold(artifact: Artifact) -> NDArray[np.uint8]:
    """Images whose share of black top pixels is exactly at, and one pixel either side of, the
    dark_top threshold (a multiple of 1/56): where float32 and float64 disagree."""
    stats = ood.from_meta(artifact.meta["ood"])
    at = round(stats.thresholds["dark_top"] * 56)
    out = []
    for count in (at - 1, at, at + 1):
        image = np.round(stats.mean * 255).astype(np.uint8)  # the training images' mean
        image[:56] = 9
        image[:count] = 0
        out.append(image)
    return np.array(out)


@pytest.mark.parametrize("model", ["softmax", "binary"])
def test_one_image_is_assessed_as_it_is_in_a_batch(
    test_images: tuple[NDArray[np.uint8], NDArray[np.uint8]], model: str
) -> None:
    """The one-image path (Python floats) and the batch path (NumPy) agree, image by image, on
    garments, on every kind of stranger and at a threshold, as uint8 and as float pixels."""
    artifact = artifacts.load(SHIPPED / f"{model}.npz")
    detector, why = detector_for(artifact.meta, artifact.weights)
    assert detector is not None, why
    images = np.vstack([
        test_images[0][:60], strangers.inverted(test_images[0][:10]), strangers.noise(10),
        strangers.glyphs()[::40], strangers.photos(10), on_the_dark_top_threshold(artifact),
    ])  # fmt: skip
    for pixels in (images, images.astype(np.float32)):
        X = pixels_to_features(pixels)
        logits, batch = detector.logits_and_assessment(pixels, X, artifact.bias)
        assert 0 < len(batch.flagged()) < len(images)
        for i in range(len(images)):
            one_logits, one = detector.logits_and_assessment(pixels[i : i + 1], X[i : i + 1],
                                                             artifact.bias)  # fmt: skip
            np.testing.assert_allclose(one_logits[0], logits[i], rtol=1e-5, atol=1e-5)
            assert one.flags() == [batch.flags()[i]], i
            # the products agree to float32 rounding (BLAS sums a row and a batch differently)
            assert one.score_array()[0] == pytest.approx(batch.score_array()[i], rel=1e-5), i
            assert one.reasons(0) == batch.reasons(i), i
            assert (one.score_array()[0] > 1) == one.flags()[0], i
