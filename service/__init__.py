"""softserve's HTTP service: serves the trainer's artifacts and trains new versions."""

from __future__ import annotations

import importlib.metadata

__all__ = ["__version__"]

try:
    __version__ = importlib.metadata.version("softserve")
except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "unknown"
