"""The web console at /ui (and / redirecting there): plain HTML, CSS and JavaScript shipped in
this package, no build step and nothing fetched from elsewhere, so it works offline.

Its pages call only the public API. Every console response carries a Content-Security-Policy
that allows the service's own origin alone; the API token the pages ask for stays in the page's
memory (docs/console.md).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from service.errors import NotFound

__all__ = ["ASSETS", "CSP", "router"]

STATIC = Path(__file__).with_name("static")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
ASSETS = {  # what /ui/assets serves, with its media type
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # small files; a new version shows on the next load
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui")
async def page() -> Response:
    body = (STATIC / "index.html").read_bytes()
    return Response(body, media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/ui/assets/{name}")
async def asset(name: str) -> Response:
    media = ASSETS.get(name)
    if media is None:
        raise NotFound(f"no console asset {name[:60]!r}", code="not_found")
    return Response((STATIC / name).read_bytes(), media_type=media, headers=_HEADERS)
