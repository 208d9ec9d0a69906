"""One training run from a dataset to an artifact: the pipeline the CLI and the service share."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable

import numpy as np

from trainer.artifacts import Artifact, make_artifact
from trainer.config import TrainConfig
from trainer.data import Dataset
from trainer.fit import FitResult, Progress, fit
from trainer.tasks import make_task

__all__ = ["train_model"]


def train_model(
    config: TrainConfig,
    dataset: Dataset,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Artifact, FitResult]:
    """Fit ``config`` on ``dataset`` and describe the result as an artifact (not yet saved).

    Raises ``ConfigError`` for classes the dataset does not have, ``fit.Cancelled`` when
    ``should_stop`` returns true between batches.
    """
    task = make_task(config, dataset.class_names)
    images, targets = task.apply(dataset.train_images, dataset.train_labels)
    test = task.apply(dataset.test_images, dataset.test_labels)
    result = fit(
        config, images, targets, test,
        n_outputs=task.n_outputs, progress=progress, should_stop=should_stop,
    )  # fmt: skip
    binary = None
    if task.binary:
        names = dataset.class_names
        binary = {
            "positive_classes": [names[i] for i in task.positive],
            "negative_classes": [names[i] for i in task.negative],
            "dataset_class_names": list(names),
        }
    training = {
        **config.to_dict(),
        "best_epoch": result.best_epoch,
        "n_train": result.n_train,
        "n_validation": result.n_validation,
        "n_test": len(test[1]),
    }
    artifact = make_artifact(
        kind=config.model,
        weights=result.weights,
        bias=result.bias,
        class_names=task.output_names,
        dataset=dataset.identity(),
        training=training,
        metrics=result.metrics,
        history=[record.to_dict() for record in result.history],
        training_seconds=result.seconds,
        binary=binary,
        extra={
            "environment": _environment(),
            **({"calibration": result.calibration.to_meta()} if result.calibration else {}),
            **({"ood": result.ood.to_meta()} if result.ood else {}),
        },
    )
    return artifact, result


def _environment() -> dict[str, str]:
    """What made the weights, for anyone reproducing them: same seed, data and these give the
    same bits (BLAS kernels are chosen per CPU, so the machine matters too)."""
    try:
        softserve = importlib.metadata.version("softserve")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        softserve = "unknown"
    return {
        "softserve": softserve,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
