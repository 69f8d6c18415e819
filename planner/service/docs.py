"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc): the API's pages for people, over
``/openapi.json``, with every file they load served here (from the ``fastapi-offline``
package), never from a CDN: they work on a machine with no internet access, and a
deployment's pages load nothing from a third party.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the pages' scripts, styles and icon are served.
ASSETS = "/docs/assets"
ASSET_DIR = Path(str(files("fastapi_offline") / "static"))


def _root(request: Request) -> str:
    """The prefix a proxy mounts the API under (ASGI root_path): the pages' URLs carry it."""
    return str(request.scope.get("root_path") or "").rstrip("/")


def install(app: FastAPI) -> None:
    """Add the two pages and their assets to ``app`` (made with ``docs_url=None`` and
    ``redoc_url=None``, so FastAPI's CDN-loading pages are not there)."""
    app.mount(ASSETS, StaticFiles(directory=ASSET_DIR), name="docs-assets")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} API",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            # No badge from the public validator service: nothing leaves this origin.
            swagger_ui_parameters={"validatorUrl": None})

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} API",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png", with_google_fonts=False)
