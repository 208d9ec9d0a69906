"""The Open Inference Protocol's own clients, unchanged, against a real uvicorn process:
tritonclient's HTTP client (sync and aio), the KServe SDK's InferenceRESTClient (v2) and the
generated open-inference-openapi client. Every probability is checked against the artifact
applied with NumPy (tests.service.reference), not against the service itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from numpy.typing import NDArray
from open_inference.openapi.client import OpenInferenceClient
from open_inference.openapi.types import InferenceRequest, RequestInput
from tritonclient.utils import InferenceServerException

from tests.service.reference import reference
from tests.support.server import SHIPPED, Server, copy_shipped_models, run_server
from trainer import artifacts
from trainer.artifacts import Artifact
from trainer.timestamps import utc_now_iso

N = 5


@pytest.fixture(scope="module")
def shipped() -> dict[str, Artifact]:
    return {name: artifacts.load(SHIPPED / f"{name}.npz") for name in ("softmax", "binary")}


@pytest.fixture(scope="module")
def kept(shipped: dict[str, Artifact]) -> Artifact:
    """A second, older version of softmax, kept beside the active one: it answers class 3."""
    meta = shipped["softmax"].meta
    meta["version"] = "20200101T000000Z-0000beef"
    meta["created_at"] = utc_now_iso()
    bias = np.array(shipped["softmax"].bias)
    bias[3] += 100.0
    return Artifact(shipped["softmax"].weights, bias, meta)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, kept: Artifact) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("v2")
    models = copy_shipped_models(root / "models")
    (models / "softmax").mkdir()
    artifacts.save(kept, models / "softmax" / f"{kept.version}.npz")
    with run_server(root, model_dir=models) as running:
        yield running


@pytest.fixture(scope="module")
def images() -> NDArray[np.uint8]:
    """N images with light items on dark, and one all-white and one all-black."""
    rng = np.random.default_rng(7)
    x = (rng.random((N, 784)) ** 3 * 255).astype(np.uint8)
    x[0], x[1] = 255, 0
    return x


@pytest.fixture
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield c
    c.close()


def expected(artifact: Artifact, images: NDArray[Any]) -> NDArray[np.float64]:
    """(N, K) probabilities, as the service's output: a binary model's positive class (N, 1)."""
    proba = reference(artifact, images)[1]
    return proba.reshape(len(images), -1)


def pixels_input(images: NDArray[Any], datatype: str = "UINT8", binary: bool = True) -> Any:
    tensor = triton.InferInput("pixels", list(images.shape), datatype)
    tensor.set_data_from_numpy(images, binary_data=binary)
    return tensor


# --- tritonclient.http (sync) ---------------------------------------------------------------


def test_health_and_metadata(client: triton.InferenceServerClient, kept: Artifact) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("softmax")
    assert client.is_model_ready("softmax", model_version=kept.version)
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready("softmax", model_version="20990101T000000Z-00000000")
    server = client.get_server_metadata()
    assert server["name"] == "softserve"
    assert {"binary_tensor_data", "classification"} <= set(server["extensions"])
    meta = client.get_model_metadata("softmax")
    assert meta["name"] == "softmax"
    assert kept.version in meta["versions"]
    assert meta["inputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": [-1, 784]}]
    ood = [{"name": "ood_score", "datatype": "FP32", "shape": [-1, 1]},
           {"name": "ood_flag", "datatype": "BOOL", "shape": [-1, 1]}]  # fmt: skip
    assert meta["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        *ood,
    ]
    binary = client.get_model_metadata("binary")
    assert binary["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 1]},
        *ood,
    ]
    assert client.get_model_metadata("softmax", model_version=kept.version)["name"] == "softmax"


@pytest.mark.parametrize("name", ["softmax", "binary"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary-data", "json"])
def test_infer(
    client: triton.InferenceServerClient,
    shipped: dict[str, Artifact],
    images: NDArray[np.uint8],
    name: str,
    binary: bool,
) -> None:
    output = triton.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer(name, [pixels_input(images, binary=binary)], outputs=[output])
    response = result.get_response()
    assert response["model_name"] == name
    assert response["model_version"] == shipped[name].version
    got = result.as_numpy("probabilities")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected(shipped[name], images), rtol=1e-4, atol=1e-6)


def test_infer_with_the_clients_defaults_is_binary_both_ways(
    client: triton.InferenceServerClient, shipped: dict[str, Artifact], images: NDArray[np.uint8]
) -> None:
    result = client.infer("softmax", [pixels_input(images)], request_id="req-7")
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["outputs"][0]["parameters"]["binary_data_size"] == N * 10 * 4
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), expected(shipped["softmax"], images), rtol=1e-4,
        atol=1e-6,
    )  # fmt: skip


@pytest.mark.parametrize("binary", [True, False], ids=["binary-data", "json"])
def test_fp32_input_of_shape_n_28_28(
    client: triton.InferenceServerClient,
    shipped: dict[str, Artifact],
    images: NDArray[np.uint8],
    binary: bool,
) -> None:
    square = images.reshape(N, 28, 28).astype(np.float32)
    result = client.infer("softmax", [pixels_input(square, "FP32", binary)])
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), expected(shipped["softmax"], images), rtol=1e-4,
        atol=1e-6,
    )  # fmt: skip


@pytest.mark.parametrize("binary", [True, False], ids=["binary-data", "json"])
def test_classification(
    client: triton.InferenceServerClient,
    shipped: dict[str, Artifact],
    images: NDArray[np.uint8],
    binary: bool,
) -> None:
    output = triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)
    result = client.infer("softmax", [pixels_input(images)], outputs=[output])
    got = result.as_numpy("probabilities")
    assert got.shape == (N, 3)
    proba = expected(shipped["softmax"], images)
    names = shipped["softmax"].class_names
    for row in range(N):  # "value:index:label", likeliest first (up to ties)
        text = [e.decode() if isinstance(e, bytes) else str(e) for e in got[row]]
        entries = [entry.split(":", 2) for entry in text]
        indices = [int(index) for _, index, _ in entries]
        values = np.array([float(value) for value, _, _ in entries])
        assert [label for _, _, label in entries] == [names[i] for i in indices]
        np.testing.assert_allclose(values, proba[row, indices], atol=2e-6)
        assert (np.diff(values) <= 0).all()
        others = np.delete(proba[row], indices)
        assert others.max() <= values[-1] + 2e-6
        assert indices[0] == proba[row].argmax()


def test_a_kept_version_by_name(
    client: triton.InferenceServerClient, kept: Artifact, images: NDArray[np.uint8]
) -> None:
    result = client.infer("softmax", [pixels_input(images)], model_version=kept.version)
    assert result.get_response()["model_version"] == kept.version
    got = result.as_numpy("probabilities")
    np.testing.assert_allclose(got, expected(kept, images), rtol=1e-4, atol=1e-6)
    assert (got.argmax(axis=1) == 3).all()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compression_both_ways(
    client: triton.InferenceServerClient,
    shipped: dict[str, Artifact],
    images: NDArray[np.uint8],
    algorithm: str,
) -> None:
    many = np.tile(images, (8, 1))  # an answer big enough to be compressed
    result = client.infer(
        "softmax",
        [pixels_input(many, binary=False)],
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), expected(shipped["softmax"], many), rtol=1e-4, atol=1e-6
    )


def test_an_error_carries_our_message(
    client: triton.InferenceServerClient, images: NDArray[np.uint8]
) -> None:
    bright = images.astype(np.float32) * 2  # values up to 510
    with pytest.raises(InferenceServerException) as raised:
        client.infer("softmax", [pixels_input(bright, "FP32")])
    assert raised.value.status() == "422"
    assert raised.value.message() == "image 0, pixel 0: value 510.0 is outside 0..255"
    with pytest.raises(InferenceServerException) as raised:
        client.infer("no-such-model", [pixels_input(images)])
    assert raised.value.status() == "404"
    assert "unknown model 'no-such-model'" in raised.value.message()


# --- tritonclient.http.aio ------------------------------------------------------------------


def test_the_aio_client(
    server: Server, shipped: dict[str, Artifact], kept: Artifact, images: NDArray[np.uint8]
) -> None:
    async def session() -> None:
        client = triton_aio.InferenceServerClient(server.url.removeprefix("http://"))
        try:
            assert await client.is_server_live()
            assert await client.is_server_ready()
            assert await client.is_model_ready("binary")
            assert (await client.get_model_metadata("binary"))["name"] == "binary"
            assert (await client.get_server_metadata())["name"] == "softserve"
            # the aio client sends Content-Type application/octet-stream, even for pure JSON
            result = await client.infer(
                "softmax",
                [pixels_input(images, binary=False)],
                outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)],
                request_id="aio",
            )
            assert result.get_response()["id"] == "aio"
            np.testing.assert_allclose(
                result.as_numpy("probabilities"), expected(shipped["softmax"], images),
                rtol=1e-4, atol=1e-6,
            )  # fmt: skip
            result = await client.infer(
                "softmax", [pixels_input(images)], model_version=kept.version,
                request_compression_algorithm="gzip", response_compression_algorithm="gzip",
            )  # fmt: skip
            np.testing.assert_allclose(
                result.as_numpy("probabilities"), expected(kept, images), rtol=1e-4, atol=1e-6
            )
            output = triton.InferRequestedOutput("probabilities", class_count=2)
            result = await client.infer("binary", [pixels_input(images)], outputs=[output])
            assert result.as_numpy("probabilities").shape == (N, 2)
            with pytest.raises(InferenceServerException, match="expected one input tensor"):
                await client.infer("softmax", [pixels_input(images), pixels_input(images)])
        finally:
            await client.close()

    asyncio.run(session())


# --- KServe's InferenceRESTClient -----------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary-data", "json"])
def test_kserve_rest_client(
    server: Server, shipped: dict[str, Artifact], images: NDArray[np.uint8], binary: bool
) -> None:
    async def session() -> None:
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            assert await client.is_server_live(server.url)
            assert await client.is_server_ready(server.url)
            assert await client.is_model_ready(server.url, "softmax")
            assert not await client.is_model_ready(server.url, "no-such-model")
            tensor = InferInput("pixels", list(images.shape), "UINT8")
            tensor.set_data_from_numpy(images, binary_data=binary)
            request = InferRequest(model_name="softmax", infer_inputs=[tensor], request_id="ks")
            response = await client.infer(server.url, request, model_name="softmax")
            assert response.id == "ks"
            assert response.model_name == "softmax"  # (its parser drops model_version)
            np.testing.assert_allclose(
                response.outputs[0].as_numpy(), expected(shipped["softmax"], images),
                rtol=1e-4, atol=1e-6,
            )  # fmt: skip
        finally:
            await client.close()

    asyncio.run(session())


# --- the generated open-inference-openapi client --------------------------------------------


def test_open_inference_openapi_client(
    server: Server, shipped: dict[str, Artifact], kept: Artifact, images: NDArray[np.uint8]
) -> None:
    with httpx.Client(timeout=30) as http:
        check_open_inference(OpenInferenceClient(base_url=server.url, httpx_client=http),
                             shipped, kept, images)  # fmt: skip


def check_open_inference(
    client: OpenInferenceClient,
    shipped: dict[str, Artifact],
    kept: Artifact,
    images: NDArray[np.uint8],
) -> None:
    client.check_server_liveness()
    client.check_server_readiness()
    client.check_model_readiness("softmax")
    client.check_model_version_readiness("softmax", kept.version)
    assert client.read_server_metadata().name == "softserve"
    meta = client.read_model_metadata("binary")
    assert meta.inputs is not None and meta.outputs is not None
    assert (meta.inputs[0].name, meta.outputs[0].shape) == ("pixels", [-1, 1])
    assert client.read_model_version_metadata("softmax", kept.version).name == "softmax"
    # The generated client sends UINT8 data as floats, such as 255.0.
    values = [float(v) for v in images.reshape(-1)]
    request = InferenceRequest.parse_obj(
        {"id": "oi", "inputs": [RequestInput.parse_obj(
            {"name": "pixels", "shape": [N, 784], "datatype": "UINT8", "data": values})]}
    )  # fmt: skip
    for name in ("softmax", "binary"):
        response = client.model_infer(name, request=request)
        assert (response.model_name, response.id) == (name, "oi")
        output = response.outputs[0]
        got = np.array(output.data.__root__, dtype=np.float64).reshape(output.shape)
        np.testing.assert_allclose(got, expected(shipped[name], images), rtol=1e-4, atol=1e-6)
    response = client.model_version_infer("softmax", kept.version, request=request)
    assert response.model_version == kept.version
