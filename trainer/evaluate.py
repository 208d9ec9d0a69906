"""Measure a saved artifact on a dataset's test split, from the file alone."""

from __future__ import annotations

from trainer.artifacts import Artifact
from trainer.config import ConfigError
from trainer.data import Dataset
from trainer.linear import logits, pixels_to_features
from trainer.metrics import evaluate
from trainer.tasks import Task, resolve_classes

__all__ = ["evaluate_artifact"]


def evaluate_artifact(artifact: Artifact, dataset: Dataset) -> dict[str, float]:
    """Test-set loss and accuracy (binary: and ROC AUC, precision, recall, F1) of ``artifact``.

    Raises ``ConfigError`` when the dataset's classes are not the ones the artifact was trained on.
    """
    expected = artifact.dataset_class_names
    if artifact.kind == "binary":
        task = Task(
            output_names=artifact.class_names,
            positive=resolve_classes(artifact.positive_classes, dataset.class_names),
            negative=resolve_classes(artifact.negative_classes, dataset.class_names),
        )
    else:
        task = Task(output_names=artifact.class_names)
    if expected != dataset.class_names:
        raise ConfigError(
            f"the artifact was trained on classes {list(expected)}, "
            f"the dataset has {list(dataset.class_names)}"
        )
    images, targets = task.apply(dataset.test_images, dataset.test_labels)
    scores = logits(artifact.weights, artifact.bias, pixels_to_features(images))
    return evaluate(artifact.kind, scores, targets)
