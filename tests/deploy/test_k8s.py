"""deploy/k8s, checked offline: rendered without kustomize (tests/deploy/kustomize.py), every object
validated by kubernetes-validate against the Kubernetes schemas in strict mode (an unknown or
misspelt field fails), then what no schema sees: selectors that select the pods, the HPA and the
PDB on the Deployment, probes on routes the app has and on the port it listens on, variables the
settings know, keys the example Secret has, a volume wherever the app writes. Each check is shown
to catch a broken manifest."""

from __future__ import annotations

import base64
import functools
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from service.app import create_app
from service.config import Settings
from tests.deploy.kustomize import Object, Unrendered, containers, load_all, render
from tests.support.server import REPO

K8S = REPO / "deploy" / "k8s"
SECRET = "secret.example.yaml"  # not a resource: its placeholders are never applied
KUBERNETES = "1.35"  # the schemas every object must fit; raised on purpose, not by an upgrade
KINDS = ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
MIN_REPLICAS = 3
# The server's own stop after SIGTERM: uvicorn's 5 s for open requests (service/__main__.py),
# then 3 s for a training process to cancel (JobRunner.stop), and a little room.
APP_STOP_SECONDS = 10
POD_NAME_SUFFIX = "-5d8c7b9f4c-x2x9q"  # what a Deployment appends: template hash, random part


@dataclass(frozen=True)
class Manifests:
    objects: list[Object]
    secret: Object

    def one(self, kind: str) -> Object:
        (found,) = [obj for obj in self.objects if obj["kind"] == kind]
        return found

    @property
    def deployment(self) -> Object:
        return self.one("Deployment")

    @property
    def pod(self) -> Object:
        template: Object = self.deployment["spec"]["template"]
        return template

    def secret_value(self, key: str) -> str | None:
        if key in self.secret.get("stringData", {}):
            return str(self.secret["stringData"][key])
        if key in self.secret.get("data", {}):
            return base64.b64decode(self.secret["data"][key]).decode()
        return None


def read(folder: Path) -> Manifests:
    (secret,) = load_all(folder / SECRET)
    return Manifests(render(folder), secret)


def named(obj: Object) -> str:
    return f"{obj['kind']} {obj['metadata']['name']}"


@functools.cache
def get_routes() -> frozenset[str]:
    """The paths the app answers GET on, from its OpenAPI document."""
    paths = create_app(Settings()).openapi()["paths"]
    return frozenset(path for path, item in paths.items() if "get" in item)


@functools.cache
def setting_variables() -> frozenset[str]:
    """Every environment variable service/config.py reads."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"SOFTSERVE_{name.upper()}")
    return frozenset(names)


@functools.cache
def dockerfile() -> tuple[dict[str, str], set[int], int]:
    """The image's environment, exposed ports and user id, as the Dockerfile sets them."""
    text = (REPO / "Dockerfile").read_text()
    env: dict[str, str] = {}
    exposed: set[int] = set()
    for line in text.replace("\\\n", " ").splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENV":
            for token in shlex.split(rest):
                name, _, value = token.partition("=")
                env[name] = value
        elif instruction == "EXPOSE":
            exposed |= {int(port.split("/")[0]) for port in rest.split()}
    uid = re.search(r"useradd .*--uid (\d+)", text)
    assert uid is not None, "Dockerfile: no useradd --uid"
    return env, exposed, int(uid.group(1))


def pod_settings(m: Manifests, container: Object) -> Settings:
    """The settings the container starts with: the image's environment, then its own, with the
    example Secret's values and a pod's name filled in."""
    image_env, _, _ = dockerfile()
    env = {name: value for name, value in image_env.items() if name in setting_variables()}
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "secretKeyRef" in source:
            env[var["name"]] = m.secret_value(source["secretKeyRef"]["key"]) or ""
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = m.deployment["metadata"]["name"] + POD_NAME_SUFFIX
        else:
            raise ValueError(f"{var['name']}: a value this test cannot fill in: {source}")
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings()


# Each check yields the problems it finds; a check that crashes on a malformed manifest counts
# as a problem too (see `problems`).
Check = Callable[[Manifests], Iterator[str]]


def schemas(m: Manifests) -> Iterator[str]:
    for obj in [*m.objects, m.secret]:
        try:
            version = kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            yield f"{named(obj)}: {'.'.join(map(str, e.path))}: {e.message}"
        except kubernetes_validate.SchemaNotFoundError as e:
            yield f"{named(obj)}: {e.message}"
        else:
            if version != KUBERNETES:  # the newest schema not newer than the one asked for
                yield f"{named(obj)}: validated against Kubernetes {version}, not {KUBERNETES}"


def kinds(m: Manifests) -> Iterator[str]:
    found = sorted(obj["kind"] for obj in m.objects)
    if found != KINDS:  # one of each; the Secret is never among them
        yield f"kustomization.yaml renders {found}, not {KINDS}"


def selectors(m: Manifests) -> Iterator[str]:
    labels = m.pod["metadata"].get("labels", {})
    service, pdb = m.one("Service"), m.one("PodDisruptionBudget")
    chosen = {
        f"{named(m.deployment)} spec.selector": m.deployment["spec"]["selector"],
        f"{named(service)} spec.selector": {"matchLabels": service["spec"]["selector"]},
        f"{named(pdb)} spec.selector": pdb["spec"]["selector"],
    }
    for i, spread in enumerate(m.pod["spec"].get("topologySpreadConstraints", [])):
        chosen[f"topologySpreadConstraints[{i}]"] = spread["labelSelector"]
    for where, selector in chosen.items():
        match = selector.get("matchLabels", {})
        if set(selector) != {"matchLabels"} or not match:
            yield f"{where}: only a non-empty matchLabels is checked here, got {selector}"
        elif any(labels.get(key) != value for key, value in match.items()):
            yield f"{where} {match} selects no pod of the Deployment (labels {labels})"


def scaling(m: Manifests) -> Iterator[str]:
    hpa, pdb = m.one("HorizontalPodAutoscaler"), m.one("PodDisruptionBudget")
    target = hpa["spec"]["scaleTargetRef"]
    name = m.deployment["metadata"]["name"]
    wanted = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    if target != wanted:
        yield f"{named(hpa)} targets {target}, not {wanted}"
    if hpa["spec"].get("minReplicas", 1) < MIN_REPLICAS:
        yield f"{named(hpa)}: minReplicas below {MIN_REPLICAS}"
    if "replicas" in m.deployment["spec"]:
        yield f"{named(m.deployment)} sets replicas, which the HPA owns: each apply resets them"
    for metric in hpa["spec"]["metrics"]:
        resource = metric.get("resource", {}).get("name")
        for container in containers(m.deployment):
            if resource and resource not in container.get("resources", {}).get("requests", {}):
                yield f"{named(hpa)} scales on {resource}; {container['name']} requests none"
    least = pdb["spec"].get("minAvailable")
    if pdb["spec"].get("maxUnavailable") in (0, "0%") or (
        isinstance(least, int) and least >= hpa["spec"]["minReplicas"]
    ):
        yield f"{named(pdb)} lets no pod be evicted at {hpa['spec']['minReplicas']} replicas"


def probes(m: Manifests) -> Iterator[str]:
    expected = {"startupProbe": None, "livenessProbe": "/health/live"}
    expected["readinessProbe"] = "/health/ready"
    for container in containers(m.deployment):
        ports = {p.get("name") for p in container.get("ports", [])} - {None}
        ports |= {p["containerPort"] for p in container.get("ports", [])}
        for kind, path in expected.items():
            asked = container.get(kind, {}).get("httpGet")
            if asked is None:
                yield f"{container['name']} has no {kind} with httpGet"
            elif asked["path"] not in get_routes():
                yield f"{kind} asks {asked['path']}, which is not a GET route of the app"
            elif path is not None and asked["path"] != path:
                yield f"{kind} asks {asked['path']}, not {path}"
            if asked is not None and asked["port"] not in ports:
                yield f"{kind} port {asked['port']!r} is none of {container['name']}'s {ports}"
        target = m.one("Service")["spec"]["ports"][0]["targetPort"]
        if target not in ports:
            yield f"Service targetPort {target!r} is none of {container['name']}'s {ports}"


def environment(m: Manifests) -> Iterator[str]:
    for container in containers(m.deployment):
        if "envFrom" in container:
            yield f"{container['name']}: envFrom is not checked here"
        for var in container.get("env", []):
            if var["name"] not in setting_variables():
                yield f"{container['name']}: {var['name']} is not a setting (service/config.py)"
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None and (
                ref["name"] != m.secret["metadata"]["name"] or m.secret_value(ref["key"]) is None
            ):
                yield f"{var['name']}: Secret {ref['name']} key {ref['key']} is not in {SECRET}"
        try:
            pod_settings(m, container)
        except ValidationError as e:
            yield f"{container['name']}: the settings refuse its environment: {e}"


def writes(m: Manifests) -> Iterator[str]:
    volumes = {volume["name"] for volume in m.pod["spec"].get("volumes", [])}
    for container in containers(m.deployment):
        mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
        for path, name in mounts.items():
            if name not in volumes:
                yield f"{container['name']} mounts {name} at {path}, which is no volume of the pod"
        if not container.get("securityContext", {}).get("readOnlyRootFilesystem"):
            continue
        settings = pod_settings(m, container)
        needed = {Path("/tmp"): "temp files", settings.job_store_dir: "the state folder"}
        if settings.database_url is None:
            needed[settings.model_dir] = "the model folder"
        for path, what in needed.items():
            if not any(path.is_relative_to(mount) for mount in mounts):
                yield f"{container['name']} writes {what} in {path}, on its read-only root"


def identity(m: Manifests) -> Iterator[str]:
    _, _, uid = dockerfile()
    for container in containers(m.deployment):
        context = m.pod["spec"].get("securityContext", {}) | container.get("securityContext", {})
        if not context.get("runAsNonRoot"):
            yield f"{container['name']}: runAsNonRoot is not set"
        # the image's USER is a name, which runAsNonRoot cannot check: a uid must be given
        if context.get("runAsUser") != uid:
            yield f"{container['name']} runs as {context.get('runAsUser')}; the image's uid: {uid}"


def ports(m: Manifests) -> Iterator[str]:
    _, exposed, _ = dockerfile()
    for container in containers(m.deployment):
        listens = pod_settings(m, container).http_port
        declared = {port["containerPort"] for port in container.get("ports", [])}
        if declared != {listens}:
            yield f"{container['name']} declares ports {declared}; the app listens on {listens}"
        if listens not in exposed:
            yield f"the app listens on {listens}; the Dockerfile EXPOSEs {exposed}"


def shutdown(m: Manifests) -> Iterator[str]:
    grace = m.pod["spec"].get("terminationGracePeriodSeconds", 30)
    for container in containers(m.deployment):
        pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if grace < pause + APP_STOP_SECONDS:
            yield (
                f"terminationGracePeriodSeconds {grace} < preStop {pause} s + the server's "
                f"{APP_STOP_SECONDS} s to stop"
            )


def images(m: Manifests) -> Iterator[str]:
    for container in containers(m.deployment):
        if not re.search(r"(:[^/]+|@.+)$", container["image"]):
            yield f"image {container['image']!r} has no tag: kustomization.yaml's images missed it"


CHECKS: list[Check] = [
    schemas, kinds, selectors, scaling, probes, environment, writes, identity, ports, shutdown,
    images,
]  # fmt: skip


def problems(folder: Path) -> list[str]:
    m = read(folder)
    found: list[str] = []
    for check in CHECKS:
        try:
            found.extend(check(m))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            found.append(f"{check.__name__}: {type(e).__name__}: {e}")
    return found


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_the_manifests_pass(check: Check) -> None:
    assert list(check(read(K8S))) == []


def test_the_secret_is_only_an_example() -> None:
    (kustomization,) = load_all(K8S / "kustomization.yaml")
    assert SECRET not in kustomization["resources"]
    assert all("REPLACE" in value for value in read(K8S).secret["stringData"].values())


# A broken manifest fails: (file, text, replacement, a problem's words).
BREAKAGES = [
    ("deployment.yaml", "readinessProbe:", "readinesProbe:", "'readinesProbe' was unexpected"),
    ("deployment.yaml", "failureThreshold: 30", "failureThreshold: x", "not of type 'integer'"),
    ("service.yaml", "name: softserve\n  ports", "name: softserv\n  ports", "selects no pod"),
    ("pdb.yaml", "io/name: softserve", "io/name: softserv", "selects no pod"),
    ("hpa.yaml", "name: softserve\n  minReplicas", "name: web\n  minReplicas", "targets"),
    ("hpa.yaml", "minReplicas: 3", "minReplicas: 1", "minReplicas below"),
    ("deployment.yaml", "  selector:\n", "  replicas: 3\n  selector:\n", "sets replicas"),
    ("deployment.yaml", "cpu: 500m\n", "", "requests none"),
    ("deployment.yaml", "path: /health/ready", "path: /healthz", "not a GET route"),
    ("deployment.yaml", "livenessProbe:\n            httpGet:\n              path: /health/live",
     "livenessProbe:\n            httpGet:\n              path: /health/ready",
     "livenessProbe asks /health/ready"),
    ("deployment.yaml", "containerPort: 8000", "containerPort: 8080", "the app listens on 8000"),
    ("service.yaml", "targetPort: http", "targetPort: web", "Service targetPort 'web'"),
    ("deployment.yaml", "SOFTSERVE_REPLICA_NAME", "SOFTSERVE_REPLICA", "is not a setting"),
    ("deployment.yaml", "key: api-token", "key: token", "key token is not in"),
    ("deployment.yaml", "value: /app/state", "value: /var/state", "the state folder"),
    ("deployment.yaml", "mountPath: /tmp", "mountPath: /var/tmp", "temp files"),
    ("deployment.yaml", "runAsUser: 10001", "runAsUser: 1000", "the image's uid: 10001"),
    ("deployment.yaml", "terminationGracePeriodSeconds: 20", "terminationGracePeriodSeconds: 10",
     "terminationGracePeriodSeconds 10"),
    ("kustomization.yaml", "- name: softserve", "- name: softserv", "images missed it"),
    ("kustomization.yaml", "  - hpa.yaml\n", "", "renders ['Deployment', 'PodDisruptionBudget"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("file", "text", "replacement", "words"), BREAKAGES, ids=[f"{b[0]}: {b[3]}" for b in BREAKAGES]
)
def test_a_broken_manifest_fails(
    tmp_path: Path, file: str, text: str, replacement: str, words: str
) -> None:
    folder = shutil.copytree(K8S, tmp_path / "k8s")
    original = (folder / file).read_text()
    assert original.count(text) == 1, f"{file}: {text!r} is not there once; update BREAKAGES"
    (folder / file).write_text(original.replace(text, replacement))
    found = problems(folder)
    assert any(words in problem for problem in found), found


@pytest.mark.parametrize(
    "addition",
    [
        "namespace: prod\n",
        "patches:\n  - path: more.yaml\n",
        "commonLabels:\n  team: ml\n",
        "labels:\n  - pairs: {team: ml}\n    includeSelectors: true\n",
        "resources:\n  - ../base\n",
    ],
)
def test_what_the_renderer_does_not_know_fails(tmp_path: Path, addition: str) -> None:
    folder = shutil.copytree(K8S, tmp_path / "k8s")
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    kustomization.update(yaml.safe_load(addition))
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    with pytest.raises(Unrendered):
        render(folder)


def test_the_renderer_agrees_with_kustomize() -> None:
    """Where kubectl is installed (CI does not install it), its kustomize renders the same."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the renderer is not compared with kustomize")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    theirs = [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]
    ours = render(K8S)
    key: Callable[[Object], str] = named
    assert sorted(ours, key=key) == sorted(theirs, key=key)
