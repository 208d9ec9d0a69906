"""The reference trainers the benchmark compares ours with: scikit-learn and PyTorch.

Each function gets the same uint8 arrays our trainer gets and returns wall-clock seconds of the
fitting alone (data conversion and test-set scoring are outside the clock), plus a curve of
``(seconds, test accuracy, where)`` points for the time-to-accuracy table.
"""

from __future__ import annotations

import importlib
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Curve", "Fitted", "load_torch", "sklearn_curve", "sklearn_fit", "steps", "torch_fit"]

Curve = list[tuple[float, float, str]]  # (seconds since the start, test accuracy, where)
U8 = NDArray[np.uint8]
Labels = NDArray[np.intp]


@dataclass(frozen=True)
class Fitted:
    seconds: float
    accuracy: float  # on the test set, of the final model
    note: str = ""
    curve: Curve | None = None


def _scaled(images: U8) -> NDArray[np.float64]:
    return images / 255.0  # what a scikit-learn user writes: float64 in 0..1


def _logistic(solver: str, C: float, **params: Any) -> Any:
    from sklearn.linear_model import LogisticRegression

    # multinomial is what lbfgs and saga fit on a multi-class target (the only choice since 1.7)
    return LogisticRegression(solver=solver, C=C, **params)


def _fit_quietly(model: Any, X: NDArray[np.float64], y: Labels) -> float:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # hitting max_iter is the budget working as intended; the note column says so
        warnings.simplefilter("ignore", ConvergenceWarning)
        started = time.perf_counter()
        model.fit(X, y)
        return time.perf_counter() - started


def sklearn_fit(
    solver: str, train: tuple[U8, Labels], test: tuple[U8, Labels], *, max_iter: int, C: float
) -> Fitted:
    """One cold ``LogisticRegression.fit`` of at most ``max_iter`` iterations (saga: epochs)."""
    X, Xt = _scaled(train[0]), _scaled(test[0])
    model = _logistic(solver, C, max_iter=max_iter)
    seconds = _fit_quietly(model, X, train[1])
    n_iter = int(np.max(model.n_iter_))
    note = f"stopped at max_iter={max_iter}" if n_iter >= max_iter else f"converged, {n_iter} it"
    return Fitted(seconds, float(model.score(Xt, test[1])), note)


def steps(cap: int) -> list[int]:
    """Cumulative iteration counts 1, 2, 3, 4, 6, 8, 12, 16, ... (x1.4 apart), ending at cap."""
    out = sorted({m << p for p in range(20) for m in (2, 3)} | {1})
    return [s for s in out if s < cap] + [cap]


def sklearn_curve(
    solver: str,
    train: tuple[U8, Labels],
    test: tuple[U8, Labels],
    *,
    max_iter: int,
    C: float,
    thresholds: tuple[float, ...],
) -> Fitted:
    """Warm-started fits stepping the cumulative iteration count through ``steps(max_iter)``,
    scoring after each; stops early once every threshold is reached or the solver converges."""
    X, Xt = _scaled(train[0]), _scaled(test[0])
    model = _logistic(solver, C, warm_start=True)
    elapsed, done, curve = 0.0, 0, Curve()
    for total in steps(max_iter):
        model.set_params(max_iter=total - done)
        elapsed += _fit_quietly(model, X, train[1])
        converged = int(np.max(model.n_iter_)) < total - done
        done = total
        curve.append((elapsed, float(model.score(Xt, test[1])), f"it {total}"))
        if converged or all(any(a >= t for _, a, _ in curve) for t in thresholds):
            break
    return Fitted(elapsed, curve[-1][1], f"{done} it in {len(curve)} warm starts", curve)


def load_torch() -> Any | None:
    """torch, or None when it is not installed. Imported by name so that mypy neither needs it
    nor spends a minute reading its sources."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def torch_fit(
    torch: Any,
    train: tuple[U8, Labels],
    test: tuple[U8, Labels],
    *,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 0.1,
    seed: int = 0,
) -> Fitted:
    """The d2l softmax-regression recipe: nn.Linear(784, 10), cross-entropy, plain SGD on
    pixels / 255. Batches are index slices of one shuffled permutation (a DataLoader over a
    TensorDataset would fetch rows one at a time and time Python, not torch)."""
    torch.manual_seed(seed)
    X, Xt = (
        torch.from_numpy(images.astype(np.float32) / np.float32(255))
        for images in (train[0], test[0])
    )
    y, yt = (torch.from_numpy(labels.astype(np.int64)) for labels in (train[1], test[1]))
    net = torch.nn.Linear(X.shape[1], int(y.max()) + 1)
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    elapsed, curve = 0.0, Curve()
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        order = torch.randperm(len(y))
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss_fn(net(X[idx]), y[idx]).backward()
            optimizer.step()
        elapsed += time.perf_counter() - started
        with torch.no_grad():
            accuracy = float((net(Xt).argmax(dim=1) == yt).float().mean())
        curve.append((elapsed, accuracy, f"epoch {epoch}"))
    return Fitted(elapsed, curve[-1][1], f"{epochs} epochs", curve)
