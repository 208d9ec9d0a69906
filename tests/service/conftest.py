"""Fixtures for service tests: a shared uvicorn server on a copy of the shipped models."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from tests.service.server import Server, run_server

N_TEST_IMAGES = 64


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real uvicorn process per test module, default settings (no token)."""
    with run_server(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


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
