"""What a prediction should be, computed from the artifact with NumPy alone (float64), so that
service tests check the service against an independent implementation, not against itself."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

from trainer.artifacts import Artifact

__all__ = ["check_predictions", "reference"]


def reference(artifact: Artifact, pixels: NDArray[Any]) -> tuple[NDArray[np.int64], NDArray[Any]]:
    """Labels (N,) and probabilities for pixels (N, 784) in 0..255: softmax rows (N, K), or for
    a binary model the positive class's (N,). ``logits = (pixels / 255) @ W + b``."""
    X = np.asarray(pixels, dtype=np.float64).reshape(-1, 784) / 255.0
    z = X @ artifact.weights.astype(np.float64) + artifact.bias.astype(np.float64)
    if artifact.kind == "binary":
        return (z[:, 0] > 0).astype(np.int64), 1.0 / (1.0 + np.exp(-z[:, 0]))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return z.argmax(axis=1), e / e.sum(axis=1, keepdims=True)


def check_predictions(
    response: httpx.Response, artifact: Artifact, name: str, pixels: NDArray[Any]
) -> list[dict[str, Any]]:
    """Assert a 200 /predict response is `artifact` (served as `name`) applied to `pixels`."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["model"], body["version"]) == (name, artifact.version)
    predictions: list[dict[str, Any]] = body["predictions"]
    labels, proba = reference(artifact, pixels)
    assert len(predictions) == len(labels)
    assert [p["label"] for p in predictions] == labels.tolist()
    assert [p["class_name"] for p in predictions] == [artifact.class_names[i] for i in labels]
    if artifact.kind == "binary":
        assert all("probabilities" not in p for p in predictions)
        got = np.array([p["probability"] for p in predictions])
    else:
        assert all("probability" not in p and "top_k" not in p for p in predictions)
        got = np.array([p["probabilities"] for p in predictions])
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, proba, rtol=1e-4, atol=1e-6)
    return predictions
