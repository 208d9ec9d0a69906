"""Hyper-parameters of one training run: a frozen dataclass that checks itself."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from trainer.errors import TrainerError
from trainer.linear import Kind

__all__ = ["MAX_BATCH_SIZE", "MAX_EPOCHS", "ConfigError", "Optimizer", "Schedule", "TrainConfig"]

Optimizer = Literal["momentum", "adam", "sgd"]
Schedule = Literal["cosine", "step", "constant"]

MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 65536


class ConfigError(TrainerError):
    """A hyper-parameter out of range; the message names it and the value."""


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the shipped models' settings (see README, "Shipped models")."""

    model: Kind = "softmax"
    epochs: int = 10  # passes over the training split in the selection run
    batch_size: int = 256
    learning_rate: float = 0.1  # peak rate; the schedule decays it
    l2: float = 3e-4  # weight decay on standardised features; the bias is not penalised
    optimizer: Optimizer = "momentum"
    momentum: float = 0.9  # also Adam's beta1
    schedule: Schedule = "cosine"  # cosine: to zero over the run; step: x0.1 at 50% and 75%
    contrast: float = 0.3  # augmentation: each training image's intensities x U(1 - c, 1 + c)
    validation_fraction: float = 1 / 12  # 5,000 of Fashion-MNIST's 60,000, stratified by class
    refit: bool = True  # after choosing the epoch on validation, retrain on train + validation
    standardize: bool = True  # train on per-pixel standardised features, folded back on save
    seed: int = 0  # same seed, same data -> bitwise identical weights
    positive: tuple[str, ...] = ("Shirt",)  # binary: positive class names or indices
    negative: tuple[str, ...] = ()  # binary: negative classes; empty = all the others

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name} {why}, got {getattr(self, name)!r}")

        if self.model not in ("softmax", "binary"):
            raise bad("model", "must be 'softmax' or 'binary'")
        for name, hi in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH_SIZE)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise bad(name, f"must be a whole number from 1 to {hi}")
        if not _finite(self.learning_rate) or not 0 < self.learning_rate <= 100:
            raise bad("learning_rate", "must be a number in (0, 100]")
        if not _finite(self.l2) or not 0 <= self.l2 <= 100:
            raise bad("l2", "must be a number in [0, 100]")
        if not _finite(self.momentum) or not 0 <= self.momentum < 1:
            raise bad("momentum", "must be a number in [0, 1)")
        if not _finite(self.contrast) or not 0 <= self.contrast < 1:
            raise bad("contrast", "must be a number in [0, 1)")
        if not _finite(self.validation_fraction) or not 0 <= self.validation_fraction < 0.5:
            raise bad("validation_fraction", "must be a number in [0, 0.5)")
        if self.optimizer not in ("momentum", "adam", "sgd"):
            raise bad("optimizer", "must be 'momentum', 'adam' or 'sgd'")
        if self.schedule not in ("cosine", "step", "constant"):
            raise bad("schedule", "must be 'cosine', 'step' or 'constant'")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", "must be a whole number >= 0")
        for name in ("positive", "negative"):
            classes = getattr(self, name)
            if not isinstance(classes, tuple) or not all(isinstance(c, str) for c in classes):
                raise bad(name, "must be a tuple of class names or indices (as strings)")
        if self.model == "binary" and not self.positive:
            raise bad("positive", "must name at least one class for a binary model")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from JSON-like values, such as a request body: unknown keys are named, lists
        of classes become tuples, and a bare string is not taken for a list of classes."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(values) - known):
            raise ConfigError(
                f"unknown training parameter {', '.join(map(repr, unknown))}: "
                f"expected some of {', '.join(sorted(known))}"
            )
        fields = dict(values)
        if fields.get("model", cls.model) != "binary" and {"positive", "negative"} & fields.keys():
            raise ConfigError(
                "positive/negative classes are for binary models; a softmax model learns "
                "every class"
            )
        for name in ("positive", "negative"):
            if name in fields:
                classes = fields[name]
                if not isinstance(classes, list | tuple) or not all(
                    isinstance(c, str | int) and not isinstance(c, bool) for c in classes
                ):
                    raise ConfigError(
                        f"{name} must be a list of class names or indices, got {classes!r}"
                    )
                fields[name] = tuple(str(c) for c in classes)
        return cls(**fields)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed, checked again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; binary-only fields are left out of a softmax config."""
        out = dataclasses.asdict(self)
        out["positive"], out["negative"] = list(self.positive), list(self.negative)
        if self.model == "softmax":
            del out["positive"], out["negative"]
        return out


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
