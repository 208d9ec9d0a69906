"""Shared fixtures: a tiny synthetic dataset on disk, and the real Fashion-MNIST when installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.synthetic import write_dataset
from trainer.data import find_files

_REAL_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def synthetic_data_dir(tmp_path: Path) -> Path:
    """A folder named 'synthetic' holding 600 train / 200 test gzip'd IDX files, 10 classes."""
    return write_dataset(tmp_path / "synthetic")


@pytest.fixture
def real_data_dir() -> Path:
    """Debian's Fashion-MNIST folder. Where the package is not installed the test is skipped, except
    under CI (CI=true), whose .ci/run installs it: there a missing dataset is a failure."""
    if find_files(_REAL_DIR) is None:
        reason = "Fashion-MNIST not installed: apt-get install dataset-fashion-mnist"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason} (CI=true: .ci/run should have installed it)")
        pytest.skip(reason)
    return _REAL_DIR
