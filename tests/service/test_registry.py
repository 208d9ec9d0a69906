"""The registry: what it loads from a model store, what it refuses, kept versions on demand,
catching up with a promotion, and readiness."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import InvalidInput, NotFound, ServiceUnavailable
from service.modelstore.folder import FolderModelStore
from service.registry import KEPT_CACHE_SIZE, Registry
from tests.support.server import SHIPPED, copy_shipped_models
from trainer import artifacts
from trainer.artifacts import Artifact


@pytest.fixture
def store(tmp_path: Path) -> FolderModelStore:
    return FolderModelStore(copy_shipped_models(tmp_path / "models"))


@pytest.fixture
def registry(store: FolderModelStore) -> Registry:
    registry = Registry(store, ("softmax", "binary"))
    assert registry.refresh() == ["binary", "softmax"]
    return registry


def newer(store: FolderModelStore, accuracy: float = 0.99) -> Artifact:
    """A new version of the shipped softmax model, kept in the store (not active)."""
    base = artifacts.load(SHIPPED / "softmax.npz")
    meta = base.meta | {"version": artifacts.new_version()}
    meta["metrics"] = {**meta["metrics"], "test": {"accuracy": accuracy, "loss": 0.3}}
    artifact = Artifact(base.weights, base.bias, meta)
    store.add_version("softmax", artifact)
    return artifact


def test_it_serves_what_the_store_holds(registry: Registry) -> None:
    shipped = artifacts.load(SHIPPED / "softmax.npz")
    served = registry.get("softmax")
    assert (served.name, served.version, served.kind) == ("softmax", shipped.version, "softmax")
    assert (served.weights == shipped.weights).all()
    assert served.class_names == shipped.class_names
    assert registry.not_ready() == registry.not_loaded() == {}
    assert registry.refresh() == []  # nothing changed: nothing is read again


def test_unknown_and_malformed_names_are_404(registry: Registry) -> None:
    with pytest.raises(NotFound, match="unknown model 'nope'; loaded models: binary, softmax"):
        registry.get("nope")
    with pytest.raises(NotFound, match="invalid model name"):
        registry.get("../softmax")


def test_a_promotion_is_served_at_the_next_refresh(
    registry: Registry, store: FolderModelStore
) -> None:
    version = newer(store)
    store.promote("softmax", version)
    assert registry.get("softmax").version != version.version
    assert registry.refresh() == ["softmax"]
    assert registry.get("softmax").version == version.version


def test_catch_up_loads_a_just_promoted_version_and_nothing_otherwise(
    registry: Registry, store: FolderModelStore
) -> None:
    version = newer(store)
    store.promote("softmax", version)
    registry.catch_up("softmax", version.version)
    assert registry.get("softmax").version == version.version
    before = registry.get("softmax")
    registry.catch_up("softmax", version.version)  # already served: no reload
    assert registry.get("softmax") is before


def test_a_bad_file_is_refused_and_the_last_good_version_kept(
    registry: Registry, store: FolderModelStore
) -> None:
    good = registry.get("softmax").version
    store.active_path("softmax").write_bytes(b"not an artifact")
    registry.refresh()
    assert registry.get("softmax").version == good
    problem = registry.problems["softmax"]
    assert problem.startswith("softmax.npz was rejected: ")
    assert problem.endswith(f"; still serving version {good}")
    assert str(store.root) not in problem  # no server paths in what clients see


def test_a_removed_model_is_no_longer_served_and_not_ready(
    registry: Registry, store: FolderModelStore
) -> None:
    store.active_path("binary").unlink()
    assert registry.refresh() == ["binary"]
    with pytest.raises(
        ServiceUnavailable, match=r"'binary' is not loaded: binary\.npz was removed"
    ):
        registry.get("binary")  # a required model: the service is not ready, not the caller wrong
    assert registry.not_ready() == {"binary": "binary.npz was removed from the model store"}
    assert registry.not_loaded() == registry.not_ready()


def test_a_model_that_is_not_required_is_simply_unknown_once_removed(
    store: FolderModelStore,
) -> None:
    registry = Registry(store, ("softmax",))
    registry.refresh()
    store.active_path("binary").unlink()
    registry.refresh()
    with pytest.raises(NotFound, match=r"unknown model 'binary' \(binary\.npz was removed"):
        registry.get("binary")
    assert registry.not_ready() == {}
    assert registry.not_loaded() == {"binary": "binary.npz was removed from the model store"}


def test_a_required_model_never_seen_is_not_ready_with_the_reason(store: FolderModelStore) -> None:
    registry = Registry(store, ("softmax", "shirt"))
    registry.refresh()
    assert registry.not_ready() == {"shirt": f"no shirt.npz in {store.root}"}
    with pytest.raises(ServiceUnavailable, match=r"'shirt' is not loaded: no shirt\.npz"):
        registry.get("shirt")


def test_kept_versions_load_on_demand_and_stay_in_a_bounded_cache(
    registry: Registry, store: FolderModelStore
) -> None:
    kept = [newer(store, accuracy=0.5 + i / 100) for i in range(KEPT_CACHE_SIZE + 1)]
    assert registry.in_memory("softmax", kept[0].version) is None
    first = registry.load_version("softmax", kept[0].version)
    assert first.version == kept[0].version and first.stamp is None
    assert registry.in_memory("softmax", kept[0].version) is first
    assert registry.get("softmax").version != kept[0].version  # the active one is unchanged
    for artifact in kept[1:]:
        registry.load_version("softmax", artifact.version)
    assert registry.in_memory("softmax", kept[0].version) is None  # the oldest was evicted
    assert registry.in_memory("softmax", kept[-1].version) is not None
    active = registry.get("softmax")
    assert registry.in_memory("softmax", active.version) is active


@pytest.mark.parametrize(
    ("name", "version", "error", "code", "message"),
    [
        ("softmax", "nope", InvalidInput, "invalid_version", "invalid version 'nope'"),
        ("softmax", "20200101T000000Z-00000000", NotFound, "unknown_version", "has no version"),
        ("nope", "20200101T000000Z-00000000", NotFound, "unknown_model", "unknown model 'nope'"),
    ],
)
def test_kept_version_errors_name_the_problem(
    registry: Registry,
    name: str,
    version: str,
    error: type[Exception],
    code: str,
    message: str,
) -> None:
    for attempt in (registry.load_version, registry.activate):
        with pytest.raises(error, match=message) as info:
            attempt(name, version)
        assert getattr(info.value, "code", None) == code


def test_activate_serves_the_version_at_once(registry: Registry, store: FolderModelStore) -> None:
    version = newer(store)
    served = registry.activate("softmax", version.version)
    assert served.version == version.version == registry.get("softmax").version
    assert store.load_active("softmax").version == version.version


def test_dataset_class_names_come_from_any_kind_of_model(registry: Registry) -> None:
    assert registry.dataset_class_names() == artifacts.load(SHIPPED / "softmax.npz").class_names
    del registry.models["softmax"]  # a binary model alone says the same
    assert registry.dataset_class_names() == artifacts.load(SHIPPED / "softmax.npz").class_names
    registry.models.clear()
    assert registry.dataset_class_names() is None
