"""The dataset's test split, for the pages that show it: a random test image, and a model's
confusion matrix (GET /datasets/test/random, GET /models/{name}/confusion).

Read once, when first asked for (in a thread: about a second), from SOFTSERVE_DATA_DIR or where
the trainer looks by default; where there is none, each request is a 503 that says how to add it.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from service.errors import ServiceUnavailable
from trainer.data import DataError, Dataset, load_dataset

__all__ = ["TestSet"]


class TestSet:
    """The dataset, loaded on first use and kept."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._dataset: Dataset | None = None

    def get(self) -> Dataset:
        """The dataset, or ServiceUnavailable naming why there is none (call off the loop)."""
        with self._lock:
            if self._dataset is None:
                try:
                    dataset = load_dataset(self.data_dir)
                    # only the test split is shown: the train split's ~47 MB is let go
                    empty = dataset.train_images[:0]
                    self._dataset = dataclasses.replace(
                        dataset, train_images=empty, train_labels=dataset.train_labels[:0]
                    )
                except (DataError, OSError) as e:
                    first = str(e).splitlines()[0]
                    raise ServiceUnavailable(
                        f"no test images: {first} (set SOFTSERVE_DATA_DIR, or install Debian's "
                        "dataset-fashion-mnist)",
                        code="dataset_unavailable",
                    ) from None
            return self._dataset
