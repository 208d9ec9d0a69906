"""How far the probabilities can be trusted: the expected calibration error, and temperature
scaling (Guo et al., 2017) fitted on held-out scores.

A temperature T divides every logit; T > 1 softens overconfident probabilities. It is fitted on the
selection run's validation scores (rows the selection weights were not fitted on) and folded into
the weights and bias (``W / T``, ``b / T``), so an artifact's formula stays
``logits = (pixels / 255) @ weights + bias``. The negative log-likelihood of ``Z * beta`` is convex
in ``beta = 1 / T``, so a golden-section search finds its minimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trainer.linear import Kind, data_loss, predict_labels, probabilities

__all__ = ["ECE_BINS", "Calibration", "expected_calibration_error", "fit_temperature"]

ECE_BINS = 15
# 1 / T, searched over temperatures from 0.25 to 10: beyond them a fit says more about a few
# thousand held-out rows (a separable set drives T towards 0) than about the model.
_BETA_RANGE = (0.1, 4.0)
_STEPS = 80  # golden-section steps: the bracket shrinks by 0.618 each, far below any use


def expected_calibration_error(
    kind: Kind, Z: NDArray[np.floating], y: NDArray[np.integer], bins: int = ECE_BINS
) -> float:
    """The gap between confidence and accuracy, weighted over ``bins`` equal-width bins of the
    confidence in the predicted class (binary: max(p, 1 - p))."""
    proba = probabilities(kind, np.asarray(Z, dtype=np.float64))
    confidence = np.maximum(proba, 1 - proba) if kind == "binary" else proba.max(axis=1)
    correct = predict_labels(kind, Z) == y
    if not len(y):
        return 0.0
    which = np.minimum((confidence * bins).astype(np.intp), bins - 1)
    gap = np.abs(
        np.bincount(which, weights=correct, minlength=bins)
        - np.bincount(which, weights=confidence, minlength=bins)
    )
    return float(gap.sum() / len(y))


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did to the held-out NLL of ``n`` rows."""

    temperature: float
    nll_before: float
    nll_after: float
    n: int

    @property
    def applied(self) -> bool:
        """Folded into the weights only when it lowers the held-out NLL."""
        return self.nll_after < self.nll_before

    def to_meta(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature if self.applied else 1.0,
            "fitted_temperature": self.temperature,
            "applied": self.applied,
            "fitted_on": "validation",
            "n": self.n,
            "validation_nll_before": self.nll_before,
            "validation_nll_after": min(self.nll_after, self.nll_before),
        }


def fit_temperature(kind: Kind, Z: NDArray[np.floating], y: NDArray[np.integer]) -> Calibration:
    """The temperature that minimises the mean NLL of ``Z / T`` against ``y``."""
    scores = np.asarray(Z, dtype=np.float64)

    def nll(beta: float) -> float:
        return data_loss(kind, scores * beta, y)

    low, high = (math.log(b) for b in _BETA_RANGE)  # searched on log beta: scale-free steps
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(math.exp(a)), nll(math.exp(b))
    for _ in range(_STEPS):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(math.exp(b))
    beta = math.exp((low + high) / 2)
    return Calibration(1.0 / beta, nll(1.0), nll(beta), len(y))
