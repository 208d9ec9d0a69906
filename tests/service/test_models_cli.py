"""``python -m service models import|export DIR``, as a user runs them: folder to PostgreSQL and
back, and the model folder itself; a bad file is named and skipped."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from service.modelstore.postgres import PostgresModelStore
from tests.support.postgres import Postgres
from tests.support.server import REPO, SHIPPED, clean_env
from trainer import artifacts


def models(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "models", *args], cwd=REPO, env=clean_env() | env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_import_into_the_database_and_export_back_to_a_servable_folder(
    postgres: Postgres, tmp_path: Path
) -> None:
    postgres.empty()
    source = tmp_path / "source"
    shutil.copytree(SHIPPED, source)
    (source / "broken.npz").write_bytes(b"not an artifact")
    env = {"SOFTSERVE_DATABASE_URL": postgres.url}
    done = models("import", str(source), env=env)
    assert done.returncode == 1, done.stderr  # the broken one
    assert "broken.npz: skipped" in done.stderr
    for name in ("binary", "softmax"):
        version = artifacts.load(SHIPPED / f"{name}.npz").version
        assert f"{name} {version}: promoted: no valid active version" in done.stdout
    assert "softserve-test-password" not in done.stdout + done.stderr
    again = models("import", str(SHIPPED), env=env)  # the same versions: kept as they are
    assert again.returncode == 0, again.stderr

    out = tmp_path / "out"
    exported = models("export", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    for name in ("binary", "softmax"):
        shipped = artifacts.load(SHIPPED / f"{name}.npz")
        assert artifacts.load(out / f"{name}.npz").version == shipped.version
        assert artifacts.load(out / name / f"{shipped.version}.npz").version == shipped.version
    store = PostgresModelStore(postgres.url)
    try:
        assert store.names() == ["binary", "softmax"]
    finally:
        store.close()


def test_without_a_database_the_model_folder_is_the_store(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    shutil.copytree(SHIPPED, folder)
    env = {"SOFTSERVE_MODEL_DIR": str(folder)}
    out = tmp_path / "out"
    exported = models("export", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in out.glob("*.npz")) == ["binary.npz", "softmax.npz"]
    missing = models("import", str(tmp_path / "nowhere"), env=env)
    assert missing.returncode == 1 and "no such folder" in missing.stderr
    assert sorted(p.name for p in folder.glob("*.npz")) == ["binary.npz", "softmax.npz"]
