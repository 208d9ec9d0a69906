"""schemathesis against a real uvicorn process, from the service's own OpenAPI schema.

Stateful sequences along the schema's links first (a job: start -> status, events, cancel ->
activate its version; a model: versions -> activate), then every operation with and without the
token. The checks (tests.support.fuzzing): no 5xx ever; every status, content type, header and
body as documented; schema-invalid input rejected; a created job readable. Bounded for CI: a
fixed number of derandomized cases. ``python -m bench.fuzz`` runs the same checks for longer.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.errors import FailureGroup

from service.app import create_app
from tests.support.fuzzing import TOKEN, fuzz, fuzz_config, fuzz_server
from tests.support.server import Server

MAX_EXAMPLES = 250  # per operation and phase, with the token; half that without it
STATEFUL_EXAMPLES = 100  # sequences of a few calls each

# The app's schema, which the server serves (test_the_served_schema_is_the_apps): parametrizing
# needs it when pytest collects, before any server runs.
SCHEMA = create_app().openapi()
with_token = schemathesis.openapi.from_dict(
    SCHEMA, config=fuzz_config(token=TOKEN, max_examples=MAX_EXAMPLES)
)
without_token = schemathesis.openapi.from_dict(
    SCHEMA, config=fuzz_config(token=None, max_examples=MAX_EXAMPLES // 2)
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with fuzz_server(tmp_path_factory.mktemp("fuzz")) as running:
        yield running
        log = running.log_text()
    unhandled = log.find("Traceback")  # nothing unhandled, even if it was answered
    assert unhandled < 0, log[max(0, unhandled - 1000) : unhandled + 4000]


@pytest.fixture(scope="module")
def api(server: Server) -> schemathesis.BaseSchema:
    """The schema as the running server serves it, aimed at that server."""
    config = fuzz_config(token=TOKEN, max_examples=MAX_EXAMPLES)
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)


def test_the_served_schema_is_the_apps(api: schemathesis.BaseSchema) -> None:
    assert api.raw_schema == SCHEMA


def test_stateful_sequences_along_the_links(server: Server) -> None:
    # Valid requests only: the sequences are about following links (the other phases send the
    # invalid ones), and a step that a schema-invalid body spends on a 4xx goes nowhere.
    config = fuzz_config(
        token=TOKEN, max_examples=STATEFUL_EXAMPLES, phases=["stateful"], mode="positive"
    )
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)
    report = fuzz(schema)
    assert not report.problems(), "\n".join(report.problems())
    assert report.server_errors == 0
    # The sequences went past their first call: jobs were started, then followed by their links.
    assert report.count("POST", "/train", 202) > 0
    assert (
        report.count("GET", "/train/{job_id}", 200) + report.count("DELETE", "/train/{job_id}", 200)
        > 0
    )
    assert report.count("GET", "/models/{name}/versions", 200) > 0
    # Reached, though how often with a 200 depends on the server's timing (a job's version is
    # null until it ends): test_the_version_links_activate follows those links deterministically.
    assert report.operations["POST /models/{name}/activate"].cases > 0


@with_token.parametrize()
def test_every_operation(case: schemathesis.Case[Any], server: Server) -> None:
    case.call_and_validate(base_url=server.url)


@without_token.parametrize()
def test_every_operation_without_the_token(case: schemathesis.Case[Any], server: Server) -> None:
    case.call_and_validate(base_url=server.url)  # /train, cancel and activate: a documented 401


def test_the_links_cover_the_training_and_model_resources() -> None:
    """The stateful test is only as deep as the links: a job to its status, events, cancel and
    version; a model to its versions and their activation."""
    paths: dict[str, Any] = SCHEMA["paths"]
    links = {
        (method.upper(), path, name)
        for path, item in paths.items()
        for method, operation in item.items()
        for response in operation["responses"].values()
        for name in response.get("links", {})
    }
    for name in ("GetJob", "JobEvents", "CancelJob", "ActivateItsVersion"):
        assert ("POST", "/train", name) in links
    assert ("GET", "/models/{name}/versions", "ActivateNewest") in links
    assert ("GET", "/models", "GetModel") in links


def _resolve(expression: Any, body: dict[str, Any]) -> Any:
    """A link's runtime expression (only ``$response.body#/json/pointer`` here) against a body."""
    assert isinstance(expression, str) and expression.startswith("$response.body#/"), expression
    value: Any = body
    for part in expression.removeprefix("$response.body#/").split("/"):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@pytest.mark.parametrize("link", ["ActivateNewest", "Reactivate"])
def test_the_version_links_activate(server: Server, link: str) -> None:
    """Each link from a model's versions, followed as written in the schema, activates a version."""
    target = SCHEMA["paths"]["/models/{name}/versions"]["get"]["responses"]["200"]["links"][link]
    assert target["operationRef"] == "#/paths/~1models~1{name}~1activate/post"
    with server.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        versions = client.get("/models/softmax/versions")
        assert versions.status_code == 200, versions.text
        name = _resolve(target["parameters"]["name"], versions.json())
        body = {key: _resolve(expr, versions.json()) for key, expr in target["requestBody"].items()}
        activated = client.post(f"/models/{name}/activate", json=body)
    assert activated.status_code == 200, activated.text
    assert activated.json()["name"] == "softmax"
    assert activated.json()["version"] == body["version"]


def test_a_server_error_fails_the_checks(api: schemathesis.BaseSchema, server: Server) -> None:
    """The fuzzing can fail: a 500, even in the service's own error shape, is reported."""
    case = api["/health/live"]["GET"].Case()
    request = httpx.Request("GET", f"{server.url}/health/live")
    body = {"error": {"code": "internal_error", "message": "boom", "details": None}}
    response = httpx.Response(500, json=body, request=request)
    response.elapsed = datetime.timedelta(milliseconds=1)
    with pytest.raises(FailureGroup, match="Server error"):
        case.validate_response(response)


def test_the_server_is_still_ready_afterwards(server: Server) -> None:
    with server.client() as client:
        assert client.get("/health/ready").status_code == 200
        r = client.post("/predict", json={"pixels": [0] * 784})
        assert r.status_code == 200, r.text
