"""A key put in a URL (as an EventSource user would) never reaches the access log of a real
``chordal serve``: its value is logged as ``<redacted>``; the rest of the line is kept."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest

from planner.service.accesslog import redact_query
from tests.integration.conftest import base_env
from tests.service.conftest import Server, start_server

REDIS_URL = os.environ.get("TEST_ACCESS_LOG_REDIS_URL", "redis://127.0.0.1:6379/13")
SECRET = "alice-secret-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = base_env(REDIS_URL, CHORDAL_TOOL_MODULES="workers.tools.testing",
                   CHORDAL_API_KEYS=f"alice={SECRET}")
    srv = start_server(env, tmp_path_factory.mktemp("access") / "serve.log")
    try:
        yield srv
    finally:
        srv.stop()


def access_line(srv: Server, marker: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [x for x in srv.log.read_text().splitlines() if marker in x]
        if lines:
            return lines[-1]
        time.sleep(0.1)
    raise AssertionError(f"no access log line with {marker!r}:\n{srv.log.read_text()}")


def test_a_key_in_the_query_string_is_redacted_in_the_access_log(server: Server):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        # No header: refused (a key in a URL is never read), and the answer says why.
        refused = http.get("/v1/runs/r1/events",
                           params={"api_key": SECRET, "after": "1-0", "x": "keep"})
        assert refused.status_code == 401
        assert "api_key" in refused.json()["error"]["message"]
        # With the header too: served, and still nothing of the URL's secrets logged.
        served = http.get("/v1/runs", params={"token": SECRET, "access_token": SECRET,
                                              "limit": "3", "Api-Key": SECRET},
                          headers={"Authorization": f"Bearer {SECRET}"})
        assert served.status_code == 200
    first = access_line(server, "/v1/runs/r1/events")
    assert "api_key=<redacted>" in first and "after=1-0" in first and "x=keep" in first
    assert '" 401' in first
    second = access_line(server, "GET /v1/runs?")
    assert "token=<redacted>" in second and "access_token=<redacted>" in second
    assert "Api-Key=<redacted>" in second and "limit=3" in second and '" 200' in second
    assert SECRET not in server.log.read_text()


def test_redaction_keeps_everything_but_credential_values():
    assert redact_query("/v1/runs") == "/v1/runs"
    assert redact_query("/a?after=1-0&cursor=x%3Ay") == "/a?after=1-0&cursor=x%3Ay"
    assert redact_query("/a?API%5FKEY=s&password=p&auth=b&flag") == \
        "/a?API%5FKEY=<redacted>&password=<redacted>&auth=<redacted>&flag"
    assert redact_query("/a?token") == "/a?token"  # no value, nothing to hide
