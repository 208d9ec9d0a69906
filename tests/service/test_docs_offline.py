"""/docs and /redoc work without internet: every file the pages name is served by the service
itself, from the fastapi-offline package. Against a real uvicorn process."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources
from urllib.parse import urlsplit

import httpx
import pytest

from service.docs_offline import ASSETS, ASSETS_PATH, PATCHES
from tests.service.catalogue import assert_error

PAGES = ("/docs", "/redoc")
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
ABSOLUTE = re.compile(r"(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)  # http://, https://, //cdn


class Links(HTMLParser):
    """Every src= and href= of a page, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value or "" for name, value in attrs if name in ("src", "href")]


def links(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    parser.close()
    return parser.found


def page(client: httpx.Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


@pytest.mark.parametrize("path", PAGES)
def test_pages_name_only_paths_on_this_server(client: httpx.Client, path: str) -> None:
    html = page(client, path)
    found = links(html)
    assert found, f"{path} names no file"
    for link in found:
        assert link.startswith("/") and not ABSOLUTE.match(link), f"{path}: {link}"
    # Nor anywhere else in the page, a script's config included.
    assert not re.search(r"https?://|['\"(=]\s*//", html, re.IGNORECASE), html
    assert "fonts.googleapis" not in html


@pytest.mark.parametrize("path", PAGES)
def test_every_file_a_page_names_is_served(client: httpx.Client, path: str) -> None:
    static = resources.files("fastapi_offline") / "static"
    for link in links(page(client, path)):
        target = urlsplit(link).path
        response = client.get(link)
        assert response.status_code == 200, link
        suffix = target[target.rfind(".") :]
        assert response.headers["content-type"].startswith(CONTENT_TYPES[suffix]), link
        assert len(response.content) > 1000, link
        name = target.removeprefix(f"{ASSETS_PATH}/")
        shipped = (static / name).read_bytes()
        if name in PATCHES:  # its one outside address replaced, nothing else
            old, new = PATCHES[name]
            assert old in shipped and old not in response.content, link
            shipped = shipped.replace(old, new)
        assert response.content == shipped, link
        max_age = re.search(r"max-age=(\d+)", response.headers["cache-control"])
        assert max_age is not None and int(max_age[1]) >= 86400, response.headers


@pytest.mark.parametrize("path", [*PAGES, f"{ASSETS_PATH}/swagger-ui.css"])
def test_head_answers_like_get(client: httpx.Client, path: str) -> None:
    head, get = client.head(path), client.get(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))


def test_the_pages_use_every_asset(client: httpx.Client) -> None:
    named = {urlsplit(link).path for path in PAGES for link in links(page(client, path))}
    assert named == {f"{ASSETS_PATH}/{name}" for name in ASSETS}


def test_swagger_ui_reads_this_servers_openapi_document(client: httpx.Client) -> None:
    html = page(client, "/docs")
    assert re.search(r"\burl: '/openapi\.json'", html), html
    assert '"validatorUrl": null' in html  # the badge would call validator.swagger.io
    assert '"persistAuthorization": true' not in html  # the token is not kept in the browser
    redoc = page(client, "/redoc")
    assert 'spec-url="/openapi.json"' in redoc
    document = client.get("/openapi.json")
    assert document.status_code == 200
    assert "HTTPBearer" in document.json()["components"]["securitySchemes"]  # "Authorize"
    assert not {"/docs", "/redoc", f"{ASSETS_PATH}/{{name}}"} & set(document.json()["paths"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope.js", "no such docs asset: 'nope.js'"),
        ("swagger-ui.css.map", "no such docs asset"),
        ("..%2Fcore.py", "no such endpoint"),  # a slash in the name routes nowhere
        ("", "no such endpoint"),
    ],
)
def test_unknown_asset_is_404(client: httpx.Client, name: str, message: str) -> None:
    assert_error(client.get(f"{ASSETS_PATH}/{name}"), 404, "not_found", message)
