"""Hyper-parameters of one training run: a frozen dataclass that checks itself."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from trainer.contract import KINDS, Kind
from trainer.errors import TrainerError

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_CLASSES",
    "MAX_EPOCHS",
    "MAX_L2",
    "MAX_LEARNING_RATE",
    "MAX_SEED",
    "OPTIMIZERS",
    "SCHEDULES",
    "ConfigError",
    "Optimizer",
    "Schedule",
    "TrainConfig",
]

Optimizer = Literal["momentum", "adam", "sgd"]
Schedule = Literal["cosine", "step", "constant"]
OPTIMIZERS: tuple[Optimizer, ...] = get_args(Optimizer)
SCHEDULES: tuple[Schedule, ...] = get_args(Schedule)

# The ranges a config may take; the service's request schema shows the same bounds.
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 65536
MAX_LEARNING_RATE = 100.0  # learning_rate is in (0, MAX_LEARNING_RATE]
MAX_L2 = 100.0  # l2 is in [0, MAX_L2]
MAX_SEED = 2**63 - 1  # seeds are stored in the artifact, whose JSON keeps ints within 64 bits
MAX_CLASSES = 100  # names or indices in positive, and in negative


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
    calibrate: bool = True  # fit a temperature on the validation split; fold it in if it helps
    seed: int = 0  # same seed, same data -> bitwise identical weights
    positive: tuple[str, ...] = ("Shirt",)  # binary: positive class names or indices
    negative: tuple[str, ...] = ()  # binary: negative classes; empty = all the others

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name} {why}, got {getattr(self, name)!r}")

        if self.model not in KINDS:
            raise bad("model", f"must be {_one_of(KINDS)}")
        for name, hi in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH_SIZE)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise bad(name, f"must be a whole number from 1 to {hi}")
        if not _finite(self.learning_rate) or not 0 < self.learning_rate <= MAX_LEARNING_RATE:
            raise bad("learning_rate", f"must be a number in (0, {MAX_LEARNING_RATE:g}]")
        if not _finite(self.l2) or not 0 <= self.l2 <= MAX_L2:
            raise bad("l2", f"must be a number in [0, {MAX_L2:g}]")
        if not _finite(self.momentum) or not 0 <= self.momentum < 1:
            raise bad("momentum", "must be a number in [0, 1)")
        if not _finite(self.contrast) or not 0 <= self.contrast < 1:
            raise bad("contrast", "must be a number in [0, 1)")
        if not _finite(self.validation_fraction) or not 0 <= self.validation_fraction < 0.5:
            raise bad("validation_fraction", "must be a number in [0, 0.5)")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"must be {_one_of(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"must be {_one_of(SCHEDULES)}")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise bad("seed", f"must be a whole number from 0 to {MAX_SEED}")
        for name in ("positive", "negative"):
            classes = getattr(self, name)
            if not isinstance(classes, tuple) or not all(isinstance(c, str) for c in classes):
                raise bad(name, "must be a tuple of class names or indices (as strings)")
            if len(classes) > MAX_CLASSES:
                raise bad(name, f"must name at most {MAX_CLASSES} classes")
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


def _one_of(choices: tuple[str, ...]) -> str:
    """``'a', 'b' or 'c'``."""
    quoted = [repr(choice) for choice in choices]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
