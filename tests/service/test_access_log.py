"""A key put in a URL (as an EventSource user would) never reaches the access log of a real
``chordal serve``: only the API's own query parameters keep their values; every other is
logged as ``<redacted>``, whatever its name; the rest of the line is kept."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from planner.service.accesslog import query_names, redact_query
from planner.service.app import create_app
from planner.settings import Settings
from tests import redis_server
from tests.integration.conftest import base_env
from tests.service.conftest import Server, start_server

REDIS_URL = redis_server.url(13)
SECRET = "alice-secret-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = base_env(REDIS_URL, CHORDAL_TOOL_MODULES="planner.tools.testing",
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
        # No header: refused (a key in a URL is never read), and the answer says why
        # without quoting what was in the URL.
        refused = http.get("/v1/runs/r1/events",
                           params={"api_key": SECRET, "after": "1-0", "x": "other"})
        assert refused.status_code == 401
        message = refused.json()["error"]["message"]
        assert "a credential in the URL is never read" in message
        assert "api_key" not in message and SECRET not in message
        # A name that holds the secret (Starlette reads a parameter "api_key=<secret>"):
        # neither quoted in the 401 nor logged.
        encoded = http.get(f"/v1/runs/r2/events?api_key%3D{SECRET}")
        assert encoded.status_code == 401
        assert "never read" in encoded.text and SECRET not in encoded.text
        # With the header too: served, and still nothing of the URL's secrets logged,
        # whatever the names (only the API's own parameters keep their values).
        named = "&".join(f"{n}={SECRET}" for n in ("token", "pwd", "jwt", "sig", "bearer",
                                                   "access"))
        served = http.get(f"/v1/runs?limit=3&x=1;api_key={SECRET}&{named}",
                          headers={"Authorization": f"Bearer {SECRET}"})
        assert served.status_code == 200, served.text
    first = access_line(server, "/v1/runs/r1/events")
    assert "api_key=<redacted>" in first and "after=1-0" in first and "x=<redacted>" in first
    assert '" 401' in first
    assert "/v1/runs/r2/events?<redacted>" in access_line(server, "/v1/runs/r2/events")
    second = access_line(server, "GET /v1/runs?")
    assert "limit=3" in second and '" 200' in second
    for name in ("x", "api_key", "token", "pwd", "jwt", "sig", "bearer", "access"):
        assert f"{name}=<redacted>" in second, (name, second)
    assert SECRET not in server.log.read_text()


API = frozenset({"after", "cursor", "limit", "status"})


def test_only_the_apis_own_parameters_keep_their_values():
    assert redact_query("/v1/runs", API) == "/v1/runs"
    assert redact_query("/a?after=1-0&cursor=1.5%3Aab", API) == "/a?after=1-0&cursor=1.5%3Aab"
    assert redact_query("/a?API%5FKEY=s&pwd=p&sig=s&access=a&limit=3", API) == \
        "/a?API%5FKEY=<redacted>&pwd=<redacted>&sig=<redacted>&access=<redacted>&limit=3"
    # A name that holds a value, or a bare one (a pasted key): all of it.
    assert redact_query("/a?api_key%3Dsekrit&limit=2", API) == "/a?<redacted>&limit=2"
    assert redact_query("/a?sk-live-sekrit", API) == "/a?<redacted>"
    assert redact_query("/a?Bearer%20sekrit=x", API) == "/a?<redacted>"
    # ``;`` separates too; an API parameter whose value hides another is redacted.
    assert redact_query("/a?x=1;api_key=sekrit", API) == "/a?x=<redacted>;api_key=<redacted>"
    assert redact_query("/a?after=1;api_key=sekrit", API) == "/a?after=1;api_key=<redacted>"
    assert redact_query("/a?after=1%26api_key%3Dsekrit", API) == "/a?after=<redacted>"


def test_the_logged_parameters_are_the_routes_own():
    app = create_app(Settings.from_env({"CHORDAL_REDIS_URL": REDIS_URL,
                                        "CHORDAL_API_KEYS": f"alice={SECRET}"}))
    names = query_names(app)
    assert {"after", "cursor", "limit", "status"} <= names
    assert not names & {"api_key", "token", "key"}
