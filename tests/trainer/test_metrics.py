"""trainer.metrics: ROC AUC against a brute-force pair count, threshold metrics by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from trainer.linear import Kind, accuracy, data_loss
from trainer.metrics import binary_metrics, evaluate, roc_auc


def _pairwise_auc(y: NDArray[np.intp], score: NDArray[np.float64]) -> float:
    """Every (positive, negative) pair: 1 if the positive scores higher, 1/2 for a tie."""
    pos, neg = score[y == 1], score[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_equals_the_pairwise_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    y = rng.integers(0, 2, size=n).astype(np.intp)
    y[:2] = [0, 1]  # both classes present
    # few distinct values, so many ties within and across classes
    score = rng.integers(0, 6, size=n).astype(np.float64) + 0.5 * y * rng.random(n)
    assert roc_auc(y, score) == pytest.approx(_pairwise_auc(y, score), abs=1e-12)


def test_roc_auc_on_continuous_scores() -> None:
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, size=300).astype(np.intp)
    score = rng.normal(size=300) + y
    assert roc_auc(y, score) == pytest.approx(_pairwise_auc(y, score), abs=1e-12)


def test_roc_auc_perfect_inverted_and_tied() -> None:
    y = np.array([0, 1, 0, 1, 1, 0], dtype=np.intp)
    score = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.3])
    assert roc_auc(y, score) == 1.0
    assert roc_auc(y, -score) == 0.0
    assert roc_auc(y, np.zeros(6)) == 0.5


@pytest.mark.parametrize("label", [0, 1])
def test_roc_auc_is_nan_with_one_class(label: int) -> None:
    y = np.full(5, label, dtype=np.intp)
    assert math.isnan(roc_auc(y, np.linspace(0, 1, 5)))


def test_binary_metrics_on_a_hand_made_confusion() -> None:
    # tp = 3, fp = 1, fn = 2, tn = 4; a logit of exactly 0 (probability 0.5) predicts negative
    y = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], dtype=np.intp)
    Z = np.array([[2.0], [1.0], [0.5], [0.3], [0.0], [-1.0], [-0.2], [-2.0], [-3.0], [-4.0]])
    got = binary_metrics(y, Z)
    assert got["precision"] == pytest.approx(3 / 4)
    assert got["recall"] == pytest.approx(3 / 5)
    assert got["f1"] == pytest.approx(2 * 0.75 * 0.6 / (0.75 + 0.6))
    assert got["roc_auc"] == pytest.approx(_pairwise_auc(y, Z[:, 0]))


def test_binary_metrics_report_undefined_ratios_as_zero() -> None:
    y = np.array([1, 0, 1], dtype=np.intp)
    got = binary_metrics(y, np.full((3, 1), -1.0))  # nothing predicted positive
    assert (got["precision"], got["recall"], got["f1"]) == (0.0, 0.0, 0.0)
    assert got["roc_auc"] == 0.5


@pytest.mark.parametrize(
    ("kind", "keys"),
    [
        ("softmax", {"loss", "accuracy", "ece"}),
        ("binary", {"loss", "accuracy", "ece", "roc_auc", "precision", "recall", "f1"}),
    ],
)
def test_evaluate_keys_per_kind(kind: Kind, keys: set[str]) -> None:
    rng = np.random.default_rng(11)
    k = 3 if kind == "softmax" else 1
    Z = rng.normal(size=(20, k))
    y = rng.integers(0, max(k, 2), size=20).astype(np.intp)
    y[:2] = [0, 1]
    got = evaluate(kind, Z, y)
    assert set(got) == keys
    assert got["loss"] == data_loss(kind, Z, y)
    assert got["accuracy"] == accuracy(kind, Z, y)
    assert all(isinstance(v, float) for v in got.values())
