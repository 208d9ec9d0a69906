"""GET /datasets/test/random: one image of the test split with its true class, for the console's
"random test image" (and anyone checking the service against known answers)."""

from __future__ import annotations

import random
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service.openapi import errors
from service.schemas import TestImage
from service.state import get_state
from trainer.evaluate import expected_output

__all__ = ["router"]

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.get(
    "/test/random",
    summary="A random image of the test split, with its true class",
    response_model=TestImage,
    responses=errors(
        {404: "Unknown model or version", 422: "Invalid request", 503: "No dataset on this machine"}
    ),
)
async def random_test_image(
    request: Request, model: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """Read from SOFTSERVE_DATA_DIR (else where the trainer looks by default); 503, code
    `dataset_unavailable`, when there is none. With ``?model=`` (and ``?version=``), also the
    output that model should give it, so a binary model's answer can be judged too."""
    state = get_state(request)
    served = await state.predictor.model(model, version) if model is not None else None
    dataset = await run_in_threadpool(state.testset.get)
    index = random.randrange(len(dataset.test_labels))
    label = int(dataset.test_labels[index])
    expected = None
    if served is not None:
        output = expected_output(served.artifact, dataset.class_names, label)
        if output is not None:
            expected = {"label": output, "class_name": served.class_names[output]}
    return {
        "index": index,
        "pixels": dataset.test_images[index].tolist(),
        "label": label,
        "class_name": dataset.class_names[label],
        "dataset": dataset.name,
        "expected": expected,
    }
