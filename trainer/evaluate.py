"""Measure a saved artifact on a dataset's test split, from the file alone."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from trainer.artifacts import Artifact
from trainer.config import ConfigError
from trainer.data import Dataset
from trainer.linear import logits, pixels_to_features, predict_labels
from trainer.metrics import evaluate
from trainer.tasks import Task, resolve_classes

__all__ = ["confusion_matrix", "evaluate_artifact", "expected_output"]


def _test_split(
    artifact: Artifact, dataset: Dataset
) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    """The test split as ``artifact`` sees it: its scores, and its targets (binary: 0/1).

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
    return scores, np.asarray(targets, dtype=np.intp)


def expected_output(artifact: Artifact, class_names: tuple[str, ...], label: int) -> int | None:
    """The output ``artifact`` should give an image of dataset class ``label`` (one of
    ``class_names``): the class itself for softmax; for binary 1 for a positive class, 0 for a
    negative one. None where the model has no answer for that class."""
    if tuple(artifact.dataset_class_names) != tuple(class_names):
        return None
    if artifact.kind != "binary":
        return label
    if label in resolve_classes(artifact.positive_classes, class_names):
        return 1
    if label in resolve_classes(artifact.negative_classes, class_names):
        return 0
    return None


def evaluate_artifact(artifact: Artifact, dataset: Dataset) -> dict[str, float]:
    """Test-set loss and accuracy (binary: and ROC AUC, precision, recall, F1) of ``artifact``."""
    scores, targets = _test_split(artifact, dataset)
    return evaluate(artifact.kind, scores, targets)


def confusion_matrix(artifact: Artifact, dataset: Dataset) -> NDArray[np.int64]:
    """(K, K) test-set counts: row = true class, column = predicted class (binary: K = 2)."""
    scores, targets = _test_split(artifact, dataset)
    k = len(artifact.class_names)
    predicted = predict_labels(artifact.kind, scores)
    counts = np.bincount(targets * k + predicted, minlength=k * k)
    return np.asarray(counts.reshape(k, k), dtype=np.int64)
