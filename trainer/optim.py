"""Optimizers and learning-rate schedules for mini-batch gradient descent, updating in place."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from trainer.config import Optimizer, Schedule

__all__ = ["Stepper", "schedule_factor"]

Params = list[NDArray[np.float32]]


def schedule_factor(schedule: Schedule, progress: float) -> float:
    """The peak learning rate's multiplier at ``progress`` (0 at the first step, 1 at the end)."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01
    return 1.0


class Stepper:
    """Applies one optimizer update per call to a fixed list of float32 parameter arrays.

    momentum: heavy ball as in PyTorch (v = mu * v + g; p -= lr * v); adam: Kingma & Ba with bias
    correction, beta1 = ``momentum``, beta2 = 0.999; sgd: p -= lr * g.
    """

    def __init__(self, kind: Optimizer, params: Params, momentum: float) -> None:
        self.kind, self.params, self.momentum = kind, params, np.float32(momentum)
        self.first = [np.zeros_like(p) for p in params]
        self.second = [np.zeros_like(p) for p in params] if kind == "adam" else []
        self.steps = 0

    def step(self, grads: list[NDArray[np.floating]], lr: float) -> None:
        self.steps += 1
        rate = np.float32(lr)
        if self.kind == "sgd":
            for p, g in zip(self.params, grads, strict=True):
                p -= rate * g
        elif self.kind == "momentum":
            for p, v, g in zip(self.params, self.first, grads, strict=True):
                v *= self.momentum
                v += g
                p -= rate * v
        else:
            b1, b2 = float(self.momentum), 0.999
            c1, c2 = 1.0 - b1**self.steps, 1.0 - b2**self.steps
            for p, m, s, g in zip(self.params, self.first, self.second, grads, strict=True):
                m *= np.float32(b1)
                m += np.float32(1.0 - b1) * g
                s *= np.float32(b2)
                s += np.float32(1.0 - b2) * g * g
                p -= np.float32(lr / c1) * m / (np.sqrt(s / np.float32(c2)) + np.float32(1e-8))
