"""The example bodies the OpenAPI document shows, one per response model (tests/service/
test_openapi.py validates each against its model, so an example cannot drift from the body)."""

from __future__ import annotations

from typing import Any

from trainer.contract import IMAGE_SHAPE, N_FEATURES, PIXEL_SCALE

__all__ = [
    "DETAIL",
    "JOB",
    "JOBS",
    "LIVE",
    "METRICS",
    "MODELS",
    "PIXELS",
    "PREDICTION",
    "READY",
    "SUMMARY",
    "V2_MODEL",
    "V2_REQUEST",
    "V2_RESPONSE",
    "V2_SERVER",
    "VERSION",
    "VERSIONS",
    "VERSION_ROW",
]

VERSION = "20261122T045742Z-1f3a1006"
PIXELS: list[Any] = [0] * N_FEATURES
LIVE: dict[str, Any] = {"status": "live", "pid": 1234}
READY: dict[str, Any] = {
    "status": "ready", "pid": 12345, "models": {"softmax": VERSION}, "problems": {},
}  # fmt: skip
PREDICTION: dict[str, Any] = {
    "model": "softmax",
    "version": VERSION,
    "predictions": [
        {
            "label": 9,
            "class_name": "Ankle boot",
            "probabilities": [0.0, 0.0, 0.0, 0.0, 0.0, 0.01, 0.0, 0.03, 0.0, 0.96],
            "top_k": [{"label": 9, "class_name": "Ankle boot", "probability": 0.96}],
            "ood": {"score": 0.94, "flag": False, "reasons": []},
        }
    ],
}
SUMMARY: dict[str, Any] = {
    "name": "softmax",
    "kind": "softmax",
    "version": VERSION,
    "created_at": "2026-11-22T04:57:42Z",
    "class_names": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot"],
    "n_outputs": 10,
    "metrics": {"train": {"loss": 0.41, "accuracy": 0.86},
                "test": {"loss": 0.452, "accuracy": 0.848}},
    "loaded_at": "2026-11-22T05:00:00Z",
    "problem": None,
    "ood": {"enabled": True, "expected_rate": 0.005, "reason": None},
}  # fmt: skip
MODELS: dict[str, Any] = {"models": [SUMMARY], "not_loaded": {}}
EPOCH: dict[str, Any] = {
    "phase": "select", "epoch": 1, "epochs": 5, "learning_rate": 0.09, "train_loss": 0.62,
    "train_accuracy": 0.79, "validation_loss": 0.51, "validation_accuracy": 0.82,
    "test_loss": 0.53, "test_accuracy": 0.81, "seconds": 0.3,
}  # fmt: skip
DETAIL: dict[str, Any] = {
    **{key: value for key, value in SUMMARY.items() if key != "n_outputs"},
    "schema_version": 1,
    "format": "softserve.linear",
    "input": {"features": N_FEATURES, "shape": list(IMAGE_SHAPE), "scale": PIXEL_SCALE},
    "training": {"epochs": 10, "learning_rate": 0.1, "best_epoch": 10},
    "history": [EPOCH],
}
VERSION_ROW: dict[str, Any] = {
    "version": VERSION,
    "created_at": "2026-11-22T04:57:42Z",
    "active": True,
    "test_accuracy": 0.848,
    "metrics": {"test": {"loss": 0.452, "accuracy": 0.848}},
    "class_names": SUMMARY["class_names"],
    "problem": None,
}
VERSIONS: dict[str, Any] = {"model": "softmax", "active": VERSION, "versions": [VERSION_ROW]}
JOB: dict[str, Any] = {
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
    "history": [EPOCH],
    "latest": EPOCH,
    "error": None,
    "version": None,
    "promoted": None,
    "promotion_reason": None,
    "cancel_requested": False,
    "request_id": "5f0c2a9e41b7-17",
    "replica": "softserve-0",
    "worker": 41,
}  # fmt: skip
JOBS: dict[str, Any] = {"jobs": [JOB]}
TEST_IMAGE: dict[str, Any] = {
    "index": 0,
    "pixels": PIXELS,
    "label": 9,
    "class_name": "Ankle boot",
    "dataset": "fashion-mnist",
    "expected": {"label": 9, "class_name": "Ankle boot"},
}
CONFUSION: dict[str, Any] = {
    "model": "binary",
    "version": VERSION,
    "split": "test",
    "class_names": ["not Shirt", "Shirt"],
    "matrix": [[8870, 130], [655, 345]],
    "accuracy": 0.9215,
}
DRIFT: dict[str, Any] = {
    "version": VERSION,
    "window_seconds": 300.0,
    "workers": 1,
    "images": 1200,
    "assessed": 1200,
    "flagged": 7,
    "flag_rate": 0.0058,
    "expected_flag_rate": 0.005,
    "flag_ratio": 1.17,
    "alert": False,
    "mean_intensity": 0.284,
    "training_intensity": 0.286,
    "class_shares": {"T-shirt/top": 0.11, "Trouser": 0.09},
    "training_prior": {"T-shirt/top": 0.1, "Trouser": 0.1},
    "psi": 0.004,
    "mean_top_probability": 0.86,
}
METRICS: dict[str, Any] = {
    "replica": "softserve-0",
    "database": {
        "backend": "postgresql",
        "listener_connected": True,
        "last_sync_seconds_ago": 12.5,
        "error": None,
    },
    "models": {
        "softmax": {
            "version": VERSION,
            "kind": "softmax",
            "created_at": "2026-11-22T04:57:42Z",
            "loaded_at": "2026-11-22T05:00:00Z",
            "source": {"artifact": "softmax.npz", "job_id": None},
            **SUMMARY["metrics"],
        }
    },
    "jobs": {
        "counts": {"queued": 0, "running": 1, "succeeded": 3, "failed": 0, "cancelled": 0},
        "running": [{key: JOB[key] for key in ("job_id", "model", "progress", "latest")}],
    },
    "drift": {"softmax": DRIFT},
    "requests": [
        {
            "route": "/predict",
            "method": "POST",
            "count": 1200,
            "by_status": {"2xx": 1198, "4xx": 2},
            "p50_ms": 0.61,
            "p90_ms": 0.93,
            "p99_ms": 2.4,
        }
    ],
}
V2_SERVER: dict[str, Any] = {
    "name": "softserve",
    "version": "0.1.0",
    "extensions": ["binary_tensor_data", "classification"],
}
V2_MODEL: dict[str, Any] = {
    "name": "softmax",
    "versions": [VERSION],
    "platform": "softserve_linear",
    "inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [-1, N_FEATURES]}],
    "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "ood_score", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "ood_flag", "datatype": "BOOL", "shape": [-1, 1]},
    ],
}
V2_REQUEST: dict[str, Any] = {
    "id": "42",
    "inputs": [{"name": "pixels", "shape": [1, N_FEATURES], "datatype": "UINT8", "data": PIXELS}],
    "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}],
}
V2_RESPONSE: dict[str, Any] = {
    "model_name": "softmax",
    "model_version": VERSION,
    "id": "42",
    "outputs": [{"name": "probabilities", "datatype": "BYTES", "shape": [1, 3],
                 "data": ["0.960000:9:Ankle boot", "0.030000:7:Sneaker", "0.010000:5:Sandal"]}],
}  # fmt: skip
