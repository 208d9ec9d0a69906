"""The out-of-distribution statistics (trainer.ood): the distance against a by-hand NumPy
computation, the thresholds at the chosen rate, the meta block's round trip and its checks; and,
on the real Fashion-MNIST, the shipped model's flag rates against the targets."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.support import strangers
from tests.synthetic import make_images
from trainer.artifacts import load
from trainer.data import load_dataset
from trainer.ood import CHECKS, RATE, OodMetaError, OodStats, dark_count, fit_ood, from_meta

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def fitted() -> tuple[OodStats, NDArray[np.uint8]]:
    images, _ = make_images(3000, 10, 0)
    flat = images.reshape(len(images), 784)
    return fit_ood(flat[:2000], flat[2000:], rank=4, rate=0.02), flat[2000:]


def any_flag(stats: OodStats, pixels: NDArray[Any]) -> NDArray[np.bool_]:
    flags = list(stats.flags(stats.measure(pixels)).values())
    return np.asarray(np.logical_or.reduce(flags), dtype=bool)


def test_each_check_is_its_documented_formula(fitted: tuple[OodStats, Any]) -> None:
    stats, validation = fitted
    images = validation[:50]
    x = images.astype(np.float64) / 255
    z = (x - stats.mean) @ stats.components.astype(np.float64)
    measured = stats.measure(images)
    np.testing.assert_allclose(
        measured["distance"], np.sqrt((z**2 / stats.variances).mean(axis=1)), rtol=1e-4
    )
    square = x.reshape(-1, 28, 28)
    top, bottom = square[:, :2].mean(axis=(1, 2)), square[:, -2:].mean(axis=(1, 2))
    left, right = square[:, :, :2].mean(axis=(1, 2)), square[:, :, -2:].mean(axis=(1, 2))
    np.testing.assert_allclose(measured["border"], (top + bottom + left + right) / 4, atol=1e-6)
    np.testing.assert_allclose(
        measured["reach"],
        np.maximum(np.minimum(top, bottom), np.minimum(left, right)),
        atol=1e-6,
    )
    np.testing.assert_allclose(measured["dark_top"], (images[:, :56] <= 8).mean(axis=1))
    assert all(v.dtype == np.float64 for v in measured.values())


def test_reach_is_zero_for_an_item_that_touches_no_edge() -> None:
    stats = fit_ood(np.zeros((10, 784), np.uint8), np.zeros((0, 784), np.uint8), rank=2)
    image = np.zeros((28, 28), np.uint8)
    image[5:20, 3:25] = 200  # a block in the middle: no band holds any of it
    tall = np.zeros((28, 28), np.uint8)
    tall[:, 12:16] = 255  # top to bottom: both the top and the bottom band are lit
    measured = stats.measure(np.stack([image.reshape(-1), tall.reshape(-1)]))
    assert measured["reach"][0] == 0
    assert measured["reach"][1] == pytest.approx(4 * 2 / 56)


def test_the_thresholds_flag_the_chosen_rate_of_the_held_out_rows(
    fitted: tuple[OodStats, NDArray[np.uint8]],
) -> None:
    stats, validation = fitted
    assert stats.rate == 0.02
    assert abs(any_flag(stats, validation).mean() - 0.02) <= 2 / len(validation)
    assert stats.validation_rate == pytest.approx(any_flag(stats, validation).mean())
    for name, sign in CHECKS.items():  # each check flags its own side only
        assert np.isfinite(stats.thresholds[name]), name
        assert sign in (1, -1)


def test_the_meta_block_round_trips(fitted: tuple[OodStats, NDArray[np.uint8]]) -> None:
    stats, validation = fitted
    meta = stats.to_meta()
    assert meta["fitted_on"] == "train" and meta["thresholds_from"] == "validation"
    back = from_meta(meta)
    for name, values in stats.measure(validation).items():
        np.testing.assert_allclose(back.measure(validation)[name], values, rtol=1e-6)
    assert back.thresholds == stats.thresholds
    np.testing.assert_array_equal(any_flag(back, validation), any_flag(stats, validation))


def _broken(meta: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**meta, key: value}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("method", "other", "method"),
        ("encoding", "decimal", "encoding"),
        ("border", 3, "border"),
        ("rank", 0, "rank"),
        ("mean", "not base64!", "not valid base64"),
        ("mean", base64.b64encode(b"\0" * 10).decode(), "bytes where"),
        ("mean", base64.b64encode(np.full(784, np.inf, "<f2").tobytes()).decode(), "not finite"),
        ("variances", base64.b64encode(np.zeros(4, "<f2").tobytes()).decode(), "positive"),
        ("thresholds", {"distance": 1.0}, "thresholds must name"),
        ("rate", "x", "malformed"),
        ("prior", [2.0], "prior"),
    ],
)
def test_a_damaged_block_is_refused_with_the_reason(
    fitted: tuple[OodStats, Any], key: str, value: Any, message: str
) -> None:
    with pytest.raises(OodMetaError, match=message):
        from_meta(_broken(fitted[0].to_meta(), key, value))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["softmax", "binary"])
def test_the_shipped_models_flags_meet_the_targets(real_data_dir: Path, model: str) -> None:
    """The issue's targets, measured on the real data with each shipped model's block."""
    stats = from_meta(load(MODELS / f"{model}.npz").meta["ood"])
    test = load_dataset(real_data_dir).test_images
    rates = {
        "test": any_flag(stats, test).mean(),
        "inverted": any_flag(stats, strangers.inverted(test)).mean(),
        "noise": any_flag(stats, strangers.noise(5000)).mean(),
        "glyphs": any_flag(stats, strangers.glyphs()).mean(),
        "photos": any_flag(stats, strangers.photos()).mean(),
        "unit scale": any_flag(stats, np.round(test / 255.0, 6) * 255).mean(),
    }
    assert stats.rate == RATE
    assert abs(rates["test"] - RATE) <= 0.003, rates
    for name in ("inverted", "noise", "glyphs", "photos"):
        assert rates[name] >= 0.95, (name, rates)
    assert rates["unit scale"] <= rates["test"], rates


def test_the_score_passes_1_exactly_where_a_check_flags(
    fitted: tuple[OodStats, NDArray[np.uint8]],
) -> None:
    stats, validation = fitted
    pixels = np.vstack([validation, strangers.noise(50), strangers.glyphs()[:50]])
    values = stats.measure(pixels)
    score = stats.score(values)
    flagged = any_flag(stats, pixels)
    assert flagged.sum() > 60
    np.testing.assert_array_equal(score > 1, flagged)
    assert np.median(stats.score(stats.measure(validation))) < 0.8  # well inside the limits


def test_the_dark_count_counts_the_top_rows_black_pixels() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 20, (500, 784), dtype=np.uint8)
    expected = (pixels[:, :56] <= 8).sum(axis=1)
    np.testing.assert_array_equal(dark_count(pixels), expected)
    scaled_back = (pixels / 255.0) * 255  # ?scale=unit: 8/255 * 255 need not be 8 exactly
    np.testing.assert_array_equal(dark_count(scaled_back), expected)
    assert dark_count(np.zeros((1, 784), np.uint8)).tolist() == [56]


def test_the_block_holds_the_drift_references() -> None:
    images, labels = make_images(1200, 10, 1)
    flat = images.reshape(len(images), 784)
    stats = fit_ood(flat[:1000], flat[1000:], labels=labels[:1000], n_classes=10)
    counts = np.bincount(labels[:1000], minlength=10)
    assert stats.prior == pytest.approx(tuple(counts / counts.sum()))
    assert stats.intensity == pytest.approx(flat[:1000].mean() / 255, rel=1e-3)
    back = from_meta(stats.to_meta())
    assert back.prior == pytest.approx(stats.prior) and back.intensity == stats.intensity
