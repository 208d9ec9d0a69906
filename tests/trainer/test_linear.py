"""trainer.linear: gradients against finite differences, huge logits, a toy problem that learns."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from numpy.typing import NDArray

from trainer.linear import (
    Kind,
    accuracy,
    data_loss,
    fold_standardization,
    log_softmax,
    logits,
    loss_and_grad,
    pixels_to_features,
    predict,
    predict_labels,
    predict_proba,
    sigmoid,
    softmax,
)

KINDS: tuple[Kind, ...] = ("softmax", "binary")
F64 = NDArray[np.float64]


def _outputs(kind: Kind) -> int:
    return 4 if kind == "softmax" else 1


def _problem(
    kind: Kind, seed: int = 0, n: int = 9, d: int = 5
) -> tuple[F64, F64, F64, NDArray[np.intp]]:
    """Random float64 weights, bias, features and targets for ``kind``."""
    rng = np.random.default_rng(seed)
    k = _outputs(kind)
    W = rng.normal(scale=0.5, size=(d, k))
    b = rng.normal(scale=0.5, size=k)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, max(k, 2), size=n).astype(np.intp)
    return W, b, X, y


# --- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize("l2", [0.0, 0.3], ids=["l2=0", "l2>0"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradient_matches_central_differences(kind: Kind, l2: float) -> None:
    W, b, X, y = _problem(kind)
    got = loss_and_grad(kind, W, b, X, y, l2)
    eps = 1e-6

    def loss_at(W_: F64, b_: F64) -> float:
        return loss_and_grad(kind, W_, b_, X, y, l2).loss

    num_gW = np.zeros_like(W)
    for index in np.ndindex(W.shape):
        up, down = W.copy(), W.copy()
        up[index] += eps
        down[index] -= eps
        num_gW[index] = (loss_at(up, b) - loss_at(down, b)) / (2 * eps)
    num_gb = np.zeros_like(b)
    for i in range(len(b)):
        up, down = b.copy(), b.copy()
        up[i] += eps
        down[i] -= eps
        num_gb[i] = (loss_at(W, up) - loss_at(W, down)) / (2 * eps)

    assert got.gW.shape == W.shape
    assert got.gb.shape == b.shape
    np.testing.assert_allclose(got.gW, num_gW, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(got.gb, num_gb, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("l2", [0.0, 0.3], ids=["l2=0", "l2>0"])
@pytest.mark.parametrize("kind", KINDS)
def test_loss_is_data_loss_plus_penalty_and_inputs_are_untouched(kind: Kind, l2: float) -> None:
    W, b, X, y = _problem(kind, seed=1)
    before = [a.copy() for a in (W, b, X, y)]
    got = loss_and_grad(kind, W, b, X, y, l2)
    expected_ce = data_loss(kind, logits(W, b, X), y)
    assert got.data_loss == pytest.approx(expected_ce, rel=1e-12)
    assert got.loss == pytest.approx(expected_ce + 0.5 * l2 * float(np.sum(W * W)), rel=1e-12)
    for original, now in zip(before, (W, b, X, y), strict=True):
        np.testing.assert_array_equal(now, original)


@pytest.mark.parametrize("tied", [False, True], ids=["random", "all-scores-tied"])
@pytest.mark.parametrize("kind", KINDS)
def test_n_correct_counts_predicted_labels(kind: Kind, tied: bool) -> None:
    """n_correct is the number of rows ``predict_labels`` gets right, ties included: at the
    all-zero start of training every softmax score ties and argmax predicts class 0."""
    W, b, X, y = _problem(kind, seed=2, n=40)
    if tied:
        W, b = np.zeros_like(W), np.zeros_like(b)
    expected = int(np.count_nonzero(predict_labels(kind, logits(W, b, X)) == y))
    assert loss_and_grad(kind, W, b, X, y, 0.0).n_correct == expected


# --- stability --------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e4, 1e30])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_sigmoid_and_losses_stay_finite_at_huge_logits(
    dtype: type[np.floating], scale: float
) -> None:
    Z = (scale * np.array([[1.0, -1.0, 0.5, -0.5], [-1.0, -1.0, -1.0, 1.0]])).astype(dtype)
    y = np.array([1, 3], dtype=np.intp)  # one badly wrong row, one right row

    p = softmax(Z)
    assert p.dtype == dtype
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(p.argmax(axis=1), [0, 3])
    log_p = log_softmax(Z)
    assert np.isfinite(log_p).all()
    assert (log_p <= 0).all()

    s = sigmoid(Z)
    assert s.dtype == dtype
    assert np.isfinite(s).all()
    assert ((s >= 0) & (s <= 1)).all()
    np.testing.assert_array_equal(s[0, :2], [1.0, 0.0])

    softmax_loss = data_loss("softmax", Z, y)
    # the first row's loss is the gap to its max, 2 * scale: large but finite
    assert softmax_loss == pytest.approx(scale, rel=1e-6)
    binary_loss = data_loss("binary", Z[:, :1], np.array([0, 0], dtype=np.intp))
    assert binary_loss == pytest.approx(scale / 2, rel=1e-6)


@pytest.mark.parametrize("scale", [1e4, 1e30])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_loss_and_grad_stay_finite_at_huge_logits(
    kind: Kind, dtype: type[np.floating], scale: float
) -> None:
    rng = np.random.default_rng(3)
    k = _outputs(kind)
    X = rng.choice([-1.0, 1.0], size=(16, 3)).astype(dtype)
    W = (scale * rng.choice([-1.0, 1.0], size=(3, k))).astype(dtype)
    b = (scale * rng.choice([-1.0, 1.0], size=k)).astype(dtype)
    y = rng.integers(0, max(k, 2), size=16).astype(np.intp)
    got = loss_and_grad(kind, W, b, X, y, 0.0)
    assert math.isfinite(got.loss)
    assert got.loss > 0
    assert np.isfinite(got.gW).all()
    assert np.isfinite(got.gb).all()
    # each row's gradient of the mean loss is bounded by 1 / n per output
    assert np.abs(got.gb).max() <= 1.0 + 1e-6
    proba = predict_proba(kind, W, b, X)
    assert np.isfinite(proba).all()


def test_log_softmax_is_log_of_softmax_on_moderate_inputs() -> None:
    Z = np.random.default_rng(4).normal(scale=5.0, size=(20, 7))
    np.testing.assert_allclose(log_softmax(Z), np.log(softmax(Z)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(softmax(Z).sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_matches_the_textbook_formula(dtype: type[np.floating]) -> None:
    z = np.linspace(-30, 30, 241).astype(dtype)
    reference = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    got = sigmoid(z)
    assert got.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, reference, rtol=rtol)


def test_data_loss_by_hand() -> None:
    Z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = np.array([2, 1], dtype=np.intp)
    row0 = -math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)))
    row1 = math.log(3)
    assert data_loss("softmax", Z, y) == pytest.approx((row0 + row1) / 2, rel=1e-12)

    Zb = np.array([[2.0], [-1.0]])
    yb = np.array([1, 0], dtype=np.intp)
    # -log(sigmoid(2)) and -log(1 - sigmoid(-1))
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert data_loss("binary", Zb, yb) == pytest.approx(expected, rel=1e-12)
    assert accuracy("binary", Zb, yb) == 1.0
    assert accuracy("softmax", Z, y) == 0.5  # the tied row predicts class 0, not its target 1


# --- learning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_plain_gradient_descent_lowers_the_loss_on_a_separable_problem(kind: Kind) -> None:
    rng = np.random.default_rng(5)
    k = _outputs(kind)
    n_classes = max(k, 2)
    centres = rng.normal(scale=3.0, size=(n_classes, 6))
    y = rng.integers(0, n_classes, size=120).astype(np.intp)
    X = (centres[y] + rng.normal(scale=0.5, size=(120, 6))).astype(np.float32)
    W = np.zeros((6, k), dtype=np.float32)
    b = np.zeros(k, dtype=np.float32)
    first = loss_and_grad(kind, W, b, X, y, 1e-4)
    losses = [first.loss]
    for _ in range(300):
        step = loss_and_grad(kind, W, b, X, y, 1e-4)
        W -= np.float32(0.1) * step.gW.astype(np.float32)
        b -= np.float32(0.1) * step.gb.astype(np.float32)
        losses.append(step.loss)
    final = loss_and_grad(kind, W, b, X, y, 1e-4)
    assert first.loss == pytest.approx(math.log(n_classes), rel=1e-6)  # uniform at zero weights
    assert final.loss < 0.1 * first.loss
    assert all(b_ <= a + 1e-6 for a, b_ in pairwise(losses[1:]))
    assert final.n_correct == len(y)
    assert accuracy(kind, logits(W, b, X), y) == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_predict_proba_shapes(kind: Kind) -> None:
    W, b, X, _ = _problem(kind, n=6)
    proba = predict_proba(kind, W, b, X)
    if kind == "softmax":
        assert proba.shape == (6, 4)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
        np.testing.assert_array_equal(proba.argmax(axis=1), predict_labels(kind, logits(W, b, X)))
    else:
        assert proba.shape == (6,)
        np.testing.assert_allclose(proba, 1 / (1 + np.exp(-(X @ W + b)[:, 0])), rtol=1e-12)
        np.testing.assert_array_equal(proba > 0.5, predict_labels(kind, logits(W, b, X)) == 1)


# --- features and folding ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_fold_standardization_gives_the_same_logits_on_raw_features(kind: Kind) -> None:
    rng = np.random.default_rng(6)
    k, d = _outputs(kind), 784
    W = rng.normal(size=(d, k)).astype(np.float32)
    b = rng.normal(size=k).astype(np.float32)
    mean = rng.random(d).astype(np.float32)
    scale = (0.05 + rng.random(d)).astype(np.float32)
    x = rng.random((12, d)).astype(np.float32)

    folded_W, folded_b = fold_standardization(W, b, mean, scale)
    assert folded_W.dtype == np.float32
    assert folded_b.dtype == np.float32
    assert folded_W.shape == (d, k)
    assert folded_b.shape == (k,)
    standardized = (x.astype(np.float64) - mean) / scale
    reference = standardized @ W.astype(np.float64) + b
    got = logits(folded_W.astype(np.float64), folded_b.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())


def test_pixels_to_features_maps_0_255_to_0_1_without_touching_the_input() -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 256)
    original = pixels.copy()
    features = pixels_to_features(pixels)
    assert features.dtype == np.float32
    assert features.shape == (1, 256)
    assert features[0, 0] == 0.0
    assert features[0, 255] == 1.0
    np.testing.assert_allclose(features[0], np.arange(256) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(pixels, original)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_pixels_to_features_copies_other_dtypes(dtype: type[np.number]) -> None:
    pixels = np.array([[0, 51, 255]], dtype=dtype)
    original = pixels.copy()
    features = pixels_to_features(pixels)
    assert features is not pixels
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, [[0.0, 0.2, 1.0]], rtol=1e-6)
    np.testing.assert_array_equal(pixels, original)


def test_a_perfect_fit_has_loss_plus_zero_not_minus_zero() -> None:
    """Reports print the loss with 4 decimals; a confident, right model must read 0.0000, not
    -0.0000 (the mean of exact zeros, negated, is IEEE -0.0)."""
    Z = np.array([[0.0, -1e4, -1e4], [-1e4, 0.0, -1e4]])
    y = np.array([0, 1], dtype=np.intp)
    assert f"{data_loss('softmax', Z, y):.4f}" == "0.0000"
    right = np.array([1, 0], dtype=np.intp)  # logit +1e4 -> class 1, -1e4 -> class 0
    assert f"{data_loss('binary', np.array([[1e4], [-1e4]]), right):.4f}" == "0.0000"


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_float32_batches_give_float32_gradients(kind: Kind) -> None:
    """Training is float32: an integer target array must not promote the step to float64."""
    rng = np.random.default_rng(0)
    X = rng.random((16, 784), dtype=np.float32)
    K = 1 if kind == "binary" else 10
    W, b = np.zeros((784, K), np.float32), np.zeros(K, np.float32)
    y = rng.integers(0, 2 if kind == "binary" else K, 16).astype(np.intp)
    step = loss_and_grad(kind, W, b, X, y, 1e-3)
    assert step.gW.dtype == np.float32 and step.gb.dtype == np.float32


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_contrast_jitter_step_equals_the_step_on_the_scaled_images(kind: Kind) -> None:
    """loss_and_grad(contrast=(c, m / sd)) must train on exactly (c * p - m) / sd, built
    explicitly here from the raw pixels p, in float64 to compare to rounding."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (6, 784)).astype(np.float64) / 255
    mean, sd = rng.random(784), rng.random(784) + 0.05
    c = rng.uniform(0.7, 1.3, 6)
    K = 1 if kind == "binary" else 4
    W, b = rng.normal(size=(784, K)) * 0.01, rng.normal(size=K)
    y = rng.integers(0, 2 if kind == "binary" else K, 6).astype(np.intp)
    jittered = loss_and_grad(kind, W, b, (pixels - mean) / sd, y, 1e-3, (c, mean / sd))
    explicit = loss_and_grad(kind, W, b, (c[:, None] * pixels - mean) / sd, y, 1e-3)
    assert jittered.loss == pytest.approx(explicit.loss, rel=1e-10)
    np.testing.assert_allclose(jittered.gW, explicit.gW, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(jittered.gb, explicit.gb, rtol=1e-8, atol=1e-12)
    assert jittered.n_correct == explicit.n_correct


@pytest.mark.parametrize("kind", KINDS)
def test_predict_returns_the_labels_and_probabilities_of_the_separate_functions(kind: Kind) -> None:
    W, b, X, _ = _problem(kind, n=7)
    labels, proba = predict(kind, W, b, X)
    np.testing.assert_array_equal(labels, predict_labels(kind, logits(W, b, X)))
    np.testing.assert_array_equal(proba, predict_proba(kind, W, b, X))
