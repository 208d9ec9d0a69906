"""The console's pages and the API additions it uses, over HTTP against a real uvicorn process:
/ and /ui with their Content-Security-Policy and self-contained assets; a random test image; a
model's confusion matrix; per-route request counts and latency percentiles in JSON /metrics.
(tests/console drives the pages themselves in a browser.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.console import ASSETS, STATIC
from tests.service.catalogue import assert_error
from tests.support.server import SHIPPED, Server, run_server
from trainer import artifacts
from trainer.data import find_files, load_dataset

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
BUDGET = 300 * 1024  # the console's own assets, Swagger UI not counted


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SOFTSERVE_DATA_DIR": str(REAL_DIR)} if find_files(REAL_DIR) else {}
    with run_server(tmp_path_factory.mktemp("console-api"), env) as running:
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def test_the_root_sends_people_to_the_console(client: httpx.Client) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/ui"


def test_the_console_is_self_contained_and_allows_only_its_own_origin(
    client: httpx.Client,
) -> None:
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self';" in csp
    assert "unsafe" not in csp and "http" not in csp
    linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(linked) == sorted(
        ["data:,", "/ui/assets/console.css", "/ui/assets/console.js", "#try", "#models",
         "#train", "#service", "/docs"]
    )  # fmt: skip
    total = len(page.content)
    for name, media in ASSETS.items():
        asset = client.get(f"/ui/assets/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"] == media
        assert asset.headers["content-security-policy"] == csp
        text = asset.text.replace("http://www.w3.org/2000/svg", "")  # a namespace, not a request
        assert not re.search(r"https?://|//cdn", text), name
        assert not re.search(r"localStorage|sessionStorage|document\.cookie", text), name
        total += len(asset.content)
    assert total == sum(f.stat().st_size for f in STATIC.iterdir())
    assert total <= BUDGET, total
    assert_error(client.get("/ui/assets/secrets.txt"), 404, "not_found", "secrets.txt")


@pytest.mark.skipif(find_files(REAL_DIR) is None, reason="Fashion-MNIST not installed")
def test_a_random_test_image_comes_with_its_true_class(client: httpx.Client) -> None:
    data = load_dataset(REAL_DIR)
    seen = set()
    for _ in range(20):
        image = client.get("/datasets/test/random", params={"model": "binary"}).json()
        index = image["index"]
        seen.add(index)
        assert image["pixels"] == data.test_images[index].tolist()
        assert image["label"] == data.test_labels[index]
        assert image["class_name"] == data.class_names[image["label"]]
        shirt = image["class_name"] == "Shirt"  # the shipped binary model: Shirt against the rest
        assert image["expected"] == {
            "label": int(shirt),
            "class_name": ["not Shirt", "Shirt"][shirt],
        }
    assert len(seen) > 1
    plain = client.get("/datasets/test/random").json()
    assert plain["expected"] is None
    softmax = client.get("/datasets/test/random", params={"model": "softmax"}).json()
    assert softmax["expected"] == {"label": softmax["label"], "class_name": softmax["class_name"]}
    assert_error(client.get("/datasets/test/random", params={"model": "nope"}), 404,
                 "unknown_model", "nope")  # fmt: skip


@pytest.mark.skipif(find_files(REAL_DIR) is None, reason="Fashion-MNIST not installed")
@pytest.mark.parametrize("model", ["softmax", "binary"])
def test_the_confusion_matrix_agrees_with_the_artifacts_test_accuracy(
    client: httpx.Client, model: str
) -> None:
    body = client.get(f"/models/{model}/confusion").json()
    shipped = artifacts.load(SHIPPED / f"{model}.npz")
    matrix = body["matrix"]
    assert body["version"] == shipped.version and body["class_names"] == list(shipped.class_names)
    assert len(matrix) == len(shipped.class_names) and sum(map(sum, matrix)) == 10000
    accuracy = sum(matrix[i][i] for i in range(len(matrix))) / 10000
    assert accuracy == pytest.approx(body["accuracy"])
    assert accuracy == pytest.approx(shipped.metrics("test")["accuracy"], abs=1e-4)
    unknown = client.get(
        f"/models/{model}/confusion", params={"version": "20990101T000000Z-00000000"}
    )
    assert unknown.status_code == 404


def test_without_a_dataset_the_test_images_are_a_clear_503(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    env = {"SOFTSERVE_DATA_DIR": str(empty)}
    with run_server(tmp_path / "server", env) as server, server.client() as client:
        for path in ("/datasets/test/random", "/models/softmax/confusion"):
            assert_error(client.get(path), 503, "dataset_unavailable", "SOFTSERVE_DATA_DIR")


def test_metrics_count_each_routes_requests_with_latency_percentiles(
    client: httpx.Client,
) -> None:
    for _ in range(30):
        assert client.post("/predict", json={"pixels": [0] * 784}).status_code == 200
    client.post("/predict", json={"pixels": [0] * 783})
    rows = {(r["route"], r["method"]): r for r in client.get("/metrics").json()["requests"]}
    row = rows["/predict", "POST"]
    assert row["count"] >= 31 and row["by_status"]["2xx"] >= 30 and row["by_status"]["4xx"] >= 1
    assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]


@pytest.mark.skipif(find_files(REAL_DIR) is None, reason="Fashion-MNIST not installed")
def test_a_model_of_other_classes_gets_a_409_for_its_confusion_matrix(tmp_path: Path) -> None:
    """A model trained on other data (here: the shipped softmax, its classes renamed) has no
    confusion matrix on this dataset: a 409 that says why, never a wrong matrix."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("softmax", "binary"):
        shipped = artifacts.load(SHIPPED / f"{name}.npz")
        meta = shipped.meta
        if name == "softmax":
            meta["class_names"] = [f"class {i}" for i in range(10)]
        artifacts.save(
            artifacts.Artifact(shipped.weights, shipped.bias, meta), models / f"{name}.npz"
        )
    env = {"SOFTSERVE_DATA_DIR": str(REAL_DIR)}
    with run_server(tmp_path / "server", env, model_dir=models) as server, server.client() as c:
        assert_error(c.get("/models/softmax/confusion"), 409, "dataset_mismatch", "class 0")
        assert c.get("/models/binary/confusion").status_code == 200
