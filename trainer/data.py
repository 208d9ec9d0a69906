"""Datasets of 28x28 images: where to find them, and a checked train/test split in memory.

Lookup order: an explicit folder, Debian's ``dataset-fashion-mnist``, the download cache. Reading
is :mod:`trainer.idx`; downloading is :mod:`trainer.fetch`; both are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from trainer import fetch
from trainer.fetch import FASHION_MNIST_SHA256, FILES, OFFICIAL_URL, DownloadProgress, download
from trainer.idx import DataError, load_images, load_labels, read_idx

__all__ = [
    "DEBIAN_DIR", "FASHION_MNIST_CLASSES", "FASHION_MNIST_SHA256", "FILES", "OFFICIAL_URL",
    "DataError", "Dataset", "default_cache_dir", "download", "find_files", "load_dataset",
    "load_images", "load_labels", "read_idx", "resolve_data_dir",
]  # fmt: skip

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/softserve/fashion-mnist``, else ``~/.cache/softserve/fashion-mnist``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if Path(xdg).is_absolute() else Path.home() / ".cache"  # XDG: ignore relative
    return base / "softserve" / "fashion-mnist"


def _locate(folder: Path, name: str) -> Path | None:
    return next((p for p in (folder / f"{name}.gz", folder / name) if p.is_file()), None)


def find_files(folder: Path) -> dict[str, Path] | None:
    """Role -> ``<name>.gz`` (preferred) or raw ``<name>`` in folder; None if any is missing."""
    found: dict[str, Path] = {}
    for role, name in FILES.items():
        if (path := _locate(folder, name)) is None:
            return None
        found[role] = path
    return found


def resolve_data_dir(data_dir: Path | None, *, cache_dir: Path | None = None) -> Path:
    """The folder to read: data_dir if given (no fallback), else DEBIAN_DIR, else the cache."""
    if data_dir is not None:
        if not data_dir.is_dir():
            raise DataError(f"{data_dir}: data folder does not exist")
        missing = [f"{name}(.gz)" for name in FILES.values() if _locate(data_dir, name) is None]
        if missing:
            raise DataError(f"{data_dir}: missing {', '.join(missing)}")
        return data_dir
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    for folder in (DEBIAN_DIR, cache):
        if find_files(folder) is not None:
            return folder
    raise DataError(
        "Fashion-MNIST not found. Looked in:\n"
        f"  {DEBIAN_DIR} (Debian package dataset-fashion-mnist)\n"
        f"  {cache} (download cache)\n"
        "Fix it with one of:\n"
        "  apt-get install dataset-fashion-mnist\n"
        "  pass --data-dir DIR or set SOFTSERVE_DATA_DIR to a folder holding the four IDX files\n"
        f"  run with --download to fetch them from {OFFICIAL_URL} into {cache}"
    )


@dataclass(frozen=True)
class Dataset:
    """A train/test split of 28x28 images: images ``(N, 784)`` uint8, labels ``(N,)`` uint8."""

    name: str  # 'fashion-mnist' when all four hashes match the official files, else the folder name
    source: str  # resolved folder the files were read from
    class_names: tuple[str, ...]
    train_images: NDArray[np.uint8]
    train_labels: NDArray[np.uint8]
    test_images: NDArray[np.uint8]
    test_labels: NDArray[np.uint8]
    sha256: Mapping[str, str]  # role -> SHA-256 of the decompressed IDX bytes

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def identity(self) -> dict[str, object]:
        """JSON-ready description of exactly which data this is (for artifacts and logs)."""
        return {
            "name": self.name,
            "source": self.source,
            "sha256": dict(self.sha256),
            "n_train": int(self.train_labels.shape[0]),
            "n_test": int(self.test_labels.shape[0]),
            "n_classes": self.n_classes,
        }


def _class_names(given: Sequence[str] | None, max_label: int, fashion: bool) -> tuple[str, ...]:
    if given is None:
        return FASHION_MNIST_CLASSES if fashion else tuple(str(i) for i in range(max_label + 1))
    if isinstance(given, str):
        raise DataError(f"class names must be a sequence of names, not the string {given!r}")
    names = tuple(given)
    if any(not isinstance(n, str) or not n.strip() for n in names):
        raise DataError(f"class names must be non-empty strings, got {list(names)!r}")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"duplicate class names: {', '.join(map(repr, dupes))}")
    if len(names) <= max_label:
        raise DataError(f"label {max_label} has no class name: {len(names)} names given")
    return names


def load_dataset(
    data_dir: Path | None = None,
    *,
    download: bool = False,
    cache_dir: Path | None = None,
    base_url: str = OFFICIAL_URL,
    class_names: Sequence[str] | None = None,
    progress: DownloadProgress | None = None,
) -> Dataset:
    """Find (downloading Fashion-MNIST into the cache if asked and needed), read and check data."""
    if download and data_dir is None:
        try:
            resolve_data_dir(None, cache_dir=cache_dir)
        except DataError:
            fetch.download(
                cache_dir if cache_dir is not None else default_cache_dir(),
                base_url=base_url, progress=progress,
            )  # fmt: skip
    folder = resolve_data_dir(data_dir, cache_dir=cache_dir)
    files = find_files(folder)
    if files is None:  # the folder changed under us since it was resolved
        raise DataError(f"{folder}: dataset files disappeared while loading")
    arrays: dict[str, NDArray[np.uint8]] = {}
    sha: dict[str, str] = {}
    for role, path in files.items():
        arrays[role], sha[role] = (load_images if role.endswith("images") else load_labels)(path)
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(f"{folder}: {split}: {n_img} images but {n_lab} labels")
    fashion = sha == FASHION_MNIST_SHA256
    max_label = int(max(arrays["train_labels"].max(), arrays["test_labels"].max()))
    names = _class_names(class_names, max_label, fashion)
    if len(names) < 2:
        raise DataError(f"{folder}: need at least 2 classes, got {len(names)}: {list(names)!r}")
    source = folder.resolve()
    return Dataset(
        name="fashion-mnist" if fashion else source.name,
        source=str(source),
        class_names=names,
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        sha256=sha,
    )
