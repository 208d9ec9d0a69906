"""How far to trust each answer: the out-of-distribution assessment of every image.

The statistics and thresholds are the artifact's (`trainer.ood`, fitted by the trainer on data the
weights were not fitted on); this module applies them to a request's pixels and words the reasons.
A `Detector` holds one model version's statistics beside its weights, so that one matrix product
gives the logits, the projections and the edge bands together: one pass over the pixels, which is
what keeps the assessment within its cost cap (bench.serve's OOD rows).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trainer import ood
from trainer.contract import PIXEL_MAX

__all__ = ["Assessment", "Detector", "OneAssessment", "detector_for", "status"]

_ARRAYS = ("mean", "components", "variances")  # what /models leaves out of the ood block

_WORDS = {
    "distance": "unlike the training images (distance {value:.2f}; flagged above {limit:.2f})",
    "border": "a light background: Fashion-MNIST items are light on a dark one",
    "reach": "the item does not reach two opposite edges (it is small, or there is none); "
    "training items fill the frame",
    "dark_top": "no black background at the top of the image, as in a photo",
}
_INVERTED = "dark item on a light background"
_CENTRE = np.array([r * 28 + c for r in range(10, 18) for c in range(10, 18)])
_DARK_BYTES = bytes(range(ood.DARK + 1))  # deleted from a row's bytes, the rest are not dark


class Assessment:
    """A batch's assessment: per image, the score, whether any check flags it, and each check's
    values and flags (NumPy arrays). The score is computed when first asked for: a raw answer
    never asks."""

    __slots__ = ("_checks", "_detector", "_flag", "_pixels", "_score", "_values")

    def __init__(
        self, detector: Detector, values: dict[str, NDArray[Any]],
        checks: dict[str, NDArray[np.bool_]], flag: NDArray[np.bool_], pixels: NDArray[Any],
    ) -> None:  # fmt: skip
        self._detector, self._values, self._checks = detector, values, checks
        self._flag, self._pixels = flag, pixels
        self._score: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self._flag)

    def score_array(self) -> NDArray[np.float64]:
        if self._score is None:
            self._score = self._detector.stats.score(self._values)
        return self._score

    def flag_array(self) -> NDArray[np.bool_]:
        return self._flag

    def scores(self) -> list[float]:
        """Each image's score, to 3 decimals."""
        rounded: list[float] = np.round(self.score_array(), 3).tolist()
        return rounded

    def flags(self) -> list[bool]:
        flags: list[bool] = self._flag.tolist()
        return flags

    def count(self) -> int:
        """How many images are flagged."""
        return int(np.count_nonzero(self._flag))

    def flagged(self) -> list[int]:
        """The indices of the flagged images."""
        indices: list[int] = np.flatnonzero(self._flag).tolist()
        return indices

    def flagged_ranges(self) -> str:
        """The flagged images' indices, runs of neighbours as ranges: ``"0,3-5,9"`` (empty:
        none), which keeps a header short however many are flagged."""
        runs: list[str] = []
        indices = self.flagged()
        start = 0
        for i in range(1, len(indices) + 1):
            if i == len(indices) or indices[i] != indices[i - 1] + 1:
                first, last = indices[start], indices[i - 1]
                runs.append(str(first) if first == last else f"{first}-{last}")
                start = i
        return ",".join(runs)

    def reasons(self, index: int) -> list[str]:
        """Why image ``index`` is flagged, in words (empty: it is not)."""
        values = {name: float(v[index]) for name, v in self._values.items()}
        flagged = [name for name, f in self._checks.items() if f[index]]
        return self._detector.words(values, flagged, self._pixels[index])


class OneAssessment(Assessment):
    """One image's assessment, in Python floats: what a one-image answer needs, made with no
    NumPy call (a dozen on arrays this small would cost more than the prediction)."""

    __slots__ = ("_one_flag", "_one_score", "_one_values")

    def __init__(
        self, detector: Detector, values: tuple[float, float, float, float], score: float,
        flag: bool, pixels: NDArray[Any],
    ) -> None:  # fmt: skip
        self._detector, self._pixels = detector, pixels
        self._one_values, self._one_score, self._one_flag = values, score, flag

    def __len__(self) -> int:
        return 1

    def score_array(self) -> NDArray[np.float64]:
        return np.array([self._one_score])

    def flag_array(self) -> NDArray[np.bool_]:
        return np.array([self._one_flag])

    def scores(self) -> list[float]:
        return [round(self._one_score, 3)]

    def flags(self) -> list[bool]:
        return [self._one_flag]

    def count(self) -> int:
        return int(self._one_flag)

    def flagged(self) -> list[int]:
        return [0] if self._one_flag else []

    def reasons(self, index: int) -> list[str]:
        if index != 0:
            raise IndexError(index)
        values = dict(zip(ood.CHECKS, self._one_values, strict=True))
        limits = self._detector.limits
        flagged = [
            name
            for name, sign in ood.CHECKS.items()
            if (values[name] > limits[name] if sign > 0 else values[name] < limits[name])
        ]
        return self._detector.words(values, flagged, self._pixels[0])


class Detector:
    """One model version's statistics, with its weights alongside them."""

    __slots__ = ("fused", "k", "limits", "offset", "rank", "stats", "ways")

    def __init__(self, stats: ood.OodStats, weights: NDArray[np.float32]) -> None:
        self.stats = stats
        self.k = int(weights.shape[1])
        # [weights | components | bands]: x @ fused is the logits less the bias, then what the
        # checks need (trainer.ood.OodStats.columns): one pass over the pixels for both.
        self.fused = np.ascontiguousarray(
            np.concatenate([weights, stats.columns], axis=1), dtype=np.float32
        )
        self.rank = stats.rank
        self.offset: list[float] = stats.offset.tolist()
        self.limits = stats.thresholds
        # per check, in CHECKS order: its typical value and 1 / its signed way to its threshold
        self.ways = [
            (stats.typical[name], sign / ood.way(stats, name, sign))
            for name, sign in ood.CHECKS.items()
        ]

    def logits_and_assessment(
        self, pixels: NDArray[Any], X: NDArray[np.float32], bias: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], Assessment]:
        """The logits of ``X`` (pixels / 255) and the assessment of ``pixels``."""
        product = X @ self.fused
        k = self.k
        logits = product[:, :k] + bias
        if len(product) == 1:
            return logits, self._assess_one(pixels, product[0, k:].tolist())
        values = self.stats.measure(pixels, product[:, k:])
        checks = self.stats.flags(values)
        distance, border, reach, dark_top = checks.values()
        flag = distance | border | reach | dark_top
        return logits, Assessment(self, values, checks, flag, pixels)

    def _assess_one(self, pixels: NDArray[Any], row: list[float]) -> OneAssessment:
        """`OodStats.measure`, `flags` and `score` for one image, in Python floats."""
        rank, offset = self.rank, self.offset
        z = row[0] - offset[0]
        d2 = z * z
        for j in range(1, rank):
            z = row[j] - offset[j]
            d2 += z * z
        top, bottom, left, right = row[rank:]
        edge = pixels[0, : ood.TOP]
        if edge.dtype == np.uint8:
            dark_count = ood.TOP - len(edge.tobytes().translate(None, _DARK_BYTES))
        else:
            dark_count = int(np.count_nonzero(edge < ood.DARK + 0.5))
        distance = math.sqrt(d2 / rank)
        border = (top + bottom + left + right) * 0.25
        reach = max(min(top, bottom), min(left, right))
        dark_top = dark_count / ood.TOP
        limits = self.limits
        flag = (
            distance > limits["distance"] or border > limits["border"]
            or reach < limits["reach"] or dark_top < limits["dark_top"]
        )  # fmt: skip
        (t0, w0), (t1, w1), (t2, w2), (t3, w3) = self.ways
        score = max(
            (distance - t0) * w0, (border - t1) * w1, (reach - t2) * w2, (dark_top - t3) * w3
        )
        values = (distance, border, reach, dark_top)
        return OneAssessment(self, values, score, flag, pixels)

    def words(self, values: dict[str, float], flagged: list[str], image: NDArray[Any]) -> list[str]:
        """The reasons, in words, for one image's ``flagged`` checks."""
        words = [
            _WORDS[name].format(value=values[name], limit=self.limits[name]) for name in flagged
        ]
        if "border" in flagged:
            centre = float(image[_CENTRE].mean()) / PIXEL_MAX
            if centre < values["border"]:
                words[flagged.index("border")] = _INVERTED
            if "dark_top" in flagged:  # a light frame is no black one: said once
                del words[flagged.index("dark_top")]
        return words


def detector_for(
    meta: dict[str, Any], weights: NDArray[np.float32]
) -> tuple[Detector | None, str | None]:
    """An artifact's detector, or None and why flagging is off for it."""
    block = meta.get("ood")
    if block is None:
        return None, (
            "the artifact has no out-of-distribution statistics (made before softserve computed "
            "them, or trained without a validation split): retrain it to turn flagging on"
        )
    try:
        return Detector(ood.from_meta(block), weights), None
    except ood.OodMetaError as e:
        return None, f"its out-of-distribution statistics cannot be used: {e}"


def status(
    detector: Detector | None, no_detector: str | None, enabled: bool, block: Any = None
) -> dict[str, Any]:
    """Whether a served version's answers are assessed, at what expected false-alarm rate, and
    why not if they are not; with ``block`` (the artifact's ood meta), its figures too, less its
    arrays."""
    if not enabled:
        reason: str | None = "out-of-distribution flagging is off (SOFTSERVE_OOD)"
    else:
        reason = None if detector is not None else no_detector
    out: dict[str, Any] = {}
    if isinstance(block, dict):
        out = {key: value for key, value in block.items() if key not in _ARRAYS}
    return out | {
        "enabled": reason is None,
        "expected_rate": detector.stats.rate if detector is not None else None,
        "reason": reason,
    }
