"""The input contract every model shares: 28x28 grayscale images as 784 intensities 0..255.

A model's features are ``pixels / PIXEL_SCALE``; its logits are ``features @ weights + bias``.
The math (:mod:`trainer.linear`) and the artifact schema (:mod:`trainer.artifacts`) both import
these, so neither depends on the other for them.
"""

from __future__ import annotations

__all__ = ["IMAGE_SHAPE", "N_FEATURES", "PIXEL_MAX", "PIXEL_SCALE"]

IMAGE_SHAPE = (28, 28)
N_FEATURES = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
PIXEL_MAX = 255
PIXEL_SCALE = 255.0
