"""Tiny synthetic IDX datasets for tests: same file layout as Fashion-MNIST, easy to separate."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from trainer.data import FILES

_PATTERN_SEED = 20240601  # fixed, so train and test of any seed share the class patterns


def write_idx(path: Path, array: NDArray[np.uint8], *, compress: bool = True) -> Path:
    """Write array (any shape, 1 to 4 dims) as an unsigned-byte IDX file, gzip'd if compress."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return path


def make_images(n: int, n_classes: int, seed: int) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """``(n, 28, 28)`` uint8 images and ``(n,)`` uint8 labels, every class present if n allows.

    Each class lights up its own fixed random quarter of the pixels (the same pattern for every
    seed) on top of dim noise, so a linear model separates the classes easily.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.uint8)
    patterns = np.random.default_rng(_PATTERN_SEED).random((n_classes, 28, 28)) < 0.25
    noise = rng.integers(0, 60, size=(n, 28, 28))
    return (noise + 180 * patterns[labels]).astype(np.uint8), labels


def write_dataset(
    folder: Path,
    *,
    n_train: int = 600,
    n_test: int = 200,
    n_classes: int = 10,
    seed: int = 0,
    compress: bool = True,
) -> Path:
    """Write the four Fashion-MNIST-named IDX files (``.gz`` when compress) into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = make_images(n, n_classes, split_seed)
        write_idx(folder / f"{FILES[f'{split}_images']}{suffix}", images, compress=compress)
        write_idx(folder / f"{FILES[f'{split}_labels']}{suffix}", labels, compress=compress)
    return folder


def as_synthetic_task(folder: Path, *, positive: str = "3") -> Path:
    """Rewrite the models in ``folder`` (copies of the shipped ones) as if trained on the
    synthetic classes, named 0..9: a softmax model of those, and a binary one of ``positive``
    against the rest. Weights and recorded metrics stay, so a job on synthetic data is compared
    with them on test accuracy alone (a model of other classes is never promoted over them)."""
    from trainer import artifacts

    names = [str(i) for i in range(10)]
    softmax = artifacts.load(folder / "softmax.npz")
    relabelled = softmax.meta | {"version": artifacts.new_version(), "class_names": names}
    artifacts.save(
        artifacts.Artifact(softmax.weights, softmax.bias, relabelled), folder / "softmax.npz"
    )
    binary = artifacts.load(folder / "binary.npz")
    rest = [name for name in names if name != positive]
    relabelled = binary.meta | {
        "version": artifacts.new_version(),
        "class_names": [f"not {positive}", positive],
        "binary": {"positive_classes": [positive], "negative_classes": rest,
                   "dataset_class_names": names},
    }  # fmt: skip
    artifacts.save(
        artifacts.Artifact(binary.weights, binary.bias, relabelled), folder / "binary.npz"
    )
    return folder
