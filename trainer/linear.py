"""The math of softserve's two linear models, as small pure functions.

Shapes: ``X`` is (N, D) float32 features, ``W`` is (D, K) and ``b`` is (K,). A softmax model
has K >= 2 outputs and integer targets ``y`` in 0..K-1; a binary model has K = 1 output (the logit
of the positive class) and targets ``y`` in {0, 1}. Losses are means over the N rows plus
``l2 / 2 * ||W||^2`` (the bias is not regularised), and gradients are of exactly that.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from trainer.contract import PIXEL_SCALE, Kind

__all__ = [
    "PIXEL_SCALE",
    "Kind",
    "LossGrad",
    "accuracy",
    "data_loss",
    "fold_standardization",
    "log_softmax",
    "logits",
    "loss_and_grad",
    "pixels_to_features",
    "predict",
    "predict_labels",
    "predict_proba",
    "probabilities",
    "sigmoid",
    "softmax",
]

Floats = NDArray[np.floating]
Labels = NDArray[np.integer]


def pixels_to_features(pixels: NDArray[np.number]) -> NDArray[np.float32]:
    """(N, 784) intensities 0..255 (any numeric dtype) -> (N, 784) float32 features in 0..1."""
    features = np.asarray(pixels, dtype=np.float32)
    if features is pixels:
        features = features.copy()
    features *= np.float32(1.0 / PIXEL_SCALE)
    return features


def logits(W: Floats, b: Floats, X: Floats) -> Floats:
    """(N, K) raw scores ``X @ W + b``."""
    return X @ W + b


def log_softmax(Z: Floats) -> Floats:
    """Row-wise log-softmax of (N, K) scores; subtracting the row max keeps huge logits finite."""
    shifted = Z - Z.max(axis=1, keepdims=True)
    out: Floats = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return out


def softmax(Z: Floats) -> Floats:
    """Row-wise softmax of (N, K) scores; rows sum to 1 and stay finite for any finite input."""
    e = np.exp(Z - Z.max(axis=1, keepdims=True))
    out: Floats = e / e.sum(axis=1, keepdims=True)
    return out


def sigmoid(z: Floats) -> Floats:
    """Elementwise logistic function without overflow: exp is only ever taken of -|z|."""
    e = np.exp(-np.abs(z))
    out: Floats = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)
    return out


def data_loss(kind: Kind, Z: Floats, y: Labels) -> float:
    """Mean cross-entropy of (N, K) scores against targets (no regularisation term)."""
    if kind == "binary":
        z = Z[:, 0]
        # -log sigmoid(z) for y=1 and -log(1 - sigmoid(z)) for y=0, both as logaddexp(0, -+z).
        return float(np.mean(np.logaddexp(0.0, z) - y * z))
    return float(np.mean(-log_softmax(Z)[np.arange(len(y)), y]))  # a perfect fit is +0.0, not -0.0


# Scores are clamped to +-60 before exp in the training step: a probability below e^-60 (1e-26)
# changes nothing in float32, but e^-88 and beyond are subnormal numbers, and one subnormal in the
# gradient makes the next matmul up to 70x slower on x86 (measured here: 3.6 ms instead of 50 us).
EXP_FLOOR_NEG = 60.0


class LossGrad(NamedTuple):
    """One batch's regularised loss and gradients, with by-products for progress reports."""

    loss: float  # mean cross-entropy + l2 / 2 * ||W||^2: what gW and gb are the gradients of
    gW: Floats  # (D, K)
    gb: Floats  # (K,)
    data_loss: float  # mean cross-entropy alone
    n_correct: int  # rows whose predicted label equals the target


def loss_and_grad(
    kind: Kind,
    W: Floats,
    b: Floats,
    X: Floats,
    y: Labels,
    l2: float,
    contrast: tuple[Floats, Floats] | None = None,
) -> LossGrad:
    """Regularised mean loss of one batch and its gradients, from a single forward pass.

    ``contrast=(c, s)`` trains on each row's image with its intensities scaled by ``c`` (N,), for
    rows standardised as ``x = (p - m) / sd`` with ``s = m / sd`` (D,): the batch is then
    ``c * x + (c - 1) * s``. That is never built; the products are rewritten on (N, K) and (D, K)
    arrays instead: ``X' @ W = c * (X @ W) + (c - 1) (s @ W)`` and
    ``X'.T @ G = X.T @ (c * G) + s (c - 1).T @ G``.

    This is the training loop's inner step, so it works in place on the (N, K) scores and takes
    each by-product from what the gradient needs anyway.
    """
    Z = X @ W
    if contrast is not None:
        c, s = contrast
        Z *= c[:, None]
        Z += (c - 1)[:, None] * (s @ W)
    Z += b
    n = X.shape[0]
    if kind == "binary":
        target = y.astype(Z.dtype)  # keep float32 batches in float32: y is an integer array
        ce = data_loss(kind, Z, y)  # the reported loss; G below stays float32
        n_correct = int(np.count_nonzero((Z[:, 0] > 0) == (y == 1)))
        G = sigmoid(np.clip(Z, -EXP_FLOOR_NEG, EXP_FLOOR_NEG))
        G -= target[:, None]
        G /= n
    else:
        rows = np.arange(n)
        Z -= Z.max(axis=1, keepdims=True)
        z_true = Z[rows, y]
        n_correct = int(np.count_nonzero(Z.argmax(axis=1) == y))  # ties go to the first, as predict
        np.maximum(Z, -EXP_FLOOR_NEG, out=Z)
        G = np.exp(Z, out=Z)
        total = G.sum(axis=1)
        ce = float(np.mean(np.log(total) - z_true))  # -log softmax of the target, stably
        G /= (total * n)[:, None]
        G[rows, y] -= 1.0 / n
    if contrast is None:
        gW = X.T @ G
    else:
        gW = X.T @ (G * c[:, None])
        gW += s[:, None] * ((c - 1) @ G)
    reg = 0.0
    if l2:
        gW += l2 * W
        reg = 0.5 * l2 * float(np.vdot(W, W))
    return LossGrad(ce + reg, gW, G.sum(axis=0), ce, n_correct)


def predict_proba(kind: Kind, W: Floats, b: Floats, X: Floats) -> Floats:
    """Softmax: (N, K) class probabilities. Binary: (N,) probability of the positive class."""
    return predict(kind, W, b, X)[1]


def predict(kind: Kind, W: Floats, b: Floats, X: Floats) -> tuple[NDArray[np.intp], Floats]:
    """Labels (N,) and probabilities (softmax (N, K), binary (N,)) from one pass over the logits."""
    Z = logits(W, b, X)
    return predict_labels(kind, Z), probabilities(kind, Z)


def probabilities(kind: Kind, Z: Floats) -> Floats:
    """Softmax: (N, K) class probabilities of (N, K) scores. Binary: (N,) of the positive class."""
    return sigmoid(Z[:, 0]) if kind == "binary" else softmax(Z)


def predict_labels(kind: Kind, Z: Floats) -> NDArray[np.intp]:
    """(N,) predicted output index from (N, K) scores (binary: 1 where the logit is positive)."""
    if kind == "binary":
        return (Z[:, 0] > 0).astype(np.intp)
    return np.asarray(Z.argmax(axis=1), dtype=np.intp)


def accuracy(kind: Kind, Z: Floats, y: Labels) -> float:
    """Fraction of rows whose predicted label equals the target."""
    return float(np.mean(predict_labels(kind, Z) == y))


def fold_standardization(
    W: Floats, b: Floats, mean: Floats, scale: Floats
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Rewrite a model on standardised features ``(x - mean) / scale`` as one on ``x`` itself.

    ``((x - m) / s) @ W + b == x @ (W / s[:, None]) + (b - (m / s) @ W)``, computed in float64 so
    the folded float32 artifact matches the trained model to rounding.
    """
    W64 = W.astype(np.float64) / scale.astype(np.float64)[:, None]
    b64 = b.astype(np.float64) - mean.astype(np.float64) @ W64
    return W64.astype(np.float32), b64.astype(np.float32)
