"""Where model versions live: one interface (`ModelStore`), and the model folder behind it.

`open_model_store` opens a store from its `location`, as a training child does.
"""

from __future__ import annotations

from pathlib import Path

from service.modelstore.base import (
    NAME_PATTERN,
    ModelStore,
    Promotion,
    StoreError,
    check_name,
    check_version,
    decide_promotion,
)
from service.modelstore.folder import FolderModelStore

__all__ = [
    "NAME_PATTERN",
    "FolderModelStore",
    "ModelStore",
    "Promotion",
    "StoreError",
    "check_name",
    "check_version",
    "decide_promotion",
    "open_model_store",
]


def open_model_store(location: str) -> ModelStore:
    """The store at ``location`` (a `ModelStore.location`), opened again, e.g. in a child."""
    return FolderModelStore(Path(location))
