"""trainer.config, trainer.tasks and trainer.optim: checked hyper-parameters, class mapping and the
optimizers' updates."""

from __future__ import annotations

import json
import math
import re
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from trainer.config import (
    MAX_BATCH_SIZE,
    MAX_CLASSES,
    MAX_EPOCHS,
    MAX_SEED,
    ConfigError,
    Optimizer,
    Schedule,
    TrainConfig,
)
from trainer.data import FASHION_MNIST_CLASSES
from trainer.errors import TrainerError
from trainer.optim import Stepper, schedule_factor
from trainer.tasks import Task, make_task, resolve_classes

NAN, INF = float("nan"), float("inf")

BAD_FIELDS: list[tuple[str, Any]] = [
    ("model", "svm"),
    ("epochs", 0),
    ("epochs", -3),
    ("epochs", MAX_EPOCHS + 1),
    ("epochs", True),
    ("epochs", 2.0),
    ("epochs", NAN),
    ("epochs", INF),
    ("epochs", "5"),
    ("batch_size", 0),
    ("batch_size", -1),
    ("batch_size", MAX_BATCH_SIZE + 1),
    ("batch_size", True),
    ("batch_size", NAN),
    ("batch_size", INF),
    ("learning_rate", 0),
    ("learning_rate", -0.1),
    ("learning_rate", 101),
    ("learning_rate", NAN),
    ("learning_rate", INF),
    ("learning_rate", True),
    ("learning_rate", "0.1"),
    ("l2", -1e-9),
    ("l2", 101),
    ("l2", NAN),
    ("l2", INF),
    ("l2", False),
    ("momentum", -0.1),
    ("momentum", 1.0),
    ("momentum", NAN),
    ("momentum", -INF),
    ("momentum", True),
    ("contrast", -0.1),
    ("contrast", 1.0),
    ("contrast", NAN),
    ("contrast", "0.2"),
    ("validation_fraction", -0.01),
    ("validation_fraction", 0.5),
    ("validation_fraction", NAN),
    ("validation_fraction", INF),
    ("validation_fraction", True),
    ("optimizer", "rmsprop"),
    ("optimizer", "Adam"),
    ("schedule", "linear"),
    ("schedule", None),
    ("seed", -1),
    ("seed", True),
    ("seed", 1.5),
    ("seed", NAN),
    ("seed", INF),
    ("seed", MAX_SEED + 1),  # would not fit the artifact's 64-bit JSON integers
    ("positive", tuple(str(i) for i in range(MAX_CLASSES + 1))),
    ("negative", tuple(str(i) for i in range(MAX_CLASSES + 1))),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS, ids=[f"{f}={v!r}" for f, v in BAD_FIELDS])
def test_invalid_field_raises_config_error_naming_it(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    assert str(info.value).startswith(f"{field} ")
    assert str(info.value).endswith(f"got {value!r}")
    assert isinstance(info.value, TrainerError)
    with pytest.raises(ConfigError, match=f"^{field} "):
        TrainConfig().replace(**{field: value})  # replace checks again


GOOD_EDGES: list[tuple[str, Any]] = [
    ("epochs", 1),
    ("epochs", MAX_EPOCHS),
    ("batch_size", 1),
    ("batch_size", MAX_BATCH_SIZE),
    ("learning_rate", 100),
    ("learning_rate", 1e-12),
    ("l2", 0),
    ("l2", 100.0),
    ("momentum", 0.0),
    ("momentum", 0.999),
    ("validation_fraction", 0.0),
    ("validation_fraction", 0.49),
    ("seed", 0),
    ("seed", 2**40),
    ("seed", MAX_SEED),
]


@pytest.mark.parametrize(("field", "value"), GOOD_EDGES, ids=[f"{f}={v!r}" for f, v in GOOD_EDGES])
def test_values_at_the_edges_are_accepted(field: str, value: Any) -> None:
    assert getattr(TrainConfig(**{field: value}), field) == value


def test_binary_needs_a_positive_class() -> None:
    with pytest.raises(ConfigError, match=r"^positive .*binary.*, got \(\)$"):
        TrainConfig(model="binary", positive=())
    assert TrainConfig(model="softmax", positive=()).positive == ()  # only binary needs one


def test_positive_and_negative_overlap_is_caught_by_the_task() -> None:
    """The config cannot know that 'shirt' and '6' name one class; make_task checks by index."""
    config = TrainConfig(model="binary", positive=("Shirt", "Coat"), negative=("6",))
    with pytest.raises(ConfigError, match=r"both positive and negative: 'Shirt'"):
        make_task(config, FASHION_MNIST_CLASSES)


def test_config_is_frozen() -> None:
    config = TrainConfig()
    with pytest.raises(AttributeError):
        config.epochs = 3  # type: ignore[misc]


def test_replace_keeps_the_other_fields() -> None:
    config = TrainConfig(seed=7, optimizer="adam")
    changed = config.replace(epochs=2)
    assert (changed.epochs, changed.seed, changed.optimizer) == (2, 7, "adam")
    assert config.epochs == TrainConfig().epochs  # the original is unchanged


@pytest.mark.parametrize("model", ["softmax", "binary"])
def test_to_dict_is_json_ready(model: str) -> None:
    config = TrainConfig(model=model, positive=("Shirt", "6"), negative=("Coat",))  # type: ignore[arg-type]
    out = config.to_dict()
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert out["model"] == model
    assert out["epochs"] == config.epochs
    assert out["learning_rate"] == config.learning_rate
    if model == "softmax":
        assert "positive" not in out
        assert "negative" not in out
    else:
        assert out["positive"] == ["Shirt", "6"]
        assert out["negative"] == ["Coat"]
    if model == "binary":  # the dict rebuilds the config, as the service does from a request
        restored = {**out, "positive": tuple(out["positive"]), "negative": tuple(out["negative"])}
        assert TrainConfig(**restored) == config


# --- resolve_classes and make_task -----------------------------------------------------------


def test_resolve_classes_by_name_any_case_and_by_index() -> None:
    names = FASHION_MNIST_CLASSES
    assert resolve_classes(["shirt"], names) == (6,)
    assert resolve_classes(["ANKLE BOOT", " t-shirt/top "], names) == (0, 9)
    assert resolve_classes(["6"], names) == (6,)
    assert resolve_classes(["Sneaker", "7", "sneaker", "0"], names) == (0, 7)  # sorted, unique


@pytest.mark.parametrize("spec", ["Hat", "10", "-1", ""])
def test_unknown_class_lists_the_choices(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_classes([spec], FASHION_MNIST_CLASSES)
    message = str(info.value)
    assert message.startswith(f"unknown class {spec!r}: expected one of ")
    for name in FASHION_MNIST_CLASSES:
        assert repr(name) in message
    assert "0..9" in message


def _labels_and_images() -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 6, 2], dtype=np.uint8)
    images = np.repeat(labels[:, None], 784, axis=1).astype(np.uint8)  # each row marks its label
    return images, labels


def test_softmax_task_keeps_everything() -> None:
    task = make_task(TrainConfig(), FASHION_MNIST_CLASSES)
    assert task == Task(output_names=FASHION_MNIST_CLASSES)
    assert not task.binary
    images, labels = _labels_and_images()
    got_images, targets = task.apply(images, labels)
    assert got_images is images
    assert targets.dtype == np.intp
    np.testing.assert_array_equal(targets, labels)


def test_binary_task_against_the_rest() -> None:
    task = make_task(TrainConfig(model="binary", positive=("shirt",)), FASHION_MNIST_CLASSES)
    assert task.binary
    assert task.positive == (6,)
    assert task.negative == (0, 1, 2, 3, 4, 5, 7, 8, 9)
    assert task.output_names == ("not Shirt", "Shirt")
    images, labels = _labels_and_images()
    kept, targets = task.apply(images, labels)
    assert len(kept) == len(labels)
    np.testing.assert_array_equal(targets, labels == 6)


def test_binary_task_against_named_negatives() -> None:
    config = TrainConfig(model="binary", positive=("Shirt", "4"), negative=("pullover", "0"))
    task = make_task(config, FASHION_MNIST_CLASSES)
    assert (task.positive, task.negative) == ((4, 6), (0, 2))
    assert task.output_names == ("T-shirt/top | Pullover", "Coat | Shirt")
    images, labels = _labels_and_images()
    kept, targets = task.apply(images, labels)
    kept_labels = np.array([0, 2, 4, 6, 6, 2])
    np.testing.assert_array_equal(kept[:, 0], kept_labels)  # the right rows, in order
    np.testing.assert_array_equal(targets, [0, 0, 1, 1, 1, 0])
    assert targets.dtype == np.intp


def test_binary_task_rejects_overlap_by_index_and_name() -> None:
    config = TrainConfig(model="binary", positive=("6",), negative=("SHIRT", "Coat"))
    with pytest.raises(ConfigError, match="both positive and negative"):
        make_task(config, FASHION_MNIST_CLASSES)


def test_binary_task_needs_a_negative_class() -> None:
    config = TrainConfig(model="binary", positive=tuple(FASHION_MNIST_CLASSES))
    with pytest.raises(ConfigError, match="at least one negative class"):
        make_task(config, FASHION_MNIST_CLASSES)


def test_binary_task_with_an_unknown_class() -> None:
    config = TrainConfig(model="binary", positive=("Shirt",))
    with pytest.raises(ConfigError, match=re.escape("unknown class 'Shirt': expected one of '0'")):
        make_task(config, tuple(str(i) for i in range(10)))


# --- optim -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "points"),
    [
        ("cosine", [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]),
        ("step", [(0.0, 1.0), (0.4999, 1.0), (0.5, 0.1), (0.7499, 0.1), (0.75, 0.01), (1.0, 0.01)]),
        ("constant", [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0)]),
    ],
)
def test_schedule_factor_endpoints(schedule: Schedule, points: list[tuple[float, float]]) -> None:
    for progress, factor in points:
        assert schedule_factor(schedule, progress) == pytest.approx(factor, abs=1e-12), progress
    grid = [schedule_factor(schedule, p) for p in np.linspace(0, 1, 101)]
    assert all(a >= b for a, b in pairwise(grid))  # never increases


def _quadratic(p: NDArray[np.float32], target: NDArray[np.float32]) -> float:
    return 0.5 * float(np.sum((p.astype(np.float64) - target) ** 2))


@pytest.mark.parametrize("optimizer", ["momentum", "adam", "sgd"])
def test_stepper_minimises_a_quadratic(optimizer: Optimizer) -> None:
    rng = np.random.default_rng(0)
    target_w = rng.normal(size=(5, 3)).astype(np.float32)
    target_b = rng.normal(size=3).astype(np.float32)
    W, b = np.zeros((5, 3), np.float32), np.zeros(3, np.float32)
    stepper = Stepper(optimizer, [W, b], momentum=0.9)
    start = _quadratic(W, target_w) + _quadratic(b, target_b)
    for _ in range(200):
        stepper.step([W - target_w, b - target_b], lr=0.05)  # the gradient of the quadratic
    end = _quadratic(W, target_w) + _quadratic(b, target_b)
    assert W.dtype == np.float32  # updated in place, never replaced
    assert stepper.params[0] is W
    assert stepper.steps == 200
    assert end < 1e-3 * start


def test_sgd_and_momentum_steps_by_hand() -> None:
    g1, g2 = np.array([1.0, -2.0], np.float32), np.array([0.5, 0.5], np.float32)
    p = np.array([1.0, 1.0], np.float32)
    Stepper("sgd", [p], momentum=0.9).step([g1], lr=0.1)
    np.testing.assert_allclose(p, [0.9, 1.2], rtol=1e-6)

    q = np.array([1.0, 1.0], np.float32)
    heavy_ball = Stepper("momentum", [q], momentum=0.5)
    heavy_ball.step([g1], lr=0.1)
    heavy_ball.step([g2], lr=0.1)
    velocity = 0.5 * g1 + g2
    np.testing.assert_allclose(q, 1.0 - 0.1 * g1 - 0.1 * velocity, rtol=1e-6)


def test_adam_first_step_moves_each_coordinate_by_the_learning_rate() -> None:
    # bias correction makes the first update lr * sign(g), whatever the gradient's scale
    p = np.zeros(3, np.float32)
    Stepper("adam", [p], momentum=0.9).step([np.array([1e-3, -5.0, 200.0], np.float32)], lr=0.01)
    np.testing.assert_allclose(p, [-0.01, 0.01, -0.01], rtol=1e-4)
    assert math.isfinite(float(p.sum()))


@pytest.mark.parametrize("spec", ["²", "٣", "1.0", "-1", "10"])
def test_class_specs_that_only_look_numeric_are_unknown_classes(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown class"):
        resolve_classes([spec], FASHION_MNIST_CLASSES)


def test_from_dict_round_trips_and_names_what_is_wrong() -> None:
    config = TrainConfig(model="binary", positive=("Shirt", "6"), negative=("Coat",), epochs=3)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_dict({"model": "binary", "positive": [6]}).positive == ("6",)
    with pytest.raises(ConfigError, match=r"unknown training parameter 'epoch', 'lr': expected"):
        TrainConfig.from_dict({"epoch": 3, "lr": 0.1})
    with pytest.raises(ConfigError, match=r"positive must be a list of class names or indices"):
        TrainConfig.from_dict({"model": "binary", "positive": "Shirt"})
    with pytest.raises(ConfigError, match=r"negative must be a list"):
        TrainConfig.from_dict({"model": "binary", "negative": [True]})
    with pytest.raises(ConfigError, match=r"positive must be a tuple"):
        TrainConfig(model="binary", positive=["Shirt"])  # type: ignore[arg-type]


def test_task_outputs_are_one_logit_for_binary_and_one_per_class_for_softmax() -> None:
    assert make_task(TrainConfig(), FASHION_MNIST_CLASSES).n_outputs == 10
    assert make_task(TrainConfig(model="binary"), FASHION_MNIST_CLASSES).n_outputs == 1
