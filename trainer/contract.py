"""The contract every model shares: 28x28 grayscale images as 784 intensities 0..255, and the
two kinds of model.

A model's features are ``pixels / PIXEL_SCALE``; its logits are ``features @ weights + bias``.
The math (:mod:`trainer.linear`), the config (:mod:`trainer.config`), the artifact schema
(:mod:`trainer.artifacts`) and the service all import these, so none depends on another for them.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["IMAGE_SHAPE", "KINDS", "N_FEATURES", "PIXEL_MAX", "PIXEL_SCALE", "Kind"]

# softmax: one output per class (K >= 2); binary: one logit, of the positive class (K = 1)
Kind = Literal["softmax", "binary"]
KINDS: tuple[Kind, ...] = get_args(Kind)

IMAGE_SHAPE = (28, 28)
N_FEATURES = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
PIXEL_MAX = 255
PIXEL_SCALE = 255.0
