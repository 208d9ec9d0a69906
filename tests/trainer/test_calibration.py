"""Calibration: the expected calibration error against a by-hand count, and the temperature, fitted
on the validation split, that never raises its NLL and is folded into the weights."""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainer.test_fit import _run
from trainer.calibration import ECE_BINS, expected_calibration_error, fit_temperature
from trainer.linear import Kind, data_loss, logits, pixels_to_features
from trainer.metrics import evaluate


def test_ece_by_hand() -> None:
    # Four rows of confidence 0.9 (bin 13: 0.8667..0.9333), three right: |0.75 - 0.9| = 0.15;
    # two rows of confidence 0.6 (bin 9), both right: |1.0 - 0.6| = 0.4. Weighted by count.
    p9, p6 = np.log(9.0), np.log(1.5)  # binary logits with sigmoid 0.9 and 0.6
    Z = np.array([[p9], [p9], [p9], [p9], [p6], [p6]])
    y = np.array([1, 1, 1, 0, 1, 1])
    assert expected_calibration_error("binary", Z, y) == pytest.approx((4 * 0.15 + 2 * 0.4) / 6)
    softmax = np.log(np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05]]))
    assert expected_calibration_error("softmax", softmax, np.array([0, 1])) == pytest.approx(0.4)


def test_perfectly_calibrated_scores_have_a_small_ece() -> None:
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(200_000, 4)) * 2
    p = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    y = (rng.random((len(Z), 1)) > p.cumsum(axis=1)).sum(axis=1)  # drawn from p itself
    assert expected_calibration_error("softmax", Z, y, ECE_BINS) < 0.01


@pytest.mark.parametrize("kind", ["softmax", "binary"])
@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 3.0])
def test_the_fitted_temperature_recovers_a_known_one(kind: Kind, true_temperature: float) -> None:
    """Labels drawn from softmax(Z / T): the fit finds T, and lowers the NLL against Z as given."""
    rng = np.random.default_rng(7)
    k = 5 if kind == "softmax" else 1
    Z = rng.normal(size=(40_000, k)) * 2
    if kind == "softmax":
        p = np.exp(Z / true_temperature)
        p /= p.sum(axis=1, keepdims=True)
        y = (rng.random((len(Z), 1)) > p.cumsum(axis=1)).sum(axis=1)
    else:
        y = (rng.random(len(Z)) < 1 / (1 + np.exp(-Z[:, 0] / true_temperature))).astype(int)
    fitted = fit_temperature(kind, Z, y)
    assert fitted.temperature == pytest.approx(true_temperature, rel=0.05)
    assert fitted.nll_after <= fitted.nll_before
    assert fitted.nll_after == pytest.approx(data_loss(kind, Z / fitted.temperature, y))


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_training_folds_the_temperature_and_never_raises_validation_nll(kind: Kind) -> None:
    plain = _run(kind, calibrate=False, refit=False)
    calibrated = _run(kind, calibrate=True, refit=False)
    cal = calibrated.calibration
    assert cal is not None and plain.calibration is None
    assert cal.nll_after <= cal.nll_before  # on the validation split, by construction and here
    meta = cal.to_meta()
    assert meta["fitted_on"] == "validation" and meta["n"] == calibrated.n_validation
    if cal.applied:
        np.testing.assert_allclose(
            calibrated.weights, plain.weights / cal.temperature, rtol=1e-5, atol=1e-7
        )
        assert meta["temperature"] == cal.temperature
    else:
        np.testing.assert_array_equal(calibrated.weights, plain.weights)
        assert meta["temperature"] == 1.0
    # the figures reported are the calibrated model's, ece among them
    assert set(calibrated.metrics["test"]) >= {"loss", "accuracy", "ece"}
    assert calibrated.metrics["test"]["accuracy"] == plain.metrics["test"]["accuracy"]


def test_the_metrics_are_the_saved_weights_figures() -> None:
    from tests.trainer.test_fit import _data

    result = _run("softmax", calibrate=True)
    _, _, (test_images, test_y) = _data("softmax")
    scores = logits(result.weights, result.bias, pixels_to_features(test_images))
    for name, value in evaluate("softmax", scores, test_y).items():
        assert result.metrics["test"][name] == pytest.approx(value, abs=1e-5), name
