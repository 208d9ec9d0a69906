"""Mini-batch training: a selection run on a validation split, then by default a refit on all rows.

The selection run trains on the training split for ``epochs`` and keeps the epoch whose validation
loss is lowest; the refit trains on training + validation rows for that many epochs, as
scikit-learn's ``GridSearchCV(refit=True)`` does. The test set is only ever reported on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from trainer.calibration import Calibration, fit_temperature
from trainer.config import TrainConfig
from trainer.errors import TrainerError, TrainingError
from trainer.linear import fold_standardization, logits, loss_and_grad, pixels_to_features
from trainer.metrics import evaluate
from trainer.ood import OodStats, fit_ood
from trainer.optim import Stepper, schedule_factor

__all__ = [
    "Cancelled",
    "EpochRecord",
    "FitResult",
    "Progress",
    "fit",
    "split_validation",
]

Phase = Literal["select", "refit"]
F32 = NDArray[np.float32]
Targets = NDArray[np.intp]

# Added to each pixel's standard deviation before dividing, so near-constant border pixels are
# not blown up into noise (in 0..1 units; 0.05 is about 13 grey levels).
STD_FLOOR = 0.05


class Cancelled(TrainerError):
    """Raised between batches when the caller's ``should_stop`` returns true."""


@dataclass(frozen=True)
class EpochRecord:
    """One epoch. Train figures are means over its batches (as Keras reports them); validation and
    test figures are exact, on the weights at the epoch's end."""

    phase: Phase
    epoch: int
    epochs: int
    learning_rate: float  # at the epoch's last step
    train_loss: float
    train_accuracy: float
    validation_loss: float | None
    validation_accuracy: float | None
    test_loss: float | None
    test_accuracy: float | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """Sent after every batch; ``record`` is set on an epoch's last batch."""

    phase: Phase
    epoch: int
    epochs: int
    batch: int
    batches: int
    record: EpochRecord | None = None


@dataclass(frozen=True)
class FitResult:
    """Weights on features ``pixels / 255`` (standardisation folded in), history and metrics."""

    weights: F32  # (784, K)
    bias: F32  # (K,)
    history: tuple[EpochRecord, ...]
    metrics: dict[str, dict[str, float]]  # "train", "validation" (if any), "test" (if given)
    best_epoch: int
    n_train: int  # rows the final weights were fit on
    n_validation: int
    seconds: float
    calibration: Calibration | None = None  # fitted on the validation split, if there was one
    ood: OodStats | None = (
        None  # fitted on the selection run's rows, if there was a validation split
    )


def split_validation(
    y: Targets, fraction: float, rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Stratified split of row indices into (train, validation); each class gives ``fraction``."""
    val: list[NDArray[np.intp]] = []
    for cls in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == cls))
        val.append(rows[: round(fraction * len(rows))])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.intp)
    mask = np.ones(len(y), dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


def fit(
    config: TrainConfig,
    images: NDArray[np.uint8],
    targets: Targets,
    test: tuple[NDArray[np.uint8], Targets] | None = None,
    *,
    n_outputs: int,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitResult:
    """Train ``config.model`` on (N, 784) uint8 images with targets in 0..n_outputs-1 (binary: 0/1,
    n_outputs = 1). Deterministic for a given seed and data."""
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    train_idx, val_idx = split_validation(targets, config.validation_fraction, rng)
    X, mean, scale = _standardized(images, train_idx, config.standardize)
    evals: dict[str, tuple[F32, Targets]] = {}
    if len(val_idx):
        evals["validation"] = (X[val_idx], targets[val_idx])
    if test is not None:
        X_test = pixels_to_features(test[0])
        X_test -= mean
        X_test /= scale
        evals["test"] = (X_test, test[1])

    shift = (mean / scale).astype(np.float32)  # where standardisation moves the zero pixel
    run = _Run(config, X, targets, evals, shift, n_outputs, rng, progress, should_stop)
    W, b, history, best = run.train("select", train_idx, config.epochs, keep_best=len(val_idx) > 0)
    calibration = None
    # Both before the refit fits on the validation rows too.
    ood = None
    if len(val_idx):
        ood = fit_ood(
            images[train_idx], images[val_idx],
            labels=targets[train_idx], n_classes=max(n_outputs, 2),
        )  # fmt: skip
    if len(val_idx) and config.calibrate:
        X_val, y_val = run.evals["validation"]
        calibration = fit_temperature(config.model, logits(W, b, X_val), y_val)
    fit_rows = train_idx
    if config.refit and len(val_idx):
        fit_rows = np.arange(len(targets))
        # validation rows are training rows now: report only the test set from here on
        run.evals.pop("validation")
        W, b, refit_history, _ = run.train("refit", fit_rows, best, keep_best=False)
        history += refit_history

    if calibration is not None and calibration.applied:
        W = (W / np.float32(calibration.temperature)).astype(np.float32)
        b = (b / np.float32(calibration.temperature)).astype(np.float32)
    # scores of every row are small (N, K); gathering the rows of X first would copy all of X
    train_scores = logits(W, b, X)[fit_rows]
    metrics = {"train": evaluate(config.model, train_scores, targets[fit_rows])}
    if run.best_validation:
        metrics["validation"] = dict(run.best_validation)
    if test is not None:
        metrics["test"] = evaluate(config.model, logits(W, b, evals["test"][0]), evals["test"][1])
    weights, bias = fold_standardization(W, b, mean, scale)
    return FitResult(
        weights, bias, tuple(history), metrics, best, len(fit_rows), len(val_idx),
        time.perf_counter() - started, calibration, ood,
    )  # fmt: skip


def _standardized(
    images: NDArray[np.uint8], rows: NDArray[np.intp], standardize: bool
) -> tuple[F32, F32, F32]:
    """(N, 784) features ``(pixels / 255 - mean) / scale`` with the mean and scale of ``rows``,
    and that mean and scale. Built in place in one float32 array: on a small machine every
    temporary of this size costs more in page faults than the arithmetic."""
    X = pixels_to_features(images)
    n_features = X.shape[1]
    if not standardize:
        return X, np.zeros(n_features, np.float32), np.ones(n_features, np.float32)
    weight = np.zeros(len(X), dtype=np.float32)
    weight[rows] = 1.0 / len(rows)
    total, square = np.zeros(n_features), np.zeros(n_features)
    chunk = np.empty((4096, n_features), dtype=np.float32)
    for start in range(0, len(X), len(chunk)):
        part = X[start : start + len(chunk)]
        buf = chunk[: len(part)]
        np.multiply(part, part, out=buf)
        total += weight[start : start + len(part)] @ part
        square += weight[start : start + len(part)] @ buf
    mean = total.astype(np.float32)
    scale = (np.sqrt(np.maximum(square - total * total, 0.0)) + STD_FLOOR).astype(np.float32)
    X -= mean
    X /= scale
    return X, mean, scale


def _diverged(phase: Phase, epoch: int, batch: int, what: str) -> TrainingError:
    return TrainingError(
        f"training diverged in {phase} epoch {epoch}, batch {batch + 1} ({what}): "
        "lower the learning rate or the L2 penalty"
    )


class _Run:
    """The state shared by the selection run and the refit: data, evaluation sets, callbacks."""

    def __init__(
        self,
        config: TrainConfig,
        X: F32,
        y: Targets,
        evals: dict[str, tuple[F32, Targets]],
        shift: F32,
        n_outputs: int,
        rng: np.random.Generator,
        progress: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.config, self.X, self.y, self.evals, self.shift = config, X, y, evals, shift
        self.n_outputs, self.rng = n_outputs, rng
        self.progress, self.should_stop = progress, should_stop
        self.best_validation: dict[str, float] = {}

    def train(
        self, phase: Phase, rows: NDArray[np.intp], epochs: int, *, keep_best: bool
    ) -> tuple[F32, F32, list[EpochRecord], int]:
        """Train from zeros on ``rows``; returns weights (best by validation loss when
        ``keep_best``, else the last), the history and the chosen epoch."""
        cfg, kind = self.config, self.config.model
        W = np.zeros((self.X.shape[1], self.n_outputs), dtype=np.float32)
        b = np.zeros(self.n_outputs, dtype=np.float32)
        stepper = Stepper(cfg.optimizer, [W, b], cfg.momentum)
        bs = cfg.batch_size
        batches = -(-len(rows) // bs)
        total_steps = epochs * batches
        history: list[EpochRecord] = []
        best: tuple[float, int, F32, F32] | None = None
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            order = self.rng.permutation(rows)
            loss_sum = correct = 0.0
            lr = cfg.learning_rate
            for batch in range(batches):
                if self.should_stop is not None and self.should_stop():
                    raise Cancelled(f"cancelled in {phase} epoch {epoch}, batch {batch + 1}")
                idx = order[batch * bs : (batch + 1) * bs]
                contrast = None
                if cfg.contrast:
                    factors = self.rng.random(len(idx), dtype=np.float32)  # U(1 - c, 1 + c)
                    factors *= np.float32(2 * cfg.contrast)
                    factors += np.float32(1 - cfg.contrast)
                    contrast = (factors, self.shift)
                try:
                    with np.errstate(over="raise", invalid="raise", divide="raise"):
                        step = loss_and_grad(kind, W, b, self.X[idx], self.y[idx], cfg.l2, contrast)
                except FloatingPointError as exc:
                    raise _diverged(phase, epoch, batch, f"{exc}") from None
                if not math.isfinite(step.loss):
                    raise _diverged(phase, epoch, batch, f"the loss is {step.loss}")
                lr = cfg.learning_rate * schedule_factor(
                    cfg.schedule, ((epoch - 1) * batches + batch) / total_steps
                )
                stepper.step([step.gW, step.gb], lr)
                loss_sum += step.data_loss * len(idx)
                correct += step.n_correct
                if self.progress is not None and batch + 1 < batches:
                    self.progress(Progress(phase, epoch, epochs, batch + 1, batches))
            scores = {
                name: evaluate(kind, logits(W, b, Xe), ye) for name, (Xe, ye) in self.evals.items()
            }
            val, test = scores.get("validation", {}), scores.get("test", {})
            record = EpochRecord(
                phase, epoch, epochs, lr, loss_sum / len(rows), correct / len(rows),
                val.get("loss"), val.get("accuracy"), test.get("loss"), test.get("accuracy"),
                time.perf_counter() - t0,
            )  # fmt: skip
            history.append(record)
            if keep_best and val and (best is None or val["loss"] < best[0]):
                best = (val["loss"], epoch, W.copy(), b.copy())
                self.best_validation = {**val, "epoch": epoch}
            if self.progress is not None:
                self.progress(Progress(phase, epoch, epochs, batches, batches, record))
        if best is not None:
            return best[2], best[3], history, best[1]
        return W, b, history, epochs
