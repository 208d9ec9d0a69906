"""Short runs on the real Fashion-MNIST: the trainer learns it, and the artifact says what it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.artifacts import load, save
from trainer.config import TrainConfig
from trainer.data import FASHION_MNIST_CLASSES, FASHION_MNIST_SHA256, load_dataset
from trainer.evaluate import evaluate_artifact
from trainer.train import train_model

pytestmark = pytest.mark.slow


def test_softmax_learns_fashion_mnist_in_three_epochs(real_data_dir: Path, tmp_path: Path) -> None:
    dataset = load_dataset(real_data_dir)
    assert dataset.name == "fashion-mnist"
    config = TrainConfig(epochs=3)
    artifact, result = train_model(config, dataset)
    assert result.metrics["test"]["accuracy"] >= 0.82
    assert result.n_train == (60000 if config.refit else 60000 - result.n_validation)

    loaded = load(save(artifact, tmp_path / "softmax.npz"))
    assert loaded.weights.tobytes() == artifact.weights.tobytes()
    assert loaded.bias.tobytes() == artifact.bias.tobytes()
    assert dict(loaded.meta) == dict(artifact.meta)
    assert loaded.meta["dataset"]["name"] == "fashion-mnist"
    assert loaded.meta["dataset"]["sha256"] == FASHION_MNIST_SHA256
    assert loaded.class_names == FASHION_MNIST_CLASSES
    assert loaded.meta["training"]["n_test"] == 10000
    # the file alone reproduces the reported test figures
    measured = evaluate_artifact(loaded, dataset)
    assert measured["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"], abs=2e-4)
    assert measured["loss"] == pytest.approx(result.metrics["test"]["loss"], rel=1e-3)


def test_binary_shirt_detector_ranks_well_in_two_epochs(real_data_dir: Path) -> None:
    dataset = load_dataset(real_data_dir)
    config = TrainConfig(model="binary", epochs=2, positive=("Shirt",), negative=())
    artifact, result = train_model(config, dataset)
    assert result.metrics["test"]["roc_auc"] >= 0.85
    assert artifact.class_names == ("not Shirt", "Shirt")
    assert artifact.meta["binary"]["positive_classes"] == ["Shirt"]
    assert artifact.meta["dataset"]["name"] == "fashion-mnist"
