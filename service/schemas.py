"""Wire types: the request bodies pydantic validates, and every JSON response's shape.

Each route declares its response model, so ``/openapi.json`` describes the bodies the service
really sends (the fuzz tests check them against it). /predict bodies are not validated by
pydantic (see service.inputs: NumPy checks a whole batch at once); `PredictJSON` only documents
them. An artifact's meta stays an open object (``extra="allow"``): readers keep keys they do not
know, as the artifact format promises.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.config import ExtraValues

from service import examples
from service.jobs.record import JobStatus
from trainer.artifacts import VERSION_PATTERN, Metrics
from trainer.config import (
    MAX_BATCH_SIZE,
    MAX_CLASSES,
    MAX_EPOCHS,
    MAX_L2,
    MAX_LEARNING_RATE,
    MAX_SEED,
)
from trainer.contract import Kind

__all__ = [
    "ActivateRequest",
    "Confusion",
    "DriftFigures",
    "ErrorResponse",
    "Job",
    "JobList",
    "Live",
    "MetricsReport",
    "ModelDetail",
    "ModelList",
    "ModelSummary",
    "PredictJSON",
    "PredictResponse",
    "Ready",
    "TestImage",
    "TrainRequest",
    "Versions",
]

Figures = Metrics  # one split's figures: loss, accuracy, roc_auc, ...


def _shown(example: dict[str, Any], *, extra: ExtraValues = "forbid") -> ConfigDict:
    """A model's config, with the example body the OpenAPI document shows for it."""
    return ConfigDict(extra=extra, json_schema_extra={"examples": [example]})


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Reply):
    code: str = Field(examples=["invalid_pixels"])
    message: str = Field(examples=["expected 784 pixels, got 783"])
    details: Any = Field(None, description="more about the problem; its form depends on the code")
    request_id: str | None = Field(
        None, examples=["5f0c2a9e41b7-17"], description="the request's id, as X-Request-ID says"
    )


class ErrorResponse(_Reply):
    """Every error, whatever its status, has this shape."""

    error: ErrorDetail


# --- /predict ---------------------------------------------------------------------------------


class PredictJSON(BaseModel):
    """One image as ``pixels`` (784 numbers, or 28 rows of 28), or a batch as ``images``."""

    model_config = _shown({"pixels": examples.PIXELS})

    pixels: list[float] | list[list[float]] | None = Field(
        None, description="784 intensities 0..255, row-major, or 28 lists of 28"
    )
    images: list[list[float] | list[list[float]]] | None = Field(
        None, description="A batch of images, each as `pixels` is (up to SOFTSERVE_MAX_BATCH)"
    )


class TopK(_Reply):
    label: int
    class_name: str
    probability: float


class OodAssessment(_Reply):
    score: float = Field(
        description="how far from typical: above 1 exactly when flagged, under 0.4 for half the "
        "test set (docs/trust.md)"
    )
    flag: bool = Field(description="unlike the training data: do not trust this answer")
    reasons: list[str] = Field(description="why it is flagged, in words (empty if it is not)")


class OodStatus(_Reply):
    enabled: bool = Field(description="whether this version's answers are assessed")
    expected_rate: float | None = Field(
        description="the share of images like the training data that are flagged anyway"
    )
    reason: str | None = Field(description="why answers are not assessed, if they are not")


class Prediction(_Reply):
    label: int = Field(examples=[9])
    class_name: str = Field(examples=["Ankle boot"])
    probabilities: list[float] | None = Field(
        None, description="softmax models: one probability per class, in label order"
    )
    probability: float | None = Field(
        None, description="binary models: probability of the positive class"
    )
    top_k: list[TopK] | None = Field(None, description="with ?top_k=k: the k likeliest classes")
    ood: OodAssessment | None = Field(
        None, description="how unlike the training data the image is (null: not assessed)"
    )


class PredictResponse(_Reply):
    model: str = Field(examples=["softmax"])
    version: str = Field(examples=[examples.VERSION])
    predictions: list[Prediction]


# --- /health ----------------------------------------------------------------------------------


class Live(_Reply):
    model_config = _shown(examples.LIVE)
    status: Literal["live"]
    pid: int = Field(description="the worker that answered, behind one port")


class DatabaseStatus(_Reply):
    backend: Literal["sqlite", "postgresql"] = Field(
        description="sqlite: the embedded default; postgresql: SOFTSERVE_DATABASE_URL"
    )
    listener_connected: bool | None = Field(
        description="postgresql: whether this worker hears promotions as they happen"
    )
    last_sync_seconds_ago: float | None = Field(
        description="postgresql: since this worker last synchronised its models on a notice"
    )
    error: str | None = Field(description="postgresql: why the listener is disconnected")


class Ready(_Reply):
    model_config = _shown(examples.READY)
    status: Literal["ready"]
    pid: int = Field(description="the worker that answered (several workers each load models)")
    models: dict[str, str] = Field(description="served model -> active version")
    problems: dict[str, str] = Field(description="model -> a problem that left it serving")
    database: DatabaseStatus | None = Field(
        None,
        description="where jobs and models are kept; a lost database shows here, and "
        "readiness holds: predictions go on from memory",
    )


# --- /models ----------------------------------------------------------------------------------


class ModelSummary(_Reply):
    model_config = _shown(examples.SUMMARY)
    name: str
    kind: Kind
    version: str
    created_at: str
    class_names: list[str]
    n_outputs: int
    metrics: dict[str, Figures] = Field(description="split (train, validation, test) -> figures")
    loaded_at: str = Field(description="when this worker loaded the version")
    problem: str | None = Field(description="why a newer file is not served, if one is not")
    ood: OodStatus = Field(description="out-of-distribution flagging of this version")


class ModelList(_Reply):
    model_config = _shown(examples.MODELS)
    models: list[ModelSummary]
    not_loaded: dict[str, str] = Field(description="model -> why it is not served")


class ModelDetail(BaseModel):
    """The active version's whole metadata (the artifact's meta), plus where it is served."""

    model_config = _shown(examples.DETAIL, extra="allow")

    name: str
    kind: Kind
    version: str
    created_at: str
    class_names: list[str]
    metrics: dict[str, Figures]
    history: list[dict[str, Any]]
    loaded_at: str
    problem: str | None


class VersionRow(_Reply):
    model_config = _shown(examples.VERSION_ROW)
    version: str
    created_at: str | None
    active: bool
    test_accuracy: float | None
    metrics: dict[str, Figures] | None = Field(
        None, description="each split's figures, as the artifact reports them"
    )
    class_names: list[str] | None = Field(None, description="the version's outputs, in order")
    problem: str | None = Field(description="why this kept version cannot be served, if so")


class Versions(_Reply):
    model_config = _shown(examples.VERSIONS)
    model: str
    active: str
    versions: list[VersionRow] = Field(description="newest first")


class ActivateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"version": examples.VERSION}]}
    )

    # The pattern is documented, and checked by the registry, so that a malformed version gets
    # the same 'invalid_version' answer everywhere (the message shows at most 80 characters).
    version: str = Field(json_schema_extra={"pattern": VERSION_PATTERN})


# --- /train -----------------------------------------------------------------------------------


def _whole(value: Any) -> Any:
    """47.0 is the integer 47, as JSON Schema's "integer" says; 47.5 stays a float and fails."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


class TrainRequest(BaseModel):
    """Hyper-parameters for one training job; anything left out takes the trainer's default."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"model": "softmax", "epochs": 5, "seed": 1}]},
    )

    model: Kind = "softmax"
    epochs: WholeNumber | None = Field(
        None, ge=1, le=MAX_EPOCHS, description="passes over the training split"
    )
    batch_size: WholeNumber | None = Field(None, ge=1, le=MAX_BATCH_SIZE)
    learning_rate: float | None = Field(None, gt=0, le=MAX_LEARNING_RATE, allow_inf_nan=False)
    l2: float | None = Field(None, ge=0, le=MAX_L2, allow_inf_nan=False)
    seed: WholeNumber | None = Field(None, ge=0, le=MAX_SEED)
    positive: list[str | int] | None = Field(
        None,
        min_length=1,
        max_length=MAX_CLASSES,
        description="binary: positive class names or indices",
    )
    negative: list[str | int] | None = Field(
        None, max_length=MAX_CLASSES, description="binary: negative classes (default: the rest)"
    )
    force: bool = Field(False, description="promote even if test accuracy is worse")


class Job(_Reply):
    model_config = _shown(examples.JOB)
    job_id: str = Field(examples=["6f1c0c7a9d8e4b5f8a7b6c5d4e3f2a1b"])
    model: str
    params: dict[str, Any] = Field(description="the hyper-parameters asked for")
    force: bool
    status: JobStatus
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str = Field(description="to the microsecond: changes with every update")
    progress: dict[str, Any] | None = Field(description="phase, epoch, batch, fraction done")
    history: list[dict[str, Any]] = Field(description="one record per finished epoch")
    latest: dict[str, Any] | None = Field(description="the last finished epoch's record")
    error: str | None
    version: str | None = Field(description="the version trained, once it is saved")
    promoted: bool | None
    promotion_reason: str | None
    cancel_requested: bool
    request_id: str | None = Field(description="of the request that submitted it (X-Request-ID)")
    replica: str | None = Field(
        None, description="the replica that ran it (SOFTSERVE_REPLICA_NAME); null until claimed"
    )
    worker: int | None = Field(None, description="the pid of the worker that ran it")


class JobList(_Reply):
    model_config = _shown(examples.JOBS)
    jobs: list[Job] = Field(description="newest first")


# --- /metrics ---------------------------------------------------------------------------------


class Source(_Reply):
    artifact: str = Field(description="how the model store names the active version")
    job_id: str | None = Field(description="the job that trained it, if a recent one did")


class ModelMetrics(_Reply):
    version: str
    kind: Kind
    created_at: str
    loaded_at: str
    source: Source
    train: Figures | None = None
    validation: Figures | None = None
    test: Figures | None = None


class RunningJob(_Reply):
    job_id: str
    model: str
    progress: dict[str, Any] | None
    latest: dict[str, Any] | None


class JobMetrics(_Reply):
    counts: dict[str, int] = Field(description="jobs per status")
    running: list[RunningJob]


class Expected(_Reply):
    label: int = Field(description="the model's output index")
    class_name: str


class TestImage(_Reply):
    """One image of the dataset's test split, with its true class."""

    model_config = _shown(examples.TEST_IMAGE)

    index: int = Field(description="its row in the test split")
    pixels: list[int] = Field(description="784 intensities 0..255, row-major")
    label: int = Field(description="its true class")
    class_name: str
    dataset: str = Field(description="the dataset's name")
    expected: Expected | None = Field(
        None,
        description="with ?model=: the output that model should give (binary: its positive or "
        "negative class); null when it has none for this class",
    )


class Confusion(_Reply):
    """A model version's confusion matrix on the dataset's test split."""

    model_config = _shown(examples.CONFUSION)

    model: str
    version: str
    split: Literal["test"] = "test"
    class_names: list[str] = Field(description="the model's outputs (binary: negative, positive)")
    matrix: list[list[int]] = Field(description="counts: row = true class, column = predicted")
    accuracy: float


class DriftFigures(_Reply):
    """A model version's traffic over the sliding window against its training data
    (docs/trust.md#drift). Figures without data, or without the artifact's reference, are
    null."""

    model_config = _shown(examples.DRIFT)

    version: str = Field(description="the model version the window is of (the active one)")
    window_seconds: float = Field(description="the window's length (SOFTSERVE_DRIFT_WINDOW)")
    workers: int = Field(description="workers whose images the window holds")
    images: int = Field(description="images answered in the window")
    assessed: int = Field(description="of them, images the OOD assessment looked at")
    flagged: int = Field(description="of those, images it flagged")
    flag_rate: float | None = Field(description="flagged / assessed")
    expected_flag_rate: float | None = Field(description="the artifact's chosen false-alarm rate")
    flag_ratio: float | None = Field(description="flag_rate / expected_flag_rate")
    alert: bool = Field(
        description="flag_ratio is above SOFTSERVE_DRIFT_ALERT_FACTOR over at least 200 images"
    )
    mean_intensity: float | None = Field(description="mean pixel, 0..1")
    training_intensity: float | None = Field(description="the training images' mean pixel")
    class_shares: dict[str, float] | None = Field(description="each predicted class's share")
    training_prior: dict[str, float] | None = Field(description="each class's share in training")
    psi: float | None = Field(
        description="population stability index of class_shares against training_prior"
    )
    mean_top_probability: float | None = Field(description="mean probability of the top class")


class RequestStats(_Reply):
    route: str = Field(description="the route's path template")
    method: str
    count: int = Field(description="requests since the service started, over every worker")
    by_status: dict[str, int] = Field(description="requests per status class: 2xx, 4xx, ...")
    p50_ms: float | None = Field(description="latency percentiles, from the histogram's buckets")
    p90_ms: float | None
    p99_ms: float | None


class MetricsReport(_Reply):
    model_config = _shown(examples.METRICS)

    replica: str = Field(description="the replica that answered (SOFTSERVE_REPLICA_NAME)")
    database: DatabaseStatus
    models: dict[str, ModelMetrics]
    jobs: JobMetrics
    requests: list[RequestStats] = Field(
        description="per route: counts by status class and latency percentiles (rates: the "
        "change in count between two reads)"
    )
    drift: dict[str, DriftFigures] = Field(
        description="per model, its active version's drift figures; empty when "
        "SOFTSERVE_DRIFT_WINDOW is 0"
    )
