"""Evaluation metrics in NumPy: loss and accuracy for every model, ranking and threshold metrics
for binary ones."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

from trainer.calibration import expected_calibration_error
from trainer.linear import Kind, accuracy, data_loss, predict_labels

__all__ = ["BINARY_METRICS", "SPLITS", "Split", "binary_metrics", "evaluate", "roc_auc"]

# Where figures are measured: the rows fitted on, the rows held out to choose the epoch, and the
# rows only ever reported on.
Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)
# What binary models report beside loss and accuracy (binary_metrics).
BINARY_METRICS = ("roc_auc", "precision", "recall", "f1")


def roc_auc(y: NDArray[np.integer], score: NDArray[np.floating]) -> float:
    """Area under the ROC curve: the chance that a random positive outranks a random negative,
    ties counting half (the Mann-Whitney U statistic with average ranks). NaN with one class only.
    """
    n_pos = int(np.count_nonzero(y == 1))
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    ranks = np.empty(len(score), dtype=np.float64)
    # average 1-based rank over each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(score)]
    averages = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(averages, ends - starts)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def binary_metrics(y: NDArray[np.integer], Z: NDArray[np.floating]) -> dict[str, float]:
    """ROC AUC, and precision, recall and F1 of the positive class at probability 0.5.
    An undefined ratio (nothing predicted positive, say) is reported as 0, as scikit-learn does."""
    predicted = predict_labels("binary", Z)
    tp = int(np.count_nonzero((predicted == 1) & (y == 1)))
    fp = int(np.count_nonzero((predicted == 1) & (y == 0)))
    fn = int(np.count_nonzero((predicted == 0) & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    values = (roc_auc(y, Z[:, 0]), precision, recall, f1)
    return dict(zip(BINARY_METRICS, values, strict=True))


def evaluate(kind: Kind, Z: NDArray[np.floating], y: NDArray[np.integer]) -> dict[str, float]:
    """Loss (the NLL: mean cross-entropy, the log-loss), accuracy and the expected calibration
    error (15 bins) of (N, K) scores; binary metrics too."""
    out = {
        "loss": data_loss(kind, Z, y),
        "accuracy": accuracy(kind, Z, y),
        "ece": expected_calibration_error(kind, Z, y),
    }
    if kind == "binary":
        out.update(binary_metrics(y, Z))
    return out
