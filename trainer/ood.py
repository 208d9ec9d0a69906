"""How unlike the training images an input is: statistics the trainer fits and the service applies.

A linear softmax is most confident far from its training data (inverted images and uniform noise
get a top probability near 1), so its probabilities cannot say when not to trust them. Four checks
on the pixels can, each a number per image with a one-sided threshold. All but one are linear in
``x = pixels / 255``, so that the service gets them from the same matrix product as the logits
(`columns`): the assessment costs a few more columns, not another pass over the pixels.

- **distance**: the Mahalanobis distance of ``x`` from the training images in their top ``rank``
  principal components, ``sqrt(mean_j(z_j^2 / variances_j))`` with
  ``z = (x - mean) @ components``: about 1 for a typical training image.
- **border**: the mean brightness (0..1) of the four ``BORDER``-pixel bands along the edges (top,
  bottom, left, right; the corners are in two bands each). Fashion-MNIST items are light on a dark
  background; a light frame is a photo or an inverted image.
- **reach**: how far the item reaches to opposite edges: the larger of min(top, bottom) and
  min(left, right) band brightness. Fashion-MNIST items are scaled to fill the frame in one
  direction at least; a letter or a digit drawn at a text size, or an empty image, reaches neither.
- **dark_top**: the share of the top ``BORDER`` rows' pixels that are black (at most ``DARK`` of
  255). Fashion-MNIST's background is black; a photo has almost no black pixels, however dark it
  is. The one check that is not linear: a comparison of ``BORDER * 28`` pixels.

The statistics are fitted on the selection run's training rows. The thresholds come from rows the
weights are not fitted on in the selection run, the validation split, never the test set: each
check but the distance at its ``EDGE_QUANTILE`` (one-sided), then the distance's at the quantile
that makes the four together flag ``rate`` of the validation images.

One **score** sums them up: how far each check's value is from the validation images' median
(``typical``) towards its threshold, as a fraction of that way, and the largest of the four. An
image scores above 1 when a check flags it, and the score grows with how far past the threshold
it is (half the Fashion-MNIST test set scores under 0.4).

The block also holds what the service's drift figures compare a window of traffic with: each
class's share of the training rows (``prior``) and their mean pixel intensity (``intensity``).
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from trainer.contract import IMAGE_SHAPE, N_FEATURES, PIXEL_MAX

__all__ = [
    "BORDER",
    "CHECKS",
    "DARK",
    "EDGE_QUANTILE",
    "METHOD",
    "RANK",
    "RATE",
    "OodMetaError",
    "OodStats",
    "dark_count",
    "fit_ood",
    "from_meta",
    "way",
]

METHOD = "pca-distance+border+reach+dark-top"
RANK = 2  # principal components: 10 weights + 2 + 4 bands = 16 columns, what fits the cost cap
RATE = 0.005  # the chosen false-alarm rate: the 99.5th percentile of held-out images
BORDER = 2  # pixels of each band along an edge
DARK = 8  # a pixel at most this bright (of 255) is background
EDGE_QUANTILE = 0.001  # the one-sided quantile of each check but the distance
# Each check, and whether a value above (+1) or below (-1) its threshold is flagged.
CHECKS = {"distance": 1, "border": 1, "reach": -1, "dark_top": -1}
N_BANDS = 4  # top, bottom, left, right
TOP = BORDER * IMAGE_SHAPE[1]  # the first TOP pixels of an image are its top BORDER rows
_CHUNK = 4096
# The arrays go into meta as base64 of little-endian float16: about 2,100 characters per 784
# values, where decimal text would take 8,000 and more (meta is stored as UTF-32). The thresholds
# are fitted on the statistics after that rounding, so the stored ones reproduce them.
_STORED = np.dtype("<f2")


def _bands() -> NDArray[np.float32]:
    """(784, 4): each column averages one band of x (top, bottom, left, right)."""
    rows, cols = IMAGE_SHAPE
    masks = np.zeros((N_BANDS, rows, cols), dtype=np.float32)
    masks[0, :BORDER, :] = masks[1, rows - BORDER :, :] = 1
    masks[2, :, :BORDER] = masks[3, :, cols - BORDER :] = 1
    flat = masks.reshape(N_BANDS, -1)
    return np.ascontiguousarray((flat / flat.sum(axis=1, keepdims=True)).T)


BANDS = _bands()


@dataclass(frozen=True)
class OodStats:
    mean: NDArray[np.float32]  # (784,), of x = pixels / 255
    components: NDArray[np.float32]  # (784, rank), orthonormal columns
    variances: NDArray[np.float32]  # (rank,)
    thresholds: dict[str, float]  # per check (CHECKS); inf/-inf: never flags
    typical: dict[str, float]  # per check: the median over the validation split
    rate: float  # the chosen false-alarm rate
    validation_rate: float  # what the thresholds flag on the validation split
    n_train: int
    n_validation: int
    prior: tuple[float, ...] = ()  # each class's share of the training rows
    intensity: float = 0.0  # the training rows' mean pixel, 0..1
    # x @ columns: (N, rank + 4), the whitened projections (less ``offset``) and the bands
    columns: NDArray[np.float32] = field(init=False)  # [components / sqrt(variances) | BANDS]
    offset: NDArray[np.float32] = field(init=False)  # mean @ components / sqrt(variances)

    def __post_init__(self) -> None:
        whiten = (self.components / np.sqrt(self.variances)).astype(np.float32)
        columns = np.ascontiguousarray(np.concatenate([whiten, BANDS], axis=1), dtype=np.float32)
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "offset", (self.mean @ whiten).astype(np.float32))

    @property
    def rank(self) -> int:
        return int(self.components.shape[1])

    def measure(
        self, pixels: NDArray[Any], product: NDArray[np.float32] | None = None
    ) -> dict[str, NDArray[np.float64]]:
        """Each check's (N,) values for (N, 784) pixels 0..255. ``product``, ``x @ columns``
        with ``x = pixels / 255``, may come computed, as the service's one matrix product with
        the weights gives it."""
        if product is None:
            x = np.asarray(pixels, dtype=np.float32) / np.float32(PIXEL_MAX)
            product = np.asarray(x @ self.columns, dtype=np.float32)
        # In float64, operation for operation as the service's one-image path does it in Python
        # floats, so that both give the same flags at a threshold; column by column, since
        # NumPy's reductions along an axis this short cost more than this.
        rank = self.rank
        z = product[:, :rank].astype(np.float64) - self.offset.astype(np.float64)
        d2 = z[:, 0] * z[:, 0]
        for j in range(1, rank):
            d2 += z[:, j] * z[:, j]
        bands = product[:, rank:].astype(np.float64)
        top, bottom, left, right = (bands[:, i] for i in range(N_BANDS))
        return {
            "distance": np.sqrt(d2 / rank),
            "border": (top + bottom + left + right) * 0.25,
            "reach": np.maximum(np.minimum(top, bottom), np.minimum(left, right)),
            "dark_top": dark_count(pixels) / TOP,
        }

    def score(self, values: dict[str, NDArray[Any]]) -> NDArray[np.float64]:
        """(N,) the largest of each check's way from typical to its threshold (see the module)."""
        score: NDArray[np.float64] | None = None
        for name, sign in CHECKS.items():
            part = (values[name] - self.typical[name]) * (sign / way(self, name, sign))
            score = part if score is None else np.maximum(score, part)
        return np.asarray(score, dtype=np.float64)

    def flags(self, values: dict[str, NDArray[Any]]) -> dict[str, NDArray[np.bool_]]:
        """Each check's (N,) flags."""
        return {
            name: (values[name] > limit) if sign > 0 else (values[name] < limit)
            for name, sign in CHECKS.items()
            for limit in (self.thresholds[name],)
        }

    def to_meta(self) -> dict[str, Any]:
        return {
            "method": METHOD,
            "rank": self.rank,
            "border": BORDER,
            "dark": DARK,
            "encoding": "base64 <f2",
            "mean": _encode(self.mean),
            "components": _encode(self.components.T),  # rank rows of 784, row-major
            "variances": _encode(self.variances),
            "thresholds": {k: _finite_or_none(v) for k, v in self.thresholds.items()},
            "typical": dict(self.typical),
            "rate": self.rate,
            "validation_rate": self.validation_rate,
            "fitted_on": "train",
            "thresholds_from": "validation",
            "n_train": self.n_train,
            "n_validation": self.n_validation,
            "prior": list(self.prior),
            "intensity": self.intensity,
        }


def dark_count(pixels: NDArray[Any]) -> NDArray[np.float64]:
    """(N,) how many of each image's top ``TOP`` pixels are at most ``DARK`` (float pixels: below
    ``DARK + 0.5``, so that 8/255 scaled back by 255 still counts)."""
    top = pixels[:, :TOP]
    dark = top <= DARK if top.dtype == np.uint8 else top < DARK + 0.5  # (N, 56), a byte each
    # Summing the bytes as uint64 words adds 8 pixels per addition; no byte of the sum passes
    # 7, so one multiplication then adds a sum's 8 bytes up in its top byte.
    words = np.ascontiguousarray(dark).view(np.uint64).sum(axis=1, dtype=np.uint64)
    count = (words * np.uint64(0x0101010101010101)) >> np.uint64(56)
    return np.asarray(count, dtype=np.float64)


def way(stats: OodStats, name: str, sign: int) -> float:
    """How far check ``name``'s threshold is from its typical value, on its flagged side (inf
    when it never flags, so its part of the score is 0)."""
    return max((stats.thresholds[name] - stats.typical[name]) * sign, 1e-12)


def _encode(array: NDArray[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=_STORED).tobytes()).decode()


def _stored(array: NDArray[Any]) -> NDArray[np.float32]:
    """``array`` as meta will hold it: rounded to float16."""
    return np.asarray(array).astype(_STORED).astype(np.float32)


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def fit_ood(
    train: NDArray[np.uint8],
    validation: NDArray[np.uint8],
    *,
    labels: NDArray[np.integer[Any]] | None = None,
    n_classes: int = 0,
    rank: int = RANK,
    rate: float = RATE,
) -> OodStats:
    """Fit the statistics on ``train`` images (N, 784) and the thresholds on ``validation``;
    ``labels`` (the train rows' classes, 0..n_classes-1) give the prior."""
    n = len(train)
    total = np.zeros(N_FEATURES)
    for start in range(0, n, _CHUNK):
        total += train[start : start + _CHUNK].sum(axis=0, dtype=np.float64)
    mean = total / max(n, 1) / PIXEL_MAX
    scatter = np.zeros((N_FEATURES, N_FEATURES))
    for start in range(0, n, _CHUNK):
        part = train[start : start + _CHUNK].astype(np.float64) / PIXEL_MAX - mean
        scatter += part.T @ part
    values, vectors = np.linalg.eigh(scatter / max(n - 1, 1))  # ascending
    order = np.argsort(values)[::-1][:rank]
    prior: tuple[float, ...] = ()
    if labels is not None and n_classes > 0 and len(labels):
        counts = np.bincount(np.asarray(labels, dtype=np.intp), minlength=n_classes)
        prior = tuple(float(c) for c in counts / counts.sum())
    unset = {name: np.inf * sign for name, sign in CHECKS.items()}
    stats = OodStats(
        _stored(mean), np.ascontiguousarray(_stored(vectors[:, order])),
        _stored(np.maximum(values[order], 1e-6)), unset, dict.fromkeys(CHECKS, 0.0), rate, 0.0,
        n, len(validation), prior, float(mean.mean()),
    )  # fmt: skip
    if not len(validation):
        return stats
    values_ = stats.measure(validation)
    stats = dataclasses.replace(
        stats, typical={name: float(np.median(values_[name])) for name in CHECKS}
    )
    thresholds = dict(unset)
    for name, sign in CHECKS.items():
        if name != "distance":
            q = 1 - EDGE_QUANTILE if sign > 0 else EDGE_QUANTILE
            thresholds[name] = float(np.quantile(values_[name], q))
    edges = np.zeros(len(validation), dtype=bool)
    for name, flagged in OodStats.flags(_with(stats, thresholds), values_).items():
        if name != "distance":
            edges |= flagged
    left = values_["distance"][~edges]
    # the distance's share of the rate: what the other checks leave of it, among the rows left
    share = max(rate * len(validation) - int(edges.sum()), 0.0) / max(len(left), 1)
    thresholds["distance"] = float(np.quantile(left, 1 - share)) if len(left) else np.inf
    fitted = _with(stats, thresholds)
    flagged_any = np.zeros(len(validation), dtype=bool)
    for flagged in fitted.flags(values_).values():
        flagged_any |= flagged
    return _with(fitted, thresholds, validation_rate=float(flagged_any.mean()))


def _with(stats: OodStats, thresholds: dict[str, float], **changes: Any) -> OodStats:
    return dataclasses.replace(stats, thresholds=thresholds, **changes)


class OodMetaError(ValueError):
    """An artifact's ``ood`` block that cannot be applied: flagging is off, the model serves."""


def from_meta(meta: Any) -> OodStats:
    """The statistics in an artifact's ``ood`` block, checked: OodMetaError says what is wrong."""
    if not isinstance(meta, dict):
        raise OodMetaError("the ood block is not an object")
    if meta.get("method") != METHOD:
        raise OodMetaError(
            f"the ood block's method is {str(meta.get('method'))[:40]!r}, not {METHOD!r}"
        )
    for key, value in (("border", BORDER), ("dark", DARK)):
        if meta.get(key) != value:
            raise OodMetaError(f"the ood block's {key} is {str(meta.get(key))[:20]}, not {value}")
    if meta.get("encoding") != "base64 <f2":
        raise OodMetaError(f"the ood block's encoding is {str(meta.get('encoding'))[:40]!r}")
    try:
        rank = meta["rank"]
        if not isinstance(rank, int) or not 1 <= rank <= N_FEATURES:
            raise OodMetaError("the ood block's rank must be a whole number from 1 to 784")
        mean = _decoded(meta["mean"], (N_FEATURES,))
        components = np.ascontiguousarray(_decoded(meta["components"], (rank, N_FEATURES)).T)
        variances = _decoded(meta["variances"], (rank,))
        raw = meta["thresholds"]
        if not isinstance(raw, dict) or set(raw) != set(CHECKS):
            raise OodMetaError(f"the ood block's thresholds must name {', '.join(CHECKS)}")
        thresholds = {
            name: (float(raw[name]) if raw[name] is not None else np.inf * sign)
            for name, sign in CHECKS.items()
        }
        typical_ = meta["typical"]
        if not isinstance(typical_, dict) or set(typical_) != set(CHECKS):
            raise OodMetaError(f"the ood block's typical values must name {', '.join(CHECKS)}")
        typical = {name: float(typical_[name]) for name in CHECKS}
        rate, validation_rate = float(meta["rate"]), float(meta["validation_rate"])
        n_train, n_validation = int(meta["n_train"]), int(meta["n_validation"])
        prior = tuple(float(p) for p in meta.get("prior", ()))
        intensity = float(meta.get("intensity", 0.0))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        if isinstance(e, OodMetaError):
            raise
        raise OodMetaError(
            f"the ood block is malformed: {type(e).__name__}: {str(e)[:80]}"
        ) from None
    if not (variances > 0).all():
        raise OodMetaError("the ood block's variances must be positive")
    if not all(np.isfinite(v) for v in typical.values()):
        raise OodMetaError("the ood block's typical values must be finite numbers")
    if any(np.isnan(v) for v in thresholds.values()) or not 0 <= rate <= 1:
        raise OodMetaError("the ood block's thresholds or rate are not numbers")
    if not all(0 <= p <= 1 for p in prior) or not 0 <= intensity <= 1:
        raise OodMetaError("the ood block's prior or intensity is out of 0..1")
    return OodStats(mean, components, variances, thresholds, typical, rate, validation_rate,
                    n_train, n_validation, prior, intensity)  # fmt: skip


def _decoded(value: Any, shape: tuple[int, ...]) -> NDArray[np.float32]:
    if not isinstance(value, str) or len(value) > 4 * N_FEATURES * N_FEATURES:
        raise OodMetaError("the ood block's arrays must be base64 text")
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise OodMetaError("the ood block's arrays are not valid base64") from None
    count = int(np.prod(shape))
    if len(raw) != count * _STORED.itemsize:
        raise OodMetaError(f"the ood block holds {len(raw)} bytes where {shape} needs {count * 2}")
    array = np.frombuffer(raw, dtype=_STORED).astype(np.float32).reshape(shape)
    if not np.isfinite(array).all():
        raise OodMetaError("the ood block's arrays hold a value that is not finite")
    return array
