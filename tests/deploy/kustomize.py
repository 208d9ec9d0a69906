"""`kubectl kustomize` for the few features deploy/k8s/kustomization.yaml uses, so that CI needs
no kustomize binary. Every other key is refused (`Unrendered`): the tests can never pass on a
manifest they silently left out. tests/deploy/test_k8s.py compares this with the real kustomize
wherever kubectl is installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Object", "Unrendered", "containers", "load_all", "render"]

Object = dict[str, Any]

API_VERSION = "kustomize.config.k8s.io/v1beta1"
KEYS = {"apiVersion", "kind", "resources", "labels", "images"}
IMAGE_KEYS = {"name", "newName", "newTag", "digest"}


class Unrendered(Exception):
    """The kustomization asks for something `render` does not do."""


def load_all(path: Path) -> list[Object]:
    """The YAML documents of ``path`` (empty ones skipped), each a mapping."""
    found = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in found:
        if not isinstance(doc, dict):
            raise Unrendered(f"{path.name}: a document is a {type(doc).__name__}, not a mapping")
    return found


def render(folder: Path) -> list[Object]:
    """The objects ``kubectl kustomize folder`` prints, in the order of ``resources``."""
    where = folder / "kustomization.yaml"
    (kustomization,) = load_all(where)
    unknown = sorted(set(kustomization) - KEYS)
    if unknown:
        raise Unrendered(f"{where.name}: {', '.join(unknown)} not rendered by tests/deploy")
    if (kustomization.get("apiVersion"), kustomization.get("kind")) != (
        API_VERSION,
        "Kustomization",
    ):
        raise Unrendered(f"{where.name}: not a {API_VERSION} Kustomization")
    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        if not path.is_file():  # a directory is another kustomization; a URL is fetched
            raise Unrendered(f"{where.name}: resource {entry!r} is not a file beside it")
        objects.extend(load_all(path))
    for entry in kustomization.get("labels", []):
        # includeSelectors, includeTemplates and fields reach selectors and pod templates too
        if set(entry) != {"pairs"}:
            raise Unrendered(f"{where.name}: labels with {sorted(set(entry) - {'pairs'})}")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for entry in kustomization.get("images", []):
        if "name" not in entry or not set(entry) <= IMAGE_KEYS:
            raise Unrendered(f"{where.name}: image entry {entry}")
        for obj in objects:
            for container in containers(obj):
                container["image"] = _retag(container["image"], entry)
    return objects


def containers(obj: Object) -> Iterator[Object]:
    """The containers and init containers of a workload's pod template."""
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])


def _retag(image: str, entry: Object) -> str:
    """``image`` as kustomize's images transformer leaves it for ``entry``."""
    name, at, digest = image.partition("@")
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:  # a colon before the last slash is a registry's port
        name, tag = name.rsplit(":", 1)
    if name != entry["name"]:
        return image
    name = str(entry.get("newName", name))
    if "digest" in entry:
        return f"{name}@{entry['digest']}"
    if "newTag" in entry:
        return f"{name}:{entry['newTag']}"
    return name + (f":{tag}" if tag else "") + (f"{at}{digest}" if at else "")
