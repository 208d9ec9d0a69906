"""Health, model metadata, versions, activation and hot reload, over HTTP against real uvicorn
processes. The model folder is a copy per server; tests that change it put the shipped model back.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from tests.service.reference import check_predictions
from tests.support.server import SHIPPED, Server, run_server, wait_for
from trainer import artifacts
from trainer.artifacts import Artifact
from trainer.timestamps import utc_now_iso

Images = tuple[NDArray[np.uint8], NDArray[np.uint8]]
TOKEN = "secret"
POLL = 30.0  # seconds to wait for the folder watch (every 0.2 s) to notice a change


@pytest.fixture(scope="module")
def shipped() -> dict[str, Artifact]:
    return {name: artifacts.load(SHIPPED / f"{name}.npz") for name in ("softmax", "binary")}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second server: an API token, and a model folder holding only softmax.npz (not ready)."""
    root = tmp_path_factory.mktemp("guarded")
    models = root / "models"
    models.mkdir()
    shutil.copy2(SHIPPED / "softmax.npz", models / "softmax.npz")
    with run_server(root, {"SOFTSERVE_API_TOKEN": TOKEN}, model_dir=models) as running:
        yield running


@pytest.fixture
def images(test_images: Images) -> NDArray[np.uint8]:
    return test_images[0][:16]


def variant(base: Artifact, boosted: int) -> Artifact:
    """A new version of ``base`` that predicts class ``boosted`` for every image."""
    meta = base.meta
    meta["version"] = artifacts.new_version()
    meta["created_at"] = utc_now_iso()
    bias = np.array(base.bias)
    bias[boosted] += 100.0
    return Artifact(base.weights, bias, meta)


def replace_atomically(target: Path, data: bytes) -> None:
    """Write beside the target, then rename over it: the watcher sees the old file or the new."""
    tmp = target.with_name(f".{target.name}.incoming")
    tmp.write_bytes(data)
    tmp.replace(target)  # os.replace: atomic within one file system


def artifact_bytes(artifact: Artifact, folder: Path) -> bytes:
    path = artifacts.save(artifact, folder / f".{artifact.version}.staged.npz")
    data = path.read_bytes()
    path.unlink()
    return data


def npz_bytes(weights: NDArray[Any], bias: NDArray[Any], meta: dict[str, Any]) -> bytes:
    """An .npz in the artifact layout, written without the trainer's validation."""
    out = io.BytesIO()
    np.savez(out, weights=weights, bias=bias, meta=np.array(json.dumps(meta)))
    return out.getvalue()


def served_version(client: httpx.Client, name: str = "softmax") -> str:
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    version: str = models[name]["version"]
    return version


def wait_for_version(client: httpx.Client, version: str) -> None:
    wait_for(lambda: served_version(client) == version, timeout=POLL)


def restore_shipped(server: Server, client: httpx.Client, shipped: dict[str, Artifact]) -> None:
    replace_atomically(server.model_dir / "softmax.npz", (SHIPPED / "softmax.npz").read_bytes())
    wait_for(lambda: client.get("/health/ready").json()["problems"] == {}, timeout=POLL)
    wait_for_version(client, shipped["softmax"].version)


# --- health -------------------------------------------------------------------------------------


def test_live(client: httpx.Client) -> None:
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "live"


def test_ready_lists_the_served_versions(
    client: httpx.Client, shipped: dict[str, Artifact]
) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "pid": client.get("/health/live").json()["pid"],
        "models": {name: a.version for name, a in sorted(shipped.items())},
        "problems": {},
        "database": {
            "backend": "sqlite",
            "listener_connected": None,
            "last_sync_seconds_ago": None,
            "error": None,
        },
    }


def test_not_ready_until_every_required_model_is_loaded(
    guarded: Server, shipped: dict[str, Artifact], images: NDArray[np.uint8]
) -> None:
    with guarded.client() as client:
        response = client.get("/health/ready")
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "not_ready"
        assert error["message"].startswith("model 'binary' is not loaded: no binary.npz in ")
        assert client.get("/health/live").status_code == 200
        # What is loaded is served meanwhile; what is not says why.
        check_predictions(
            client.post("/predict", json={"images": images.tolist()}),
            shipped["softmax"],
            "softmax",
            images,
        )
        missing = client.post("/predict?model=binary", json={"images": images.tolist()})
        assert missing.status_code == 503  # a required model: the server is not ready for it
        assert missing.json()["error"]["code"] == "model_not_loaded"
        assert missing.json()["error"]["message"].startswith(
            "model 'binary' is not loaded: no binary.npz in "
        )
        assert client.get("/models").json()["not_loaded"] == {
            "binary": f"no binary.npz in {guarded.model_dir}"
        }

        replace_atomically(guarded.model_dir / "binary.npz", (SHIPPED / "binary.npz").read_bytes())
        wait_for(lambda: client.get("/health/ready").status_code == 200, timeout=POLL)
        assert client.get("/health/ready").json()["models"]["binary"] == shipped["binary"].version
        check_predictions(
            client.post("/predict?model=binary", json={"images": images.tolist()}),
            shipped["binary"],
            "binary",
            images,
        )


# --- metadata -----------------------------------------------------------------------------------


def test_models_lists_every_served_model(
    client: httpx.Client, shipped: dict[str, Artifact]
) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert body["not_loaded"] == {}
    assert [m["name"] for m in body["models"]] == ["binary", "softmax"]
    for entry in body["models"]:
        artifact = shipped[entry["name"]]
        assert entry["kind"] == artifact.kind
        assert entry["version"] == artifact.version
        assert entry["created_at"] == artifact.created_at
        assert entry["class_names"] == list(artifact.class_names)
        assert entry["n_outputs"] == artifact.weights.shape[1]
        assert entry["metrics"] == artifact.meta["metrics"]
        assert entry["problem"] is None
        assert entry["loaded_at"].endswith("Z")


@pytest.mark.parametrize("name", ["softmax", "binary"])
def test_a_model_shows_all_its_metadata(
    client: httpx.Client, shipped: dict[str, Artifact], name: str
) -> None:
    response = client.get(f"/models/{name}")
    assert response.status_code == 200
    body = response.json()
    meta = shipped[name].meta
    for key, value in meta.items():  # everything the artifact says about itself
        if key != "ood":
            assert body[key] == value, key
    # the out-of-distribution block: its figures and whether it is in use, not its arrays
    arrays = {"mean", "components", "variances"}
    assert {k: v for k, v in meta["ood"].items() if k not in arrays} == {
        k: v for k, v in body["ood"].items() if k not in ("enabled", "expected_rate", "reason")
    }
    assert (body["ood"]["enabled"], body["ood"]["reason"]) == (True, None)
    assert body["ood"]["expected_rate"] == meta["ood"]["rate"] == 0.005
    assert len(response.content) < 50_000  # the arrays stay out
    assert body["name"] == name
    assert body["problem"] is None
    assert "weights" not in body and "bias" not in body
    assert body["input"] == {
        "features": 784,
        "shape": [28, 28],
        "dtype": "uint8",
        "pixel_min": 0,
        "pixel_max": 255,
        "scale": 255.0,
        "formula": "logits = (pixels / 255) @ weights + bias",
    }
    assert body["training"]["model"] == name
    assert body["training"]["epochs"] == len({row["epoch"] for row in body["history"]})
    if name == "binary":
        assert body["class_names"] == ["not Shirt", "Shirt"]
        assert body["binary"]["positive_classes"] == ["Shirt"]
    else:
        assert body["class_names"][0] == "T-shirt/top"
        assert len(body["class_names"]) == 10


@pytest.mark.parametrize(
    "url", ["/models/nope", "/models/nope/versions", "/models/Softmax", "/models/%2E%2E"]
)
def test_an_unknown_model_is_404(client: httpx.Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_model"


def test_versions_of_the_shipped_model(client: httpx.Client, shipped: dict[str, Artifact]) -> None:
    response = client.get("/models/binary/versions")
    assert response.status_code == 200
    version = shipped["binary"].version
    assert response.json() == {
        "model": "binary",
        "active": version,
        "versions": [
            {
                "version": version,
                "created_at": shipped["binary"].created_at,
                "test_accuracy": shipped["binary"].meta["metrics"]["test"]["accuracy"],
                "metrics": shipped["binary"].meta["metrics"],
                "class_names": list(shipped["binary"].class_names),
                "problem": None,
                "active": True,
            }
        ],
    }


# --- activation: roll back and forward ----------------------------------------------------------


def test_activate_rolls_forward_and_back(
    server: Server, client: httpx.Client, shipped: dict[str, Artifact], images: NDArray[np.uint8]
) -> None:
    old = shipped["softmax"]
    new = variant(old, boosted=3)
    artifacts.save(new, server.model_dir / "softmax" / f"{new.version}.npz")

    listed = client.get("/models/softmax/versions").json()
    newest_first = sorted([new.version, old.version], reverse=True)
    assert [v["version"] for v in listed["versions"]] == newest_first
    assert [v["active"] for v in listed["versions"]] == [v == old.version for v in newest_first]

    response = client.post("/models/softmax/activate", json={"version": new.version})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == new.version
    predicted = client.post("/predict", json={"images": images.tolist()})
    check_predictions(predicted, new, "softmax", images)
    assert {p["label"] for p in predicted.json()["predictions"]} == {3}
    assert served_version(client) == new.version
    assert client.get("/health/ready").json()["models"]["softmax"] == new.version
    assert client.get("/models/softmax/versions").json()["active"] == new.version
    # The version it replaced was kept, so it can come back.
    assert (server.model_dir / "softmax" / f"{old.version}.npz").is_file()

    response = client.post("/models/softmax/activate", json={"version": old.version})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == old.version
    check_predictions(
        client.post("/predict", json={"images": images.tolist()}), old, "softmax", images
    )
    listed = client.get("/models/softmax/versions").json()
    assert listed["active"] == old.version
    assert [v["active"] for v in listed["versions"]] == [v == old.version for v in newest_first]


@pytest.mark.parametrize(
    ("name", "body", "status", "code", "message"),
    [
        ("softmax", {"version": "20200101T000000Z-00000000"}, 404, "unknown_version",
         "model 'softmax' has no version '20200101T000000Z-00000000'"),
        ("nope", {"version": "20200101T000000Z-00000000"}, 404, "unknown_model",
         "unknown model 'nope'"),
        ("softmax", {"version": "../binary"}, 422, "invalid_version",
         "invalid version '../binary': versions look like 20261122T045742Z-1f3a1006"),
        ("softmax", {"version": "a..b"}, 422, "invalid_version", "invalid version 'a..b'"),
        ("softmax", {"version": ""}, 422, "invalid_version", "invalid version ''"),
        ("softmax", {"version": "a" * 81}, 422, "invalid_version",
         f"invalid version '{'a' * 80}':"),
        ("softmax", {"version": 20200101}, 422, "invalid_request", "version"),
        ("softmax", {}, 422, "invalid_request", "version: Field required"),
        ("softmax", {"version": "v1", "force": True}, 422, "invalid_request", "force"),
    ],
    ids=["unknown-version", "unknown-model", "traversal", "dot-dot", "empty", "81-chars",
         "number", "missing", "extra-field"],
)  # fmt: skip
def test_activate_refuses_what_it_cannot_serve(
    client: httpx.Client,
    shipped: dict[str, Artifact],
    name: str,
    body: dict[str, Any],
    status: int,
    code: str,
    message: str,
) -> None:
    response = client.post(f"/models/{name}/activate", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]
    assert served_version(client) == shipped["softmax"].version


@pytest.mark.parametrize(
    "content", [b'{"version": ', b"\x00\x00\x00B\xff\xff\xff\xff"], ids=["truncated", "not-text"]
)
def test_activate_with_malformed_json_is_400(client: httpx.Client, content: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    response = client.post("/models/softmax/activate", content=content, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.json()["error"]["message"].startswith("body is not valid JSON: ")


def test_a_damaged_kept_version_is_listed_and_not_activated(
    server: Server, client: httpx.Client, shipped: dict[str, Artifact]
) -> None:
    version = artifacts.new_version()
    path = server.model_dir / "softmax" / f"{version}.npz"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"not an npz")
    try:
        response = client.post("/models/softmax/activate", json={"version": version})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_artifact"
        assert f"version {version!r} cannot be served" in response.json()["error"]["message"]
        assert served_version(client) == shipped["softmax"].version
        rows = {v["version"]: v for v in client.get("/models/softmax/versions").json()["versions"]}
        assert rows[version]["problem"] == "not an .npz file"  # no server paths
        assert rows[version]["active"] is False
    finally:
        path.unlink()


def test_activate_needs_the_token_when_one_is_set(
    guarded: Server, shipped: dict[str, Artifact]
) -> None:
    old = shipped["softmax"]
    new = variant(old, boosted=5)
    artifacts.save(new, guarded.model_dir / "softmax" / f"{new.version}.npz")
    url, body = "/models/softmax/activate", {"version": new.version}
    with guarded.client() as client:
        response = client.post(url, json=body)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "missing_token"
        response = client.post(url, json=body, headers={"Authorization": TOKEN})  # no scheme
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        response = client.post(url, json=body, headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "invalid_token"
        assert TOKEN not in response.text
        assert served_version(client) == old.version
        assert client.get("/models/softmax/versions").status_code == 200  # reading stays open

        auth = {"Authorization": f"Bearer {TOKEN}"}
        response = client.post(url, json=body, headers=auth)
        assert response.status_code == 200, response.text
        assert served_version(client) == new.version
        response = client.post(url, json={"version": old.version}, headers=auth)
        assert response.status_code == 200, response.text
        assert served_version(client) == old.version
    assert TOKEN not in guarded.log_text()


# --- hot reload ---------------------------------------------------------------------------------


def test_a_new_file_is_served_once_copied_in(
    server: Server, client: httpx.Client, shipped: dict[str, Artifact], images: NDArray[np.uint8]
) -> None:
    new = variant(shipped["softmax"], boosted=7)
    try:
        replace_atomically(server.model_dir / "softmax.npz", artifact_bytes(new, server.model_dir))
        wait_for_version(client, new.version)
        predicted = client.post("/predict", json={"images": images.tolist()})
        check_predictions(predicted, new, "softmax", images)
        assert {p["label"] for p in predicted.json()["predictions"]} == {7}
        ready = client.get("/health/ready").json()
        assert ready["models"]["softmax"] == new.version
        assert ready["problems"] == {}
    finally:
        restore_shipped(server, client, shipped)
    check_predictions(
        client.post("/predict", json={"images": images.tolist()}),
        shipped["softmax"],
        "softmax",
        images,
    )


def _truncated(base: Artifact) -> bytes:
    data = (SHIPPED / "softmax.npz").read_bytes()
    return data[: len(data) // 2]


def _not_npz(base: Artifact) -> bytes:
    return b"softmax weights, trust me\n" * 100


def _nan_weights(base: Artifact) -> bytes:
    weights = np.array(base.weights)
    weights[100, 3] = np.nan
    meta = base.meta
    meta["version"] = artifacts.new_version()
    return npz_bytes(weights, base.bias, meta)


def _wrong_shape(base: Artifact) -> bytes:
    meta = base.meta
    meta["version"] = artifacts.new_version()
    return npz_bytes(base.weights[:, :3], base.bias[:3], meta)


CORRUPTIONS: dict[str, tuple[Callable[[Artifact], bytes], str]] = {
    "truncated": (_truncated, "truncated or corrupt .npz file"),
    "not-npz": (_not_npz, "not an .npz file"),
    "nan-weights": (_nan_weights, "weights contain NaN or infinite values"),
    "three-outputs-ten-names": (_wrong_shape, "class_names has 10 names but weights have K = 3"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_bad_file_is_never_served(
    server: Server,
    client: httpx.Client,
    shipped: dict[str, Artifact],
    images: NDArray[np.uint8],
    corruption: str,
) -> None:
    make, reason = CORRUPTIONS[corruption]
    good = shipped["softmax"]
    try:
        replace_atomically(server.model_dir / "softmax.npz", make(good))

        def problem() -> str | None:
            problems: dict[str, str] = client.get("/health/ready").json()["problems"]
            return problems.get("softmax")

        found = wait_for(problem, timeout=POLL)
        assert isinstance(found, str)
        assert found.startswith("softmax.npz was rejected: ")
        assert reason in found
        assert found.endswith(f"; still serving version {good.version}")

        ready = client.get("/health/ready")
        assert ready.status_code == 200  # the last good version still answers
        assert ready.json()["models"]["softmax"] == good.version
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert listed["softmax"]["version"] == good.version
        assert listed["softmax"]["problem"] == found
        assert client.get("/models/softmax").json()["problem"] == found
        check_predictions(
            client.post("/predict", json={"images": images.tolist()}), good, "softmax", images
        )
        assert "rejected, not served" in server.log_text()
    finally:
        restore_shipped(server, client, shipped)
    assert client.get("/models/softmax").json()["problem"] is None
