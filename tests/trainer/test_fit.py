"""trainer.fit on tiny synthetic data: determinism, validation-only selection, refit, callbacks."""

from __future__ import annotations

import pickle
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.synthetic import make_images
from trainer.config import ConfigError, TrainConfig
from trainer.errors import TrainerError, TrainingError
from trainer.fit import (
    Cancelled,
    EpochRecord,
    FitResult,
    Progress,
    fit,
    split_validation,
)
from trainer.idx import DataError
from trainer.linear import Kind, logits, pixels_to_features
from trainer.metrics import evaluate

N_TRAIN, N_TEST, POSITIVE = 600, 200, 3
Images = NDArray[np.uint8]
Targets = NDArray[np.intp]


def _split(n: int, seed: int, kind: Kind) -> tuple[Images, Targets]:
    images, labels = make_images(n, 10, seed)
    targets = labels if kind == "softmax" else labels == POSITIVE
    return images.reshape(n, 784), targets.astype(np.intp)


def _data(kind: Kind) -> tuple[Images, Targets, tuple[Images, Targets]]:
    images, targets = _split(N_TRAIN, 0, kind)
    return images, targets, _split(N_TEST, 1, kind)


def _config(kind: Kind, **changes: Any) -> TrainConfig:
    """Small runs: 480 training rows in 10 batches (the last one partial), 4 epochs. No
    temperature (test_calibration.py has those): the final metrics are the last epoch's."""
    base: dict[str, Any] = {
        "model": kind, "epochs": 4, "batch_size": 50, "learning_rate": 0.05, "l2": 1e-4,
        "optimizer": "momentum", "momentum": 0.9, "schedule": "cosine",
        "validation_fraction": 0.2, "refit": True, "standardize": True, "seed": 0,
        "positive": (str(POSITIVE),), "calibrate": False,
    }  # fmt: skip
    return TrainConfig(**{**base, **changes})


def _run(kind: Kind, test_targets: Targets | None = None, **changes: Any) -> FitResult:
    images, targets, (test_images, test_y) = _data(kind)
    test = (test_images, test_y if test_targets is None else test_targets)
    n_outputs = 10 if kind == "softmax" else 1
    return fit(_config(kind, **changes), images, targets, test, n_outputs=n_outputs)


def _without_time(history: tuple[EpochRecord, ...]) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(r).items() if k != "seconds"} for r in history]


def _assert_same_run(a: FitResult, b: FitResult) -> None:
    assert a.weights.tobytes() == b.weights.tobytes()
    assert a.bias.tobytes() == b.bias.tobytes()
    assert _without_time(a.history) == _without_time(b.history)
    assert (a.best_epoch, a.n_train, a.n_validation) == (b.best_epoch, b.n_train, b.n_validation)


# --- determinism and quality ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_same_seed_gives_bitwise_identical_runs(kind: Kind) -> None:
    first, second, third = _run(kind), _run(kind), _run(kind)
    _assert_same_run(first, second)
    _assert_same_run(first, third)
    assert first.metrics == second.metrics


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_different_seed_gives_different_weights(kind: Kind) -> None:
    a, b = _run(kind, seed=0), _run(kind, seed=1)
    assert not np.array_equal(a.weights, b.weights)
    assert _without_time(a.history) != _without_time(b.history)


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_learns_the_separable_synthetic_set(kind: Kind) -> None:
    result = _run(kind)
    k = 10 if kind == "softmax" else 1
    assert result.weights.shape == (784, k)
    assert result.weights.dtype == np.float32
    assert result.bias.shape == (k,)
    assert result.bias.dtype == np.float32
    assert set(result.metrics) == {"train", "validation", "test"}
    assert result.metrics["test"]["accuracy"] >= 0.95
    assert result.metrics["train"]["accuracy"] >= 0.95
    if kind == "binary":
        assert result.metrics["test"]["roc_auc"] >= 0.99
    select = [r for r in result.history if r.phase == "select"]
    assert select[-1].train_loss < select[0].train_loss


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_folded_weights_on_raw_pixels_reproduce_the_reported_metrics(kind: Kind) -> None:
    images, targets, (test_images, test_y) = _data(kind)
    result = _run(kind)
    # the artifact's contract, in plain NumPy: logits = (pixels / 255) @ weights + bias
    test_scores = (test_images / 255.0) @ result.weights + result.bias
    measured = evaluate(kind, test_scores, test_y)
    assert measured["accuracy"] == result.metrics["test"]["accuracy"]
    assert measured["loss"] == pytest.approx(result.metrics["test"]["loss"], rel=1e-3, abs=1e-5)
    train_scores = logits(result.weights, result.bias, pixels_to_features(images))
    assert evaluate(kind, train_scores, targets)["accuracy"] == result.metrics["train"]["accuracy"]


# --- selection and refit ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_history_is_a_selection_run_then_a_refit_of_best_epoch_epochs(kind: Kind) -> None:
    result = _run(kind, epochs=5)
    select = [r for r in result.history if r.phase == "select"]
    refit = [r for r in result.history if r.phase == "refit"]
    assert result.history == (*select, *refit)  # in that order
    assert [(r.epoch, r.epochs) for r in select] == [(e, 5) for e in range(1, 6)]
    val_losses = [r.validation_loss for r in select]
    assert None not in val_losses
    assert all(r.validation_accuracy is not None for r in select)
    best = 1 + int(np.argmin(np.array(val_losses, dtype=np.float64)))
    assert result.best_epoch == best
    assert [(r.epoch, r.epochs) for r in refit] == [(e, best) for e in range(1, best + 1)]
    assert all(r.validation_loss is None and r.validation_accuracy is None for r in refit)
    assert all(r.test_loss is not None and r.test_accuracy is not None for r in result.history)
    assert all(r.seconds >= 0 and r.learning_rate >= 0 for r in result.history)
    # the reported figures: validation of the chosen epoch, test of the refit model
    assert result.metrics["validation"]["epoch"] == best
    assert result.metrics["validation"]["loss"] == select[best - 1].validation_loss
    assert result.metrics["test"]["loss"] == refit[-1].test_loss
    assert result.n_train == N_TRAIN
    assert result.n_validation == N_TRAIN // 5


def test_without_refit_the_model_is_the_chosen_epochs_and_n_train_excludes_validation() -> None:
    result = _run("softmax", refit=False, epochs=5)
    assert {r.phase for r in result.history} == {"select"}
    assert len(result.history) == 5
    assert result.n_validation == N_TRAIN // 5
    assert result.n_train == N_TRAIN - result.n_validation
    chosen = result.history[result.best_epoch - 1]
    assert result.metrics["test"]["loss"] == chosen.test_loss
    assert result.metrics["test"]["accuracy"] == chosen.test_accuracy


def test_no_validation_means_no_selection_metrics_and_no_refit() -> None:
    result = _run("softmax", validation_fraction=0.0, epochs=3)
    assert set(result.metrics) == {"train", "test"}
    assert [r.phase for r in result.history] == ["select"] * 3
    assert all(r.validation_loss is None for r in result.history)
    assert all(r.test_loss is not None for r in result.history)
    assert result.best_epoch == 3  # the last epoch: the test set must not pick one
    assert (result.n_train, result.n_validation) == (N_TRAIN, 0)
    assert result.metrics["test"]["loss"] == result.history[-1].test_loss


def test_without_a_test_set_nothing_reports_test() -> None:
    images, targets, _ = _data("softmax")
    result = fit(_config("softmax", epochs=2), images, targets, n_outputs=10)
    assert set(result.metrics) == {"train", "validation"}
    assert all(r.test_loss is None and r.test_accuracy is None for r in result.history)


@pytest.mark.parametrize("kind", ["softmax", "binary"])
@pytest.mark.parametrize("refit", [True, False])
def test_test_labels_never_influence_training(kind: Kind, refit: bool) -> None:
    """A test set with wrong labels changes the test figures and nothing else."""
    _, _, (_, test_y) = _data(kind)
    wrong = (test_y + 1) % 10 if kind == "softmax" else 1 - test_y
    right_run = _run(kind, refit=refit, epochs=5, learning_rate=0.01)
    wrong_run = _run(kind, test_targets=wrong.astype(np.intp), refit=refit, epochs=5,
                     learning_rate=0.01)  # fmt: skip
    assert wrong_run.best_epoch == right_run.best_epoch
    assert wrong_run.weights.tobytes() == right_run.weights.tobytes()
    assert wrong_run.bias.tobytes() == right_run.bias.tobytes()
    assert wrong_run.metrics["validation"] == right_run.metrics["validation"]
    assert wrong_run.metrics["train"] == right_run.metrics["train"]
    assert wrong_run.metrics["test"]["accuracy"] < 0.5 < right_run.metrics["test"]["accuracy"]
    # and the wrong test labels would have chosen another epoch, had they been asked
    select = [r for r in wrong_run.history if r.phase == "select"]
    by_test = 1 + int(np.argmin([r.test_loss or 0.0 for r in select]))
    assert by_test != wrong_run.best_epoch


def test_split_validation_is_stratified_disjoint_and_seeded() -> None:
    y = np.repeat(np.arange(4), [10, 25, 9, 100]).astype(np.intp)
    np.random.default_rng(0).shuffle(y)
    train, val = split_validation(y, 0.2, np.random.default_rng(5))
    assert train.dtype == np.intp
    assert val.dtype == np.intp
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    assert list(np.bincount(y[val], minlength=4)) == [2, 5, 2, 20]  # nearest whole share
    assert list(val) == sorted(val)
    again = split_validation(y, 0.2, np.random.default_rng(5))
    np.testing.assert_array_equal(again[1], val)
    other = split_validation(y, 0.2, np.random.default_rng(6))
    assert not np.array_equal(other[1], val)
    all_train, none = split_validation(y, 0.0, np.random.default_rng(5))
    assert none.size == 0
    np.testing.assert_array_equal(all_train, np.arange(len(y)))


# --- callbacks --------------------------------------------------------------------------------


def test_progress_gets_one_event_per_batch_and_a_record_per_epoch() -> None:
    images, targets, test = _data("softmax")
    events: list[Progress] = []
    result = fit(_config("softmax"), images, targets, test, n_outputs=10, progress=events.append)
    select_batches, refit_batches = -(-480 // 50), -(-600 // 50)
    expected = [
        ("select", epoch, 4, batch, select_batches)
        for epoch in range(1, 5)
        for batch in range(1, select_batches + 1)
    ] + [
        ("refit", epoch, result.best_epoch, batch, refit_batches)
        for epoch in range(1, result.best_epoch + 1)
        for batch in range(1, refit_batches + 1)
    ]
    assert [(e.phase, e.epoch, e.epochs, e.batch, e.batches) for e in events] == expected
    records = [e.record for e in events if e.record is not None]
    assert records == list(result.history)
    assert all((e.record is not None) == (e.batch == e.batches) for e in events)


@pytest.mark.parametrize(
    ("calls_allowed", "where"),
    [
        (0, "select epoch 1, batch 1"),
        (13, "select epoch 2, batch 4"),
        (42, "refit epoch 1, batch 3"),
    ],
)
def test_should_stop_cancels_between_batches(calls_allowed: int, where: str) -> None:
    images, targets, test = _data("softmax")
    calls: list[int] = []
    events: list[Progress] = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > calls_allowed

    with pytest.raises(Cancelled, match=f"^cancelled in {where}$"):
        fit(
            _config("softmax"), images, targets, test, n_outputs=10,
            progress=events.append, should_stop=should_stop,
        )  # fmt: skip
    assert len(calls) == calls_allowed + 1  # asked once per batch, and nothing after the stop
    assert len(events) == calls_allowed  # every batch that ran was reported


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_a_diverging_run_stops_with_a_training_error_naming_the_fix(kind: Kind) -> None:
    with pytest.raises(TrainingError, match=r"diverged in select epoch 1, batch \d+ .*lower the"):
        _run(kind, learning_rate=100.0, l2=100.0, batch_size=8)


def test_trainer_errors_survive_pickling_to_a_parent_process() -> None:
    for error in (TrainingError("diverged"), Cancelled("stop"), ConfigError("bad"),
                  DataError("gone")):  # fmt: skip
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert isinstance(copy, TrainerError)


def test_contrast_jitter_changes_training_and_stays_deterministic() -> None:
    plain, jittered = _run("softmax", contrast=0.0), _run("softmax", contrast=0.3)
    assert not np.array_equal(plain.weights, jittered.weights)
    _assert_same_run(jittered, _run("softmax", contrast=0.3))
