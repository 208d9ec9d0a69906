"""The OpenAPI document: every endpoint, typed responses with examples that validate, the one
error shape, the bearer-token scheme; and the docs pages. Against a real uvicorn process."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel

import service.routes
from service import schemas
from service.v2 import schemas as v2_schemas
from tests.support.server import Server

# The JSON responses and the models they are declared with.
TYPED = {
    (method.lower(), path): model
    for method, path, model in (
        line.split()
        for line in """
            GET /health/live Live
            GET /health/ready Ready
            POST /predict PredictResponse
            POST /models/{name}/predict PredictResponse
            GET /models ModelList
            GET /models/{name} ModelDetail
            GET /models/{name}/drift DriftFigures
            GET /models/{name}/confusion Confusion
            GET /datasets/test/random TestImage
            GET /models/{name}/versions Versions
            POST /models/{name}/activate ModelSummary
            POST /train Job
            GET /train JobList
            GET /train/{job_id} Job
            DELETE /train/{job_id} Job
            GET /metrics MetricsReport
            GET /v2 V2ServerMetadata
            GET /v2/health/live V2Live
            GET /v2/health/ready V2Ready
            GET /v2/models/{name} V2ModelMetadata
            GET /v2/models/{name}/versions/{version} V2ModelMetadata
            GET /v2/models/{name}/ready V2ModelReady
            GET /v2/models/{name}/versions/{version}/ready V2ModelReady
            POST /v2/models/{name}/infer V2InferenceResponse
            POST /v2/models/{name}/versions/{version}/infer V2InferenceResponse
        """.strip().splitlines()
    )
}
# Every endpoint: the JSON ones, and the event stream.
ENDPOINTS = {*TYPED, ("get", "/train/{job_id}/events")}
GUARDED = {("post", "/train"), ("delete", "/train/{job_id}"), ("post", "/models/{name}/activate")}


@pytest.fixture(scope="module")
def spec(server: Server) -> dict[str, Any]:
    with server.client() as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema and, through $ref and anyOf, the schemas it stands for."""
    found = [schema]
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        found += resolve(spec, spec["components"]["schemas"][name])
    for option in schema.get("anyOf", []):
        found += resolve(spec, option)
    return found


def has_example(spec: dict[str, Any], content: dict[str, Any]) -> bool:
    for media in content.values():
        if "example" in media or "examples" in media:
            return True
        if any("example" in s or "examples" in s for s in resolve(spec, media.get("schema", {}))):
            return True
    return False


def all_routers() -> list[APIRouter]:
    """The router of every module in service.routes: what the app serves besides its docs."""
    modules = pkgutil.iter_modules(service.routes.__path__, f"{service.routes.__name__}.")
    routers = [importlib.import_module(m.name).router for m in modules]
    assert routers
    return routers


def test_openapi_lists_every_endpoint(spec: dict[str, Any]) -> None:
    documented = set(operations(spec))
    assert documented >= ENDPOINTS
    routed = {
        (method.lower(), route.path)
        for router in all_routers()
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods or ()
    }
    assert documented == routed


def test_every_operation_has_a_summary_and_examples(spec: dict[str, Any]) -> None:
    for (method, path), operation in operations(spec).items():
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        success = [r for status, r in operation["responses"].items() if status.startswith("2")]
        assert success, where
        assert any(has_example(spec, r.get("content", {})) for r in success), where
        if "requestBody" in operation:
            assert has_example(spec, operation["requestBody"]["content"]), where


def test_documented_errors_have_the_one_error_shape(spec: dict[str, Any]) -> None:
    checked: set[str] = set()
    for (method, path), operation in operations(spec).items():
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                schemas = [m["schema"] for m in response["content"].values()]
                where = f"{method.upper()} {path} {status}"
                shape = "ErrorResponse"
                if path.startswith("/v2"):  # V2's {"error": "<message>"}; not ready: ready false
                    shape = "V2Ready" if where == "GET /v2/health/ready 503" else "V2Error"
                assert schemas == [{"$ref": f"#/components/schemas/{shape}"}], where
                checked.add(where)
    expected = {"POST /predict 422", "GET /health/ready 503", "POST /models/{name}/activate 422",
                "POST /v2/models/{name}/infer 422", "GET /v2/health/ready 503"}  # fmt: skip
    assert expected <= checked


def test_predict_documents_every_content_type(spec: dict[str, Any]) -> None:
    for path in ("/predict", "/models/{name}/predict"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]
        assert set(body) == {
            "application/json",
            "application/octet-stream",
            "image/png",
            "image/jpeg",
            "multipart/form-data",
        }


def test_docs_pages_answer(client: httpx.Client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in docs.text
    assert "/openapi.json" in docs.text
    assert client.get("/redoc").status_code == 200


def test_every_json_response_is_typed(spec: dict[str, Any]) -> None:
    found = {}
    for key, operation in operations(spec).items():
        for status, response in operation["responses"].items():
            media = response.get("content", {}).get("application/json")
            if status.startswith("2") and media is not None:
                ref = media["schema"].get("$ref", "")
                assert ref.startswith("#/components/schemas/"), (key, media["schema"])
                found[key] = ref.rsplit("/", 1)[-1]
    assert found == TYPED


def response_models() -> list[type[BaseModel]]:
    return [getattr(v2_schemas if name.startswith("V2") else schemas, name)
            for name in sorted(set(TYPED.values()))]  # fmt: skip


@pytest.mark.parametrize("model", response_models(), ids=lambda m: m.__name__)
def test_each_documented_example_is_a_valid_body(model: type[BaseModel]) -> None:
    """An example that drifted from the model it documents fails here."""
    examples: list[Any] = model.model_json_schema().get("examples", [])
    if model is schemas.PredictResponse:  # documented on the route: JSON and raw answers
        from service.openapi import predict_docs

        examples = [predict_docs(named=False)["responses"][200]["content"]["application/json"][
            "example"
        ]]  # fmt: skip
    assert examples, model.__name__
    for example in examples:
        model.model_validate(example)


def test_guarded_operations_declare_the_bearer_scheme(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "SOFTSERVE_API_TOKEN, when one is set",
        }
    }
    secured = {key for key, op in operations(spec).items() if op.get("security")}
    assert secured == GUARDED
    for key in GUARDED:
        assert operations(spec)[key]["security"] == [{"HTTPBearer": []}]


def test_live_bodies_validate_against_their_models(client: httpx.Client) -> None:
    """What the server sends is what the document says, for the endpoints a fresh server can
    answer without side effects (the fuzz tests check the rest)."""
    for path, model in (
        ("/health/live", schemas.Live),
        ("/health/ready", schemas.Ready),
        ("/models", schemas.ModelList),
        ("/models/softmax", schemas.ModelDetail),
        ("/models/binary", schemas.ModelDetail),
        ("/models/softmax/versions", schemas.Versions),
        ("/train", schemas.JobList),
        ("/metrics", schemas.MetricsReport),
        ("/v2", v2_schemas.V2ServerMetadata),
        ("/v2/models/softmax", v2_schemas.V2ModelMetadata),
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        model.model_validate(response.json())
