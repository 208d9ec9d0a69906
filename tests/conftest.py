"""Shared fixtures: a tiny synthetic dataset on disk, the real Fashion-MNIST when installed, and
a real PostgreSQL server."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.ci import unavailable
from tests.support.postgres import Postgres, running_postgres
from tests.synthetic import write_dataset
from trainer.data import find_files

_REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
N_TEST_IMAGES = 64


@pytest.fixture
def synthetic_data_dir(tmp_path: Path) -> Path:
    """A folder named 'synthetic' holding 600 train / 200 test gzip'd IDX files, 10 classes."""
    return write_dataset(tmp_path / "synthetic")


@pytest.fixture
def real_data_dir() -> Path:
    """Debian's Fashion-MNIST folder. Where the package is not installed the test is skipped, except
    under CI (CI=true), whose .ci/run installs it: there a missing dataset is a failure."""
    if find_files(_REAL_DIR) is None:
        unavailable(
            "Fashion-MNIST not installed: apt-get install dataset-fashion-mnist", "installed it"
        )
    return _REAL_DIR


@pytest.fixture
def test_images(real_data_dir: Path) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """The first 64 Fashion-MNIST test images, uint8 (64, 784), and their labels (64,)."""
    images, labels = _first_test_images(real_data_dir)
    return images.copy(), labels.copy()  # copies: a test that writes to them spoils no other


@functools.cache
def _first_test_images(folder: Path) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    # Reading the whole set takes most of a second; several tests per module want these 64.
    from trainer.data import load_dataset

    data = load_dataset(folder)
    return data.test_images[:N_TEST_IMAGES].copy(), data.test_labels[:N_TEST_IMAGES].copy()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL server for the session's store tests (`Postgres.empty` resets it). A
    module that stops or restarts its server runs its own instead."""
    with running_postgres() as server:
        yield server
