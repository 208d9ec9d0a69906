"""What the container relies on: an empty model folder seeded with the shipped models, settings
for python -m service from the environment, and the readiness probe its HEALTHCHECK runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service import probe
from service.config import Settings
from service.modelstore import StoreError
from service.modelstore.folder import FolderModelStore
from tests.support.server import (
    REPO,
    SHIPPED,
    clean_env,
    copy_shipped_models,
    free_port,
    run_server,
)
from trainer import artifacts
from trainer.artifacts import Artifact


def test_seed_fills_an_empty_folder_with_the_same_models(tmp_path: Path) -> None:
    store = FolderModelStore(tmp_path / "models")
    assert store.seed_from(SHIPPED) == ["binary", "softmax"]
    for name in ("softmax", "binary"):
        seeded, shipped = (artifacts.load(p / f"{name}.npz") for p in (store.root, SHIPPED))
        assert seeded.version == shipped.version
        assert (seeded.weights == shipped.weights).all() and (seeded.bias == shipped.bias).all()
    assert store.seed_from(SHIPPED) == []  # the second start changes nothing


def test_seed_leaves_models_the_folder_already_has(tmp_path: Path) -> None:
    """A volume holding trained versions keeps them: a model with an active file, or with kept
    versions only (its active file removed by hand), is not seeded again."""
    store = FolderModelStore(tmp_path / "models")
    shipped = artifacts.load(SHIPPED / "softmax.npz")
    mine = artifacts.new_version()
    meta = shipped.meta | {"version": mine}
    artifacts.save(Artifact(shipped.weights, shipped.bias, meta), store.active_path("softmax"))
    store.add_version("binary", artifacts.load(SHIPPED / "binary.npz"))
    assert store.seed_from(SHIPPED) == []
    assert artifacts.load(store.active_path("softmax")).version == mine
    assert not store.active_path("binary").exists()


def test_seeding_a_folder_that_has_every_model_writes_nothing(tmp_path: Path) -> None:
    """So a read-only model volume still starts: no lock file, no write at all."""
    store = FolderModelStore(copy_shipped_models(tmp_path / "models"))
    before = sorted(p.name for p in store.root.iterdir())
    assert store.seed_from(SHIPPED) == []
    assert sorted(p.name for p in store.root.iterdir()) == before  # no .lock either


def test_a_bad_seed_file_is_named_and_the_good_ones_still_land(tmp_path: Path) -> None:
    seeds = copy_shipped_models(tmp_path / "seeds")
    (seeds / "broken.npz").write_bytes(b"not a zip")
    (seeds / "Not A Name.npz").write_bytes(b"ignored: not a model name")
    store = FolderModelStore(tmp_path / "models")
    with pytest.raises(StoreError, match=r"broken\.npz"):
        store.seed_from(seeds)
    assert store.names() == ["binary", "softmax"]
    assert not (store.root / "broken.npz").exists()


def test_service_from_env_seeds_an_empty_volume_and_the_probe_says_ready(tmp_path: Path) -> None:
    """As in the container: host, port and workers from SOFTSERVE_*, models seeded on start."""
    models = tmp_path / "models"
    models.mkdir()
    env = {
        "SOFTSERVE_SEED_DIR": str(SHIPPED),
        "SOFTSERVE_PORT": "tcp://10.0.0.7:8000",  # what Kubernetes sets for a Service 'softserve'
    }
    with run_server(tmp_path, env, model_dir=models, entry="service-env") as server:
        with server.client() as client:
            assert client.get("/health/ready").status_code == 200
            listed = {m["name"]: m["version"] for m in client.get("/models").json()["models"]}
        shipped = {n: artifacts.load(SHIPPED / f"{n}.npz").version for n in ("softmax", "binary")}
        assert listed == shipped
        port = server.url.rsplit(":", 1)[1]
        assert run_probe({"SOFTSERVE_HTTP_PORT": port, "SOFTSERVE_HOST": "0.0.0.0"}) == (0, "200")
        dead_proxy = "http://127.0.0.1:9"  # Docker passes the client's proxies on; none answers
        proxied = {
            "http_proxy": dead_proxy,
            "HTTP_PROXY": dead_proxy,
            "no_proxy": "",
            "NO_PROXY": "",
        }
        assert run_probe({"SOFTSERVE_HTTP_PORT": port, **proxied}) == (0, "200")


def test_the_probe_fails_with_the_reason_when_not_ready(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy2(SHIPPED / "softmax.npz", models / "softmax.npz")  # binary is missing
    with run_server(tmp_path, model_dir=models) as server:
        port = server.url.rsplit(":", 1)[1]
        code, output = run_probe({"SOFTSERVE_HTTP_PORT": port})
    assert code == 1
    assert "503" in output and "binary" in output


def test_the_probe_fails_when_nothing_listens() -> None:
    code, output = run_probe({"SOFTSERVE_HTTP_PORT": str(free_port())})
    assert code == 1
    assert "refused" in output.lower()


def test_ready_url_asks_loopback_for_a_wildcard_bind() -> None:
    assert probe.ready_url(Settings(host="0.0.0.0", http_port=9000)) == (
        "http://127.0.0.1:9000/health/ready"
    )
    assert probe.ready_url(Settings(host="::1", http_port=80)) == "http://[::1]:80/health/ready"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SOFTSERVE_WORKERS", "zero"), ("SOFTSERVE_REQUIRED_MODELS", '["softmax"')],
)
def test_a_bad_setting_is_one_line_without_a_traceback(variable: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=REPO,
        env={**clean_env(), variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("softmax", ("softmax",)),
        ("softmax, binary", ("softmax", "binary")),
        ('["softmax", "binary"]', ("softmax", "binary")),
        ("", ()),
    ],
)
def test_list_settings_take_commas_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("SOFTSERVE_REQUIRED_MODELS", value)
    monkeypatch.setenv("SOFTSERVE_CORS_ORIGINS", value)
    settings = Settings()
    assert settings.required_models == expected
    assert settings.cors_origins == expected


def run_probe(env: dict[str, str]) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "service.probe"],
        cwd=REPO,
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    status = result.stdout.split(": ", 1)[1].split()[0] if ": " in result.stdout else ""
    return result.returncode, status if result.returncode == 0 else result.stdout
