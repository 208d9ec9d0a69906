"""What a model learns to predict: the dataset's classes, or positive classes versus the rest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trainer.config import ConfigError, TrainConfig

__all__ = ["Task", "make_task", "resolve_classes"]


def resolve_classes(specs: Sequence[str], class_names: Sequence[str]) -> tuple[int, ...]:
    """Class names (case-insensitive) or indices -> sorted unique indices into ``class_names``."""
    by_name = {name.casefold(): i for i, name in enumerate(class_names)}
    found: set[int] = set()
    for spec in specs:
        text = str(spec).strip()
        if text.isascii() and text.isdecimal() and int(text) < len(class_names):
            found.add(int(text))
        elif text.casefold() in by_name:
            found.add(by_name[text.casefold()])
        else:
            choices = ", ".join(repr(n) for n in class_names)
            raise ConfigError(
                f"unknown class {text!r}: expected one of {choices} or an index "
                f"0..{len(class_names) - 1}"
            )
    return tuple(sorted(found))


@dataclass(frozen=True)
class Task:
    """Maps dataset labels to model targets; ``output_names`` names the model's outputs."""

    output_names: tuple[str, ...]
    positive: tuple[int, ...] = ()  # binary only: dataset classes mapped to target 1
    negative: tuple[int, ...] = ()  # binary only: dataset classes mapped to target 0

    @property
    def binary(self) -> bool:
        return bool(self.positive)

    @property
    def n_outputs(self) -> int:
        """Columns of the model's weights: one per class, or one logit for a binary task."""
        return 1 if self.binary else len(self.output_names)

    def apply(
        self, images: NDArray[np.uint8], labels: NDArray[np.integer]
    ) -> tuple[NDArray[np.uint8], NDArray[np.intp]]:
        """Keep the rows this task uses and return them with their targets."""
        if not self.binary:
            return images, labels.astype(np.intp)
        keep = np.isin(labels, self.positive + self.negative)
        targets = np.isin(labels[keep], self.positive).astype(np.intp)
        return (images if keep.all() else images[keep]), targets


def make_task(config: TrainConfig, class_names: Sequence[str]) -> Task:
    """The task ``config`` asks for over a dataset with these class names."""
    if config.model == "softmax":
        return Task(output_names=tuple(class_names))
    positive = resolve_classes(config.positive, class_names)
    negative = (
        resolve_classes(config.negative, class_names)
        if config.negative
        else tuple(i for i in range(len(class_names)) if i not in positive)
    )
    if both := sorted(set(positive) & set(negative)):
        names = ", ".join(repr(class_names[i]) for i in both)
        raise ConfigError(f"a class cannot be both positive and negative: {names}")
    if not negative:
        raise ConfigError("a binary model needs at least one negative class")

    def joined(indices: tuple[int, ...]) -> str:
        return " | ".join(class_names[i] for i in indices)

    negative_name = joined(negative) if config.negative else f"not {joined(positive)}"
    return Task(
        output_names=(negative_name, joined(positive)), positive=positive, negative=negative
    )
