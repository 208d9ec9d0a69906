"""The model store: the contract every backend keeps (parametrized over the backends: the
folder, and a real PostgreSQL server), the promotion rule they share, and what only the folder
does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from service.modelstore import (
    ModelStore,
    Promotion,
    StoreError,
    check_name,
    check_version,
    decide_promotion,
    open_model_store,
)
from service.modelstore.folder import STALE_TMP_SECONDS, FolderModelStore
from service.modelstore.postgres import CHANNEL, PostgresModelStore
from tests.support.postgres import Postgres
from tests.support.server import SHIPPED
from trainer import artifacts
from trainer.artifacts import Artifact, ArtifactError


def variant(base: Artifact, *, accuracy: float | None = None) -> Artifact:
    """A new version of ``base`` (same weights) with another test accuracy (None: none)."""
    meta = base.meta | {"version": artifacts.new_version()}
    if accuracy is not None:
        meta["metrics"] = {**meta["metrics"], "test": {"accuracy": accuracy, "loss": 0.5}}
    else:
        meta["metrics"] = {k: v for k, v in meta["metrics"].items() if k != "test"}
    return Artifact(base.weights, base.bias, meta)


@pytest.fixture
def shipped() -> Artifact:
    return artifacts.load(SHIPPED / "softmax.npz")


@pytest.fixture(params=["folder", "postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModelStore]:
    """An empty store of each backend, seeded with the shipped models."""
    if request.param == "folder":
        opened: ModelStore = open_model_store(str(tmp_path / "models"))
        opened.seed_from(SHIPPED)
        yield opened
        return
    server: Postgres = request.getfixturevalue("postgres")
    server.empty()  # each test on an empty database
    monkeypatch.setenv("SOFTSERVE_DATABASE_URL", server.url)
    database = PostgresModelStore(server.url)
    assert database.problem() is not None and "holds no models" in database.problem()  # type: ignore[operator]
    assert database.seed_from(SHIPPED) == ["binary", "softmax"]
    assert database.seed_from(SHIPPED) == []  # seeded once
    yield database
    database.close()


# --- the contract ---------------------------------------------------------------------------


def test_names_and_the_active_versions(store: ModelStore, shipped: Artifact) -> None:
    assert store.names() == ["binary", "softmax"]
    assert store.load_active("softmax").version == shipped.version
    assert store.active_stamp("softmax") is not None
    assert store.active_stamp("nope") is None
    assert store.problem() is None


def test_an_active_version_once_loaded_is_kept(store: ModelStore, shipped: Artifact) -> None:
    store.load_active("softmax")
    assert store.versions("softmax") == [shipped.version]
    assert store.load_version("softmax", shipped.version).version == shipped.version


def test_promotion_keeps_every_version_and_moves_the_active_one(
    store: ModelStore, shipped: Artifact
) -> None:
    before = store.active_stamp("softmax")
    better = variant(shipped, accuracy=0.99)
    promoted = store.promote("softmax", better)
    assert promoted == Promotion(better.version, True, promoted.reason)
    assert store.active_stamp("softmax") != before
    assert store.load_active("softmax").version == better.version
    worse = variant(shipped, accuracy=0.5)
    kept = store.promote("softmax", worse)
    assert not kept.promoted and "not promoted: test accuracy 0.5000 is below" in kept.reason
    assert store.load_active("softmax").version == better.version
    assert {shipped.version, better.version, worse.version} <= set(store.versions("softmax"))
    assert store.versions("softmax") == sorted(store.versions("softmax"))  # oldest first


def test_activate_rolls_back_and_forward(store: ModelStore, shipped: Artifact) -> None:
    newer = variant(shipped, accuracy=0.99)
    store.promote("softmax", newer)
    assert store.activate("softmax", shipped.version).version == shipped.version
    assert store.load_active("softmax").version == shipped.version
    store.activate("softmax", newer.version)
    assert store.load_active("softmax").version == newer.version


@pytest.mark.parametrize(
    ("name", "version", "error", "message"),
    [
        ("softmax", "20200101T000000Z-00000000", StoreError, "has no version"),
        ("softmax", "../binary", StoreError, "invalid version '../binary'"),
        ("../x", "20200101T000000Z-00000000", StoreError, "invalid model name '../x'"),
    ],
)
def test_reads_of_what_is_not_there_name_it(
    store: ModelStore, name: str, version: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        store.load_version(name, version)
    with pytest.raises(error, match=message):
        store.activate(name, version)


def test_a_location_opens_the_same_store(store: ModelStore, shipped: Artifact) -> None:
    again = open_model_store(store.location)
    better = variant(shipped, accuracy=0.99)
    again.promote("softmax", better)
    assert store.load_active("softmax").version == better.version


def test_messages_name_models_without_server_paths(store: ModelStore) -> None:
    assert "softmax" in store.label("softmax")
    assert "nope" in store.absent("nope")


# --- the promotion rule -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "new", "force", "promoted", "reason"),
    [
        (None, 0.8, False, True, "promoted: no valid active version"),
        (0.8, 0.8, False, True, "not below the active version"),
        (0.8, 0.9, False, True, "promoted: test accuracy 0.9000 is not below"),
        (0.8, 0.7, False, False, "not promoted: test accuracy 0.7000 is below"),
        (0.8, 0.7, True, True, "promoted: force was set"),
        ("none", 0.7, False, True, "the active version records no test accuracy"),
        (0.8, "none", False, False, "kept: it records no test accuracy"),
    ],
)
def test_decide_promotion(
    shipped: Artifact, current: Any, new: Any, force: bool, promoted: bool, reason: str
) -> None:
    def made(accuracy: Any) -> Artifact:
        return variant(shipped, accuracy=None if accuracy == "none" else accuracy)

    active = None if current is None else made(current)
    decision = decide_promotion(active, made(new), force=force)
    assert decision.promoted is promoted
    assert reason in decision.reason


def test_a_model_of_another_kind_is_promoted_only_by_force(shipped: Artifact) -> None:
    binary = artifacts.load(SHIPPED / "binary.npz")
    assert not decide_promotion(shipped, binary, force=False).promoted
    assert "the active model is 'softmax', this one 'binary'" in (
        decide_promotion(shipped, binary, force=False).reason
    )
    assert decide_promotion(shipped, binary, force=True).promoted


@pytest.mark.parametrize("name", ["softmax", "a", "m-1_2", "x" * 64])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "Softmax", "-a", "a/b", "..", "x" * 65, "a b", "a\x00"])
def test_bad_names(name: str) -> None:
    with pytest.raises(StoreError, match="invalid model name"):
        check_name(name)


@pytest.mark.parametrize("version", ["v1", "..", "20261122T045742Z-1f3a100", "a/../b", ""])
def test_bad_versions(version: str) -> None:
    with pytest.raises(StoreError, match="versions look like 20261122T045742Z-1f3a1006"):
        check_version(version)


# --- the folder only --------------------------------------------------------------------------


def test_a_file_copied_in_by_hand_is_served_and_kept(tmp_path: Path, shipped: Artifact) -> None:
    store = FolderModelStore(tmp_path / "models")
    mine = variant(shipped, accuracy=0.5)
    artifacts.save(mine, store.active_path("shirt"))
    assert store.names() == ["shirt"]
    assert store.load_active("shirt").version == mine.version
    assert store.versions("shirt") == [mine.version]


def test_a_file_holding_another_version_than_its_name_is_refused(
    tmp_path: Path, shipped: Artifact
) -> None:
    store = FolderModelStore(tmp_path / "models")
    other = "20200101T000000Z-00000000"
    artifacts.save(shipped, store.version_path("softmax", other))
    with pytest.raises(ArtifactError, match=f"holds version '{shipped.version}', not '{other}'"):
        store.load_version("softmax", other)


def test_problem_names_a_missing_or_empty_folder_with_the_fix(tmp_path: Path) -> None:
    missing = FolderModelStore(tmp_path / "nowhere")
    assert f"the model folder {tmp_path / 'nowhere'} does not exist" in (missing.problem() or "")
    assert "SOFTSERVE_MODEL_DIR" in (missing.problem() or "")
    assert not (tmp_path / "nowhere").exists()  # asking creates nothing
    (tmp_path / "empty").mkdir()
    empty = FolderModelStore(tmp_path / "empty")
    assert "holds no <name>.npz artifacts" in (empty.problem() or "")


def test_tidy_removes_only_stale_temp_files(tmp_path: Path) -> None:
    store = FolderModelStore(tmp_path)
    (tmp_path / "softmax").mkdir()
    stale = tmp_path / "softmax" / ".x.npz.abc.tmp"
    fresh = tmp_path / ".softmax.npz.def.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half")
    old = stale.stat().st_mtime - STALE_TMP_SECONDS - 10
    os.utime(stale, (old, old))
    assert store.tidy() == [str(stale)]
    assert fresh.exists() and not stale.exists()


def test_a_model_of_other_classes_is_promoted_only_by_force() -> None:
    """A binary model of Sandal vs the rest is more accurate than one of Shirt vs the rest, but
    it answers another question: it must not silently take its place."""
    shirt = artifacts.load(SHIPPED / "binary.npz")
    meta = shirt.meta | {
        "version": artifacts.new_version(),
        "class_names": ["not Sandal", "Sandal"],
    }
    meta["metrics"] = {**meta["metrics"], "test": {"accuracy": 0.99, "loss": 0.05}}
    sandal = Artifact(shirt.weights, shirt.bias, meta)
    decision = decide_promotion(shirt, sandal, force=False)
    assert not decision.promoted
    assert "answers ['not Shirt', 'Shirt'], this one ['not Sandal', 'Sandal']" in decision.reason
    assert decide_promotion(shirt, sandal, force=True).promoted


# --- PostgreSQL only --------------------------------------------------------------------------


def test_a_promotion_and_an_activation_are_each_notified(
    postgres: Postgres, shipped: Artifact
) -> None:
    postgres.empty()
    database = PostgresModelStore(postgres.url)
    try:
        database.seed_from(SHIPPED)
        with psycopg.connect(postgres.url, autocommit=True) as listener:
            listener.execute(f"LISTEN {CHANNEL}")
            better = variant(shipped, accuracy=0.99)
            assert database.promote("softmax", better).promoted
            database.promote("softmax", variant(shipped, accuracy=0.1))  # kept, not promoted
            database.activate("softmax", shipped.version)
            heard = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
        assert heard == ["softmax", "softmax"]
        assert "softserve-test-password" not in database.location
    finally:
        database.close()


def test_a_damaged_version_in_the_database_is_refused_without_server_paths(
    postgres: Postgres, shipped: Artifact
) -> None:
    database = PostgresModelStore(postgres.url)
    try:
        database.seed_from(SHIPPED)
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE softserve_model_versions SET npz = %s WHERE name = 'softmax'", (b"junk",)
            )
        with pytest.raises(ArtifactError) as caught:
            database.load_active("softmax")
        assert str(caught.value).startswith(f"softmax {shipped.version} in the database: ")
        assert "/tmp" not in str(caught.value)
    finally:
        database.close()
