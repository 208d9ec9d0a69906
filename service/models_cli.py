"""``python -m service models import DIR [--force]`` and ``python -m service models export DIR``:
move models between a folder and the configured store (the PostgreSQL of SOFTSERVE_DATABASE_URL,
else the model folder, SOFTSERVE_MODEL_DIR).

- ``import`` reads each ``DIR/<name>.npz`` (validated, as every load is) and promotes it as a
  finished job would: it becomes active when the promotion rule says so (a first version
  always), or with ``--force``. A file that fails is named and skipped; the exit status is then 1.
- ``export`` writes each model's active version to ``DIR/<name>.npz`` and every kept version to
  ``DIR/<name>/<version>.npz``: the model folder's own layout, so ``SOFTSERVE_MODEL_DIR=DIR``
  serves it as it is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.config import Settings
from service.modelstore import NAME_RE, ModelStore, StoreError
from service.modelstore.folder import FolderModelStore
from trainer import artifacts
from trainer.artifacts import ArtifactError

__all__ = ["main"]


def _store(settings: Settings) -> ModelStore:
    if settings.database_url is not None:
        from service.modelstore.postgres import PostgresModelStore

        return PostgresModelStore(settings.database_url.get_secret_value())
    return FolderModelStore(settings.model_dir)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service models",
        description="Copy models between a folder and the store SOFTSERVE_DATABASE_URL (else "
        "SOFTSERVE_MODEL_DIR) names.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    imported = commands.add_parser("import", help="promote each DIR/<name>.npz into the store")
    imported.add_argument("folder", type=Path, metavar="DIR")
    imported.add_argument("--force", action="store_true", help="make each one active")
    exported = commands.add_parser("export", help="write every model and version to DIR")
    exported.add_argument("folder", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    store = _store(Settings())
    try:
        if args.command == "import":
            return _import(store, args.folder, force=args.force)
        return _export(store, args.folder)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def _import(store: ModelStore, folder: Path, *, force: bool) -> int:
    if not folder.is_dir():
        print(f"{folder}: no such folder", file=sys.stderr)
        return 1
    failed = 0
    for path in sorted(p for p in folder.glob("*.npz") if NAME_RE.fullmatch(p.stem)):
        try:
            artifact = artifacts.load(path)
        except (ArtifactError, OSError) as e:
            print(f"{path.name}: skipped: {e}", file=sys.stderr)
            failed += 1
            continue
        promotion = store.promote(path.stem, artifact, force=force)
        print(f"{path.stem} {artifact.version}: {promotion.reason}")
    return 1 if failed else 0


def _export(store: ModelStore, folder: Path) -> int:
    failed = 0
    for name in store.names():
        for version in store.versions(name):
            try:
                artifacts.save(store.load_version(name, version), folder / name / f"{version}.npz")
            except (ArtifactError, StoreError) as e:
                print(f"{name} {version}: skipped: {e}", file=sys.stderr)
                failed += 1
        active = store.load_active(name)
        artifacts.save(active, folder / f"{name}.npz")
        print(f"{name}: {active.version} active, {len(store.versions(name))} kept")
    return 1 if failed else 0
