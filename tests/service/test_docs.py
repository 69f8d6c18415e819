"""``/docs`` and ``/redoc`` work with no internet access: every file the pages load comes
from the server itself (the sandbox these tests run in has no route out), and Swagger UI,
in a real Chromium that is refused anything off this origin, renders every operation."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.service.conftest import Server

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def assets(http: httpx.Client, page: str) -> list[str]:
    reply = http.get(page)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    found = ASSET.findall(reply.text)
    # Also the URLs the page's script is given (Swagger UI's bundle, ReDoc's spec URL).
    found += re.findall(r"""(?:url|spec-url)["']?\s*[:=]\s*["']([^"']+)["']""", reply.text)
    return [urljoin(f"{http.base_url}{page}", u) for u in found]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_file_of_the_api_pages_is_served_here(api: Server, page: str):
    with api.http(None) as http:
        urls = assets(http, page)
        assert len(urls) >= 2, urls  # a script, and the spec or a style
        origin = urlsplit(api.url).netloc
        for url in urls:
            assert urlsplit(url).netloc == origin, f"{page} loads {url} from elsewhere"
            reply = http.get(url)
            assert reply.status_code == 200, (url, reply.status_code)
            assert len(reply.content) > 100, url


def chromium() -> str | None:
    found = os.environ.get("CHORDAL_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    return found if found and Path(found).exists() else None


def test_swagger_ui_renders_every_operation_offline(api: Server):
    path = chromium()
    if path is None:
        pytest.fail("no Chromium: apt-get install chromium (.ci/run does), or set "
                    "CHORDAL_CHROMIUM")
    from playwright.sync_api import sync_playwright

    origin = urlsplit(api.url).netloc
    elsewhere: list[str] = []

    def only_here(route: object) -> None:
        request = route.request  # type: ignore[attr-defined]
        if urlsplit(request.url).netloc == origin:
            route.continue_()  # type: ignore[attr-defined]
        else:  # as with no network at all
            elsewhere.append(request.url)
            route.abort()  # type: ignore[attr-defined]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("**/*", only_here)
            page.goto(f"{api.url}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            shown = page.locator(".opblock-summary-path").all_inner_texts()
            title = page.locator(".title").first.inner_text()
        finally:
            browser.close()
    assert elsewhere == []
    paths = {s.replace("\u200b", "").strip() for s in shown}
    assert {"/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/events",
            "/v1/runs/{run_id}/cancel", "/healthz"} <= paths, paths
    assert title.startswith("Chordal")
