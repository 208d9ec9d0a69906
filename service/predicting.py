"""The one prediction pipeline: `Predictor.predict` decides every prediction.

Every transport (the FastAPI routes and the fast ASGI path; any other protocol the same way)
parses its request into a `PredictRequest` and a `Payload`, calls `predict`, and renders the
`Prediction` it returns in its own format. The pipeline's steps, in order, so that every
transport reports the same problem first: the model (and version), the options against it, the
pixels (the payload is read only then), the scores, the telemetry.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool

from service import inputs
from service.drift import Drift
from service.errors import InvalidInput, ServiceUnavailable, UnsupportedMediaType
from service.pixels import check_scale
from service.registry import Registry, Served
from service.telemetry import Telemetry
from service.trust import Assessment
from trainer import linear

if TYPE_CHECKING:
    from service.config import Settings

__all__ = [
    "ACCEPTED",
    "JSON",
    "MAX_TOP_K",
    "MULTIPART",
    "RAW",
    "Body",
    "Limits",
    "Payload",
    "PredictRequest",
    "Prediction",
    "Predictor",
    "is_multipart",
    "media_type",
    "off_the_loop_if_large",
]

ACCEPTED = "application/json, application/octet-stream, image/png, image/jpeg, multipart/form-data"
MULTIPART = "multipart/form-data"
JSON = "application/json"
RAW = "application/octet-stream"
IMAGES = ("image/png", "image/jpeg")
T = TypeVar("T")
MAX_TOP_K = 1000
_INLINE_BYTES = 64 * 1024  # bigger JSON bodies are parsed in a thread, off the event loop

log = logging.getLogger("softserve.predicting")


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds every payload is read within (SOFTSERVE_MAX_*)."""

    max_body_bytes: int
    max_batch: int
    max_image_pixels: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_batch, settings.max_image_pixels)


class PredictRequest(NamedTuple):
    """What a caller asks for, besides its pixels."""

    model: str | None = None  # None: the default model (SOFTSERVE_DEFAULT_MODEL)
    version: str | None = None  # None: the active version; else a kept one
    top_k: int | None = None  # also rank the k likeliest classes (softmax models)
    raw: bool = False  # answered as raw float32 probabilities, not JSON
    unit: bool = False  # the pixels are scaled to 0..1 (?scale=unit), not 0..255
    strict: bool = False  # refuse an image flagged as out of distribution (?strict=true)


class Declared(NamedTuple):
    """What a payload itself declares, in its body (V2's request parameters)."""

    unit: bool = False
    strict: bool = False


NOTHING_DECLARED = Declared()


class Payload(Protocol):
    """The pixels of a request, read only when the pipeline asks for them; ``declared``, read
    after them: the options the payload itself declares (V2's request parameters "scale" and
    "strict"), as a `PredictRequest` does for a query."""

    @property
    def declared(self) -> Declared: ...

    async def pixels(self, limits: Limits) -> inputs.Pixels: ...


def is_multipart(content_type: str | None) -> bool:
    """Whether a body is a multipart form (read by Starlette's form parser, not by `Body`)."""
    return content_type is not None and content_type.lower().startswith(MULTIPART)


def media_type(header: str | None) -> str:
    """The media type of a Content-Type header, lowercased; 415 when there is none."""
    if not header:
        raise UnsupportedMediaType(f"missing Content-Type: send one of {ACCEPTED}")
    return header.partition(";")[0].strip().lower()


async def off_the_loop_if_large(parse: Callable[[bytes], T], body: bytes) -> T:
    """``parse(body)``: inline for a body of up to _INLINE_BYTES, in a thread for a larger one,
    whose JSON would hold the event loop up."""
    if len(body) <= _INLINE_BYTES:
        return parse(body)
    return await run_in_threadpool(parse, body)


class Body:
    """A request body of one media type: JSON, raw uint8 pixels, or a PNG or JPEG image. The
    media type is checked before ``read`` is awaited, so an unsupported body is never read."""

    __slots__ = ("content_type", "read")
    declared = NOTHING_DECLARED

    def __init__(self, content_type: str | None, read: Callable[[], Awaitable[bytes]]) -> None:
        self.content_type = content_type
        self.read = read

    async def pixels(self, limits: Limits) -> inputs.Pixels:
        media = media_type(self.content_type)
        if media == JSON:
            batch = limits.max_batch
            body = await self.read()
            parsed = await off_the_loop_if_large(
                lambda b: inputs.from_json(b, max_batch=batch), body
            )
            return parsed[0]
        if media == RAW:
            return inputs.from_raw(await self.read(), max_batch=limits.max_batch)
        if media in IMAGES:
            body = await self.read()
            return await run_in_threadpool(
                inputs.from_image, body, max_pixels=limits.max_image_pixels
            )
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media[:100]!r}: send one of {ACCEPTED}"
        )


class Prediction:
    """What the pipeline decided: which model version answered, and its scores."""

    __slots__ = ("assessment", "logits", "proba", "served", "top_k")

    def __init__(
        self, served: Served, logits: NDArray[np.float32], proba: NDArray[np.float32],
        top_k: int | None, assessment: Assessment | None = None,
    ) -> None:  # fmt: skip
        self.served = served
        self.logits = logits  # (N, K)
        self.proba = proba  # softmax (N, K); binary (N,), of the positive class
        self.top_k = top_k
        self.assessment = assessment  # None: not assessed (``no_assessment`` says why)

    @property
    def no_assessment(self) -> str | None:
        """Why the images were not assessed, if they were not."""
        if self.assessment is not None:
            return None
        return self.served.no_detector or "out-of-distribution flagging is off (SOFTSERVE_OOD)"

    def __len__(self) -> int:
        return len(self.logits)

    @property
    def labels(self) -> NDArray[np.intp]:
        """(N,) predicted class: argmax of the logits, or a positive binary logit (computed
        when asked for: a raw answer has no use for it)."""
        return linear.predict_labels(self.served.kind, self.logits)

    @property
    def table(self) -> NDArray[np.float32]:
        """(N, K) probability of every class: a binary model's both, negative first."""
        if self.proba.ndim == 1:
            return np.stack([1 - self.proba, self.proba], axis=1)
        return self.proba

    def ranked(self, k: int) -> NDArray[np.intp]:
        """(N, k) class indices, likeliest first (ties keep label order)."""
        table = self.table
        return np.argsort(-table, axis=1, kind="stable")[:, : min(k, table.shape[1])]


class Predictor:
    """The prediction pipeline, on what it uses: the registry, the limits and the telemetry."""

    __slots__ = ("assess", "default_model", "drift", "limits", "registry", "telemetry")

    def __init__(
        self, registry: Registry, limits: Limits, telemetry: Telemetry, default_model: str,
        assess: bool = True, drift: Drift | None = None,
    ) -> None:  # fmt: skip
        self.registry = registry
        self.limits = limits
        self.telemetry = telemetry
        self.default_model = default_model
        self.assess = assess  # out-of-distribution flagging (SOFTSERVE_OOD)
        self.drift = drift if drift is not None and drift.enabled else None

    async def predict(self, request: PredictRequest, payload: Payload) -> Prediction:
        """Decide one prediction, or raise the ServiceError that names what is wrong."""
        served = await self.model(request.model, request.version)
        if request.top_k is not None:
            if served.kind != "softmax":
                raise InvalidInput(
                    f"top_k applies to softmax models; {served.name!r} is {served.kind}",
                    code="invalid_parameter",
                )
            if request.raw:
                raise InvalidInput(
                    "top_k applies to JSON responses, not raw ones", code="invalid_parameter"
                )
        pixels = await payload.pixels(self.limits)
        declared = payload.declared
        pixels = check_scale(pixels, unit=request.unit or declared.unit)
        X = linear.pixels_to_features(pixels)
        detector = served.detector if self.assess else None
        assessment = None
        if detector is None:
            scores = linear.logits(served.weights, served.bias, X)
        else:
            scores, assessment = detector.logits_and_assessment(pixels, X, served.bias)
        prediction = Prediction(
            served, scores, linear.probabilities(served.kind, scores), request.top_k, assessment
        )
        if self.drift is not None:  # before strict may refuse them: they were asked about
            try:
                self.drift.record(prediction, X)
            except Exception:  # bookkeeping must never cost the caller the answer
                log.exception("recording drift figures failed")
        if request.strict or declared.strict:
            _refuse_flagged(prediction)
        self.telemetry.predicted(served.name, len(scores))
        return prediction

    async def model(self, name: str | None, version: str | None) -> Served:
        """The model that answers: by name (else the default), the active version unless one
        is named; a kept version not in memory yet is loaded off the event loop."""
        if name is None:
            name = self.default_model
            if name not in self.registry.models:
                raise ServiceUnavailable(
                    f"the default model {name!r} is not loaded: "
                    f"{self.registry.why_missing(name)} (SOFTSERVE_DEFAULT_MODEL)",
                    code="model_not_loaded",
                )
        if version is None:
            return self.registry.get(name)
        held = self.registry.in_memory(name, version)
        if held is not None:
            return held
        return await run_in_threadpool(self.registry.load_version, name, version)


def _refuse_flagged(prediction: Prediction) -> None:
    """Strict: 422 naming the first flagged image and why, or that flagging is off."""
    assessment = prediction.assessment
    if assessment is None:
        raise InvalidInput(
            f"strict needs out-of-distribution flagging, which is off for model "
            f"{prediction.served.name!r}: {prediction.no_assessment}",
            code="strict_unavailable",
        )
    flagged = assessment.flagged()
    if flagged:
        first = flagged[0]
        details = [
            {"image": i, "reasons": assessment.reasons(i)} for i in flagged[: inputs.MAX_PROBLEMS]
        ]
        raise InvalidInput(
            f"image {first} is unlike the images the model was trained on: "
            f"{'; '.join(assessment.reasons(first))} (strict)",
            code="out_of_distribution",
            details=details,
        )


def json_ready(prediction: Prediction) -> dict[str, Any]:
    """Our own API's answer as JSON-ready values (float32 arrays stay NumPy: orjson writes
    them as float32, shorter than their float64 reprs)."""
    served, labels, proba = prediction.served, prediction.labels, prediction.proba
    names = served.class_names
    label_list: list[int] = labels.tolist()
    predictions: list[dict[str, Any]]
    if served.kind == "binary":
        predictions = [
            {"label": label, "class_name": names[label], "probability": p}
            for label, p in zip(label_list, proba, strict=True)  # float32, as softmax rows
        ]
    else:
        predictions = [
            {"label": label, "class_name": names[label], "probabilities": row}
            for label, row in zip(label_list, proba, strict=True)
        ]
        if prediction.top_k is not None:
            ranked = prediction.ranked(prediction.top_k).tolist()
            for entry, row, idx in zip(predictions, proba, ranked, strict=True):
                # row[i] stays float32 so it prints exactly as it does in "probabilities".
                entry["top_k"] = [
                    {"label": i, "class_name": names[i], "probability": row[i]} for i in idx
                ]
    assessment = prediction.assessment
    if assessment is None:
        for entry in predictions:
            entry["ood"] = None
    else:
        scores, flags = assessment.scores(), assessment.flags()
        for index, (entry, score, flag) in enumerate(zip(predictions, scores, flags, strict=True)):
            reasons = assessment.reasons(index) if flag else []
            entry["ood"] = {"score": score, "flag": flag, "reasons": reasons}
    return {"model": served.name, "version": served.version, "predictions": predictions}
