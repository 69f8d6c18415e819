"""The run page: ``/`` (recent runs) and ``/runs/{id}``, static files shipped as package
data (``planner/service/page/``), fed by the API with the key the user enters.

The HTML shells and the static files need no key: the page asks for one, keeps it in the
tab's ``sessionStorage`` and sends it as ``Authorization: Bearer`` on every API request
(the events stream too, read with ``fetch``), so a key never appears in a URL. Every
response carries a Content-Security-Policy that allows nothing but this origin.
"""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

PAGE_DIR = Path(__file__).resolve().parent / "page"
SHELL = "index.html"

#: Scripts, styles, images, fonts and API calls from this origin only; no inline code, no
#: plugins, no framing, no <base> tricks, forms post only here.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8",
         ".md": "text/markdown; charset=utf-8", ".png": "image/png"}

router = APIRouter(include_in_schema=False)


def _static_files() -> dict[str, Path]:
    """Every file under the page's directory but the shell, by its path there: the only
    names ``/static/`` serves (nothing outside it, whatever the URL says)."""
    return {p.relative_to(PAGE_DIR).as_posix(): p for p in sorted(PAGE_DIR.rglob("*"))
            if p.is_file() and p.name != SHELL and not p.name.startswith(".")}


STATIC = _static_files()
SHELL_TEXT = (PAGE_DIR / SHELL).read_text(encoding="utf-8")


def _shell(request: Request, view: str) -> HTMLResponse:
    # The root path (behind a proxy that mounts the service under a prefix) is the only
    # value put into the HTML, escaped; the run id is read from the URL by the script.
    root = html.escape(str(request.scope.get("root_path") or "").rstrip("/"), quote=True)
    text = SHELL_TEXT.replace("{{root}}", root).replace("{{view}}", view)
    return HTMLResponse(text, headers={**HEADERS, "Cache-Control": "no-store"})


@router.api_route("/", methods=["GET", "HEAD"])
def runs_page(request: Request) -> HTMLResponse:
    """Recent runs (of the key the page holds)."""
    return _shell(request, "runs")


@router.api_route("/runs/{run_id}", methods=["GET", "HEAD"])
def run_page(request: Request, run_id: str) -> HTMLResponse:
    """One run, live: its DAG, versions, timeline, attempts and errors, usage, answer."""
    return _shell(request, "run")


@router.api_route("/static/{name:path}", methods=["GET", "HEAD"])
def static_file(name: str) -> Response:
    path = STATIC.get(name)
    if path is None:
        raise HTTPException(404, f"no such file: /static/{name}")
    media = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] \
        or "application/octet-stream"
    # Revalidated on every load (ETag / Last-Modified): an upgrade is never half-cached.
    return FileResponse(path, media_type=media,
                        headers={**HEADERS, "Cache-Control": "no-cache"})
