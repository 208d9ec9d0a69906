"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served by the service from the JavaScript, CSS
and icon that the fastapi-offline package ships, so that both pages work without internet.

FastAPI's own pages load those files from a CDN. Here every URL a page names is a path on this
server: the OpenAPI document, and the four files under ``/docs/assets/``. Those answer with a
year-long Cache-Control; the pages ask for them with the package's version in the query, so an
upgrade of the files is fetched anew. Swagger UI keeps its defaults (``persistAuthorization``
off: a token given to "Authorize" lasts until the page is reloaded); its validator badge is off,
as it would send the document's address to validator.swagger.io. ReDoc's one outside request,
the Redocly logo it shows under its menu, is pointed at an empty inline image (`PATCHES`). No
OAuth2 redirect page: the only security scheme is an HTTP bearer token, which needs none.
"""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from service.errors import NotFound

__all__ = ["ASSETS", "ASSETS_PATH", "PATCHES", "install"]

ASSETS_PATH = "/docs/assets"
ASSETS = {  # name in fastapi_offline/static -> Content-Type
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
# Outside addresses in the shipped files, and what replaces them when served.
PATCHES = {
    "redoc.standalone.js": (
        b"https://cdn.redoc.ly/redoc/logo-mini.svg",
        b"data:image/svg+xml,%3Csvg%20xmlns=%27http://www.w3.org/2000/svg%27/%3E",
    ),
}
_PACKAGE = "fastapi_offline"
_CACHE = "public, max-age=31536000, immutable"
_METHODS = ["GET", "HEAD"]  # as FastAPI's own docs routes answer


def install(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and ``/docs/assets/{name}`` (GET and HEAD) to ``app``, none of
    them in its OpenAPI document. Raises RuntimeError if an asset is missing from the installed
    package, so a broken install fails at startup rather than as a blank page, and ValueError
    for an app without an OpenAPI document."""
    if app.openapi_url is None:
        raise ValueError("the docs pages need the OpenAPI document: app.openapi_url is None")
    openapi_path = app.openapi_url
    folder = _asset_folder()
    tag = metadata.version("fastapi-offline")

    def asset_url(request: Request, name: str) -> str:
        return f"{_root(request)}{ASSETS_PATH}/{name}?v={tag}"

    @app.api_route("/docs", methods=_METHODS, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=_root(request) + openapi_path,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset_url(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset_url(request, "swagger-ui.css"),
            swagger_favicon_url=asset_url(request, "favicon.png"),
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )

    @app.api_route("/redoc", methods=_METHODS, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=_root(request) + openapi_path,
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset_url(request, "redoc.standalone.js"),
            redoc_favicon_url=asset_url(request, "favicon.png"),
            with_google_fonts=False,
        )

    patched = {name: (folder / name).read_bytes().replace(old, new)
               for name, (old, new) in PATCHES.items()}  # fmt: skip

    @app.api_route(ASSETS_PATH + "/{name}", methods=_METHODS, include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no such docs asset: {name[:100]!r}; there are {', '.join(ASSETS)}")
        headers = {"Cache-Control": _CACHE}
        if name in patched:
            return Response(patched[name], media_type=media_type, headers=headers)
        return FileResponse(folder / name, media_type=media_type, headers=headers)


def _asset_folder() -> Path:
    """fastapi-offline's folder of static files, each of `ASSETS` checked to be there."""
    folder = Path(str(resources.files(_PACKAGE) / "static"))
    missing = [name for name in ASSETS if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(
            f"the {_PACKAGE} package has no {', '.join(missing)} in {folder}: "
            "reinstall fastapi-offline (the /docs and /redoc pages serve them)"
        )
    return folder


def _root(request: Request) -> str:
    """The path prefix the app is served under (uvicorn --root-path), as FastAPI's pages use it."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")
