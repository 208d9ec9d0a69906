"""Wire types: the request bodies pydantic validates, and every JSON response's shape.

Each route declares its response model, so ``/openapi.json`` describes the bodies the service
really sends (the fuzz tests check them against it). /predict bodies are not validated by
pydantic (see service.inputs: NumPy checks a whole batch at once); `PredictJSON` only documents
them. An artifact's meta stays an open object (``extra="allow"``): readers keep keys they do not
know, as the artifact format promises.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from service.jobs.record import JobStatus
from trainer.artifacts import VERSION_PATTERN
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
    "TrainRequest",
    "Versions",
]

EXAMPLE_VERSION = "20261122T045742Z-1f3a1006"
EXAMPLE_PIXELS: list[JsonValue] = [0] * 784
Figures = dict[str, float | int | None]  # one split's metrics: loss, accuracy, roc_auc, ...

_SUMMARY_EXAMPLE: dict[str, Any] = {
    "name": "softmax",
    "kind": "softmax",
    "version": EXAMPLE_VERSION,
    "created_at": "2026-11-22T04:57:42Z",
    "class_names": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot"],
    "n_outputs": 10,
    "metrics": {"train": {"loss": 0.41, "accuracy": 0.86},
                "test": {"loss": 0.452, "accuracy": 0.848}},
    "loaded_at": "2026-11-22T05:00:00Z",
    "problem": None,
}  # fmt: skip
_JOB_EXAMPLE: dict[str, Any] = {
    "job_id": "6f1c0c7a9d8e4b5f8a7b6c5d4e3f2a1b",
    "model": "softmax",
    "params": {"epochs": 5},
    "force": False,
    "status": "running",
    "created_at": "2026-11-22T05:00:00Z",
    "started_at": "2026-11-22T05:00:01Z",
    "finished_at": None,
    "updated_at": "2026-11-22T05:00:03.250113Z",
    "progress": {"phase": "select", "epoch": 2, "epochs": 5, "batch": 40, "batches": 215,
                 "step": 255, "total_steps": 2150, "fraction": 0.12},
    "history": [{"phase": "select", "epoch": 1, "epochs": 5, "learning_rate": 0.09,
                 "train_loss": 0.62, "train_accuracy": 0.79, "validation_loss": 0.51,
                 "validation_accuracy": 0.82, "test_loss": 0.53, "test_accuracy": 0.81,
                 "seconds": 0.3}],
    "latest": None,
    "error": None,
    "version": None,
    "promoted": None,
    "promotion_reason": None,
    "cancel_requested": False,
}  # fmt: skip
_JOB_EXAMPLE["latest"] = _JOB_EXAMPLE["history"][-1]


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Reply):
    code: str = Field(examples=["invalid_pixels"])
    message: str = Field(examples=["expected 784 pixels, got 783"])
    details: Any = None


class ErrorResponse(_Reply):
    """Every error, whatever its status, has this shape."""

    error: ErrorDetail


# --- /predict ---------------------------------------------------------------------------------


class PredictJSON(BaseModel):
    """One image as ``pixels`` (784 numbers, or 28 rows of 28), or a batch as ``images``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"pixels": EXAMPLE_PIXELS}]}
    )

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


class PredictResponse(_Reply):
    model: str = Field(examples=["softmax"])
    version: str = Field(examples=[EXAMPLE_VERSION])
    predictions: list[Prediction]


# --- /health ----------------------------------------------------------------------------------


class Live(_Reply):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "live", "pid": 1234}]}
    )
    status: Literal["live"]
    pid: int = Field(description="the worker that answered, behind one port")


class Ready(_Reply):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "ready", "models": {"softmax": EXAMPLE_VERSION}, "problems": {}}
            ]
        },
    )
    status: Literal["ready"]
    models: dict[str, str] = Field(description="served model -> active version")
    problems: dict[str, str] = Field(description="model -> a problem that left it serving")


# --- /models ----------------------------------------------------------------------------------


class ModelSummary(_Reply):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})
    name: str = Field(examples=["softmax"])
    kind: Kind
    version: str = Field(examples=[EXAMPLE_VERSION])
    created_at: str
    class_names: list[str]
    n_outputs: int
    metrics: dict[str, Figures] = Field(description="split (train, validation, test) -> figures")
    loaded_at: str = Field(description="when this worker loaded the version")
    problem: str | None = Field(description="why a newer file is not served, if one is not")


class ModelList(_Reply):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"models": [_SUMMARY_EXAMPLE], "not_loaded": {}}]},
    )
    models: list[ModelSummary]
    not_loaded: dict[str, str] = Field(description="model -> why it is not served")


class ModelDetail(BaseModel):
    """The active version's whole metadata (the artifact's meta), plus where it is served."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    **{k: v for k, v in _SUMMARY_EXAMPLE.items() if k != "n_outputs"},
                    "schema_version": 1,
                    "format": "softserve.linear",
                    "input": {"features": 784, "shape": [28, 28], "scale": 255.0},
                    "training": {"epochs": 10, "learning_rate": 0.1, "best_epoch": 10},
                    "history": _JOB_EXAMPLE["history"],
                }
            ]
        },
    )

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
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "version": EXAMPLE_VERSION,
                    "created_at": "2026-11-22T04:57:42Z",
                    "active": True,
                    "test_accuracy": 0.848,
                    "problem": None,
                }
            ]
        },
    )
    version: str
    created_at: str | None
    active: bool
    test_accuracy: float | None
    problem: str | None = Field(description="why this kept version cannot be served, if so")


class Versions(_Reply):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "softmax",
                    "active": EXAMPLE_VERSION,
                    "versions": [
                        {
                            "version": EXAMPLE_VERSION,
                            "created_at": "2026-11-22T04:57:42Z",
                            "active": True,
                            "test_accuracy": 0.848,
                            "problem": None,
                        }
                    ],
                }
            ]
        },
    )
    model: str
    active: str
    versions: list[VersionRow] = Field(description="newest first")


class ActivateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"version": EXAMPLE_VERSION}]}
    )

    # The pattern is documented, and checked by the route so that a malformed version gets the
    # same 'invalid_version' answer everywhere.
    version: str = Field(max_length=80, json_schema_extra={"pattern": VERSION_PATTERN})


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
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_JOB_EXAMPLE]})
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


class JobList(_Reply):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"jobs": [_JOB_EXAMPLE]}]}
    )
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


class MetricsReport(_Reply):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "models": {
                        "softmax": {
                            "version": EXAMPLE_VERSION,
                            "kind": "softmax",
                            "created_at": "2026-11-22T04:57:42Z",
                            "loaded_at": "2026-11-22T05:00:00Z",
                            "source": {"artifact": "softmax.npz", "job_id": None},
                            **_SUMMARY_EXAMPLE["metrics"],
                        }
                    },
                    "jobs": {
                        "counts": {
                            "queued": 0,
                            "running": 1,
                            "succeeded": 3,
                            "failed": 0,
                            "cancelled": 0,
                        },
                        "running": [
                            {k: _JOB_EXAMPLE[k] for k in ("job_id", "model", "progress", "latest")}
                        ],
                    },
                }
            ]
        },
    )

    models: dict[str, ModelMetrics]
    jobs: JobMetrics
