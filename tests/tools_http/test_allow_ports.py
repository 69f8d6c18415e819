"""Allow-list entries with a port (``host:port``, ``[v6]:port``): the host on that port
only. A host alone still means every port of it. Bad entries stop the process at start,
naming the variable. The same entries for http_request and for run callbacks."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from planner.callbacks import refusal
from planner.errors import ConfigError, PermanentError
from planner.net import check_callback_url, host_allowed, named_exactly
from planner.settings import Settings
from tests.integration.conftest import ROOT
from tests.tools_http.test_http_request import get, settings

REDIS_PORT = 6379


@pytest.fixture
def other_port() -> Iterator[socket.socket]:
    """A listening port that nothing may reach: a connection would show in accept()."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    yield sock
    sock.close()


def untouched(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def test_http_request_reaches_only_the_named_port(web: str, other_port: socket.socket):
    port = int(web.rsplit(":", 1)[1])
    only = settings(f"127.0.0.1:{port}")
    assert get(only, f"http://{web}/echo")["json"]["headers"]["host"] == web
    elsewhere = other_port.getsockname()[1]
    for target in (elsewhere, REDIS_PORT):
        with pytest.raises(PermanentError, match=(
                rf"port {target} of host '127.0.0.1' is not allowed \(the workers' "
                rf"CHORDAL_HTTP_ALLOW allows it on port {port} only\)")):
            get(only, f"http://127.0.0.1:{target}/")
    # A redirect is a new hop, checked the same way.
    with pytest.raises(PermanentError, match=f"port {elsewhere} of host"):
        get(only, f"http://{web}/redirect", params={"to": f"http://127.0.0.1:{elsewhere}/"})
    assert untouched(other_port)  # refused before any connection
    # The default port of the scheme counts: 127.0.0.1:80 does not allow :8080.
    assert host_allowed("api.example.com", 443, ["api.example.com:443"])
    assert not host_allowed("api.example.com", 80, ["api.example.com:443"])
    # A host alone is every port of it (its risk: docs/tools.md says so).
    assert get(settings("127.0.0.1"), f"http://{web}/echo")["status"] == 200


def test_patterns_ipv6_and_secrets_take_ports_too(web: str):
    assert host_allowed("a.example.com", 8443, ["*.example.com:8443"])
    assert not host_allowed("a.example.com", 443, ["*.example.com:8443"])
    assert host_allowed("x.org", 443, ["*:443"], star=True)
    assert not host_allowed("x.org", 80, ["*:443"], star=True)
    assert host_allowed("::1", 8080, ["[::1]:8080"])
    assert not host_allowed("::1", 8081, ["[::1]:8080"])
    assert host_allowed("::1", 8081, ["::1"]) and host_allowed("::1", 8081, ["[::1]"])
    # Named exactly on that port: only then a private address.
    assert named_exactly("127.0.0.1", 8080, ["127.0.0.1:8080"])
    assert not named_exactly("127.0.0.1", 6379, ["127.0.0.1:8080"])
    # A secret scoped to host:port goes there only.
    port = web.rsplit(":", 1)[1]
    s = settings(
        "127.0.0.1", http_secrets=f'{{"t": {{"value": "v-0123", "hosts": ["127.0.0.1:{port}"]}}}}')
    echoed = get(s, f"http://{web}/echo", secret_headers={"X-Key": "${t}"})["json"]
    assert echoed["headers"]["x-key"] == "v-0123"
    with pytest.raises(PermanentError, match="may not be sent"):
        get(s, "http://127.0.0.1:1/echo", secret_headers={"X-Key": "${t}"})


def test_callbacks_reach_only_the_named_port():
    allow = ["hooks.example.com:8443", "127.0.0.1:9000"]
    assert check_callback_url("https://hooks.example.com:8443/x", allow)
    with pytest.raises(Exception, match=r"callback_url: port 443 of host "
                                        r"'hooks.example.com' is not allowed "
                                        r"\(CHORDAL_CALLBACK_ALLOW allows it on port 8443"):
        check_callback_url("https://hooks.example.com/x", allow)
    assert refusal("http://127.0.0.1:9000/hook", allow, ["127.0.0.1"]) is None
    why = refusal(f"http://127.0.0.1:{REDIS_PORT}/", allow, ["127.0.0.1"])
    assert why is not None and f"port {REDIS_PORT}" in why and "CHORDAL_CALLBACK_ALLOW" in why


@pytest.mark.parametrize("entry", ["host:notaport", ":80", "h:0", "h:65536", "[::1",
                                   "[::1]x", "[h]:80", "h:"])
@pytest.mark.parametrize("var", ["CHORDAL_HTTP_ALLOW", "CHORDAL_CALLBACK_ALLOW"])
def test_a_bad_entry_is_refused_naming_the_variable(var: str, entry: str):
    with pytest.raises(ConfigError, match=rf"^{var}: .*{entry.replace('[', '.')}"):
        Settings.from_env({var: f"ok.example.com,{entry}"})


def test_a_process_with_a_bad_entry_does_not_start():
    env = {"PATH": "/usr/bin:/bin", "CHORDAL_CALLBACK_ALLOW": "hooks.example.com:https",
           "CHORDAL_API_KEYS": "a=0123456789abcdef0123"}
    done = subprocess.run([sys.executable, "-m", "planner.cli", "serve", "--port", "1"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "CHORDAL_CALLBACK_ALLOW" in done.stderr and "hooks.example.com:https" in \
        done.stderr, done.stderr
