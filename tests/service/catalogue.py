"""Helpers for the bad-input catalogues (tests/service/test_predict_api.py, test_hostile.py):
request builders, one `case` per catalogue row, `send` within a time bound, `assert_error` for
the one JSON error shape and `check_case` for a whole row. No tests here."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.requests import encode
from tests.support.requests import multipart as build_multipart

__all__ = [
    "BOUND",
    "GOOD_PNG",
    "JSON",
    "JSON_IMAGE",
    "ONE",
    "PIXELS",
    "PNG",
    "RAW",
    "RAW_TYPE",
    "assert_error",
    "case",
    "check_case",
    "multipart",
    "pixels_with",
    "send",
    "typed",
    "uploads",
]

JSON, PNG = "application/json", "image/png"
BOUND = 10.0  # seconds a request may take before it counts as a hang
RAW_TYPE = "application/octet-stream"
RAW = {"content-type": RAW_TYPE}


PIXELS = [0] * 784
GOOD_PNG = encode(np.arange(784) % 256, "PNG")
JSON_IMAGE = json.dumps({"pixels": PIXELS}).encode()
ONE = {"json": {"pixels": PIXELS}}


def typed(data: bytes, content_type: str) -> dict[str, Any]:
    return {"content": data, "headers": {"content-type": content_type}}


def pixels_with(index: int, value: Any) -> list[Any]:
    return [*PIXELS[:index], value, *PIXELS[index + 1 :]]


def uploads(*files: tuple[str, bytes]) -> dict[str, Any]:
    return {"files": [("file", (name, data, "image/png")) for name, data in files]}


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = "b0undary") -> dict[str, Any]:
    """A multipart body written by hand, for shapes httpx will not produce."""
    body, content_type = build_multipart([(*part, None) for part in parts], boundary)
    return typed(body, content_type)


def case(name: str, url: str, request: dict[str, Any], status: int, code: str, message: str) -> Any:
    """One catalogue row: ``url`` is a path, or "METHOD path" for other methods than POST."""
    method, _, path = url.rpartition(" ")
    return pytest.param(method or "POST", path, request, status, code, message, id=name)


def assert_error(response: httpx.Response, status: int, code: str, message: str) -> dict[str, Any]:
    """The response is `status` in the one error shape, with `code`, `message` in its message,
    and the request's id, as its X-Request-ID header says; returns the error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert sorted(body["error"]) == ["code", "details", "message", "request_id"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert body["error"]["code"] == code
    assert message in body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def send(client: httpx.Client, method: str, url: str, request: dict[str, Any]) -> httpx.Response:
    """The request, failing the test if it takes longer than `BOUND` to answer."""
    start = time.monotonic()
    try:
        return client.request(method, url, timeout=BOUND, **request)
    except httpx.TimeoutException:
        pytest.fail(f"{method} {url[:80]}: no answer within {BOUND} s")
    finally:
        assert time.monotonic() - start < BOUND + 1


def check_case(
    client: httpx.Client,
    method: str,
    url: str,
    request: dict[str, Any],
    status: int,
    code: str,
    message: str,
) -> httpx.Response:
    """One catalogue row: its status, code and message within the time bound, and an answer
    that stays small (an echo of a huge input is not an answer)."""
    response = send(client, method, url, request)
    error = assert_error(response, status, code, message)
    assert len(error["message"]) <= 400, error["message"][:500]
    assert len(response.content) <= 4096, response.content[:500]
    return response
