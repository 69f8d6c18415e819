"""http_request against a real local server: the allow-list, private addresses, redirects
re-checked, secrets by name, caps, and which failures are transient."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from planner.errors import ConfigError, PermanentError, TransientError
from planner.settings import Settings
from planner.tools import ToolContext, load_registry
from planner.tools.builtin.http import fetch, http_request, public, shown

SECRET = "s3cr3t-value-never-shown"


def settings(*allow: str, **env: str) -> Settings:
    values = {"CHORDAL_HTTP_ALLOW": ",".join(allow), **{
        f"CHORDAL_{k.upper()}": v for k, v in env.items()}}
    return Settings.from_env({k: v for k, v in values.items() if v})


def get(s: Settings, url: str, method: str = "GET", headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None, body: Any = None,
        secret_headers: dict[str, str] | None = None) -> Any:
    return fetch(s, url, method, headers or {}, params or {}, body, secret_headers or {})


def test_off_by_default(web):
    with pytest.raises(PermanentError, match="CHORDAL_HTTP_ALLOW"):
        get(Settings.from_env({}), f"http://{web}/echo")


def test_an_allowed_host_answers_json_or_text(web):
    s = settings("127.0.0.1")
    out = get(s, f"http://{web}/echo", "POST", headers={"X-Trace": "t1"},
              params={"q": "chordal", "n": 2, "all": True}, body={"a": [1, 2]})
    assert out["status"] == 200
    assert out["headers"]["content-type"] == "application/json"
    echoed = out["json"]
    assert echoed["method"] == "POST" and echoed["body"] == {"a": [1, 2]}
    assert echoed["query"] == {"q": "chordal", "n": "2", "all": "true"}
    assert echoed["headers"]["x-trace"] == "t1"
    assert echoed["headers"]["host"] == web
    assert get(s, f"http://{web}/text") == {
        "status": 200, "headers": pytest.approx(get(s, f"http://{web}/text")["headers"]),
        "text": "héllo"}
    assert "text" in get(s, f"http://{web}/echo", "HEAD") and get(
        s, f"http://{web}/echo", "HEAD")["text"] == ""


def test_hosts_outside_the_allow_list_are_refused(web):
    with pytest.raises(PermanentError, match=r"host '127.0.0.1' is not allowed .*"
                                             "CHORDAL_HTTP_ALLOW"):
        get(settings("*.example.com", "example.org"), f"http://{web}/echo")
    for bad in ("ftp://127.0.0.1/x", "http:///nohost", f"http://user:pw@{web}/"):
        with pytest.raises(PermanentError, match="url"):
            get(settings("127.0.0.1"), bad)


def test_private_addresses_need_the_host_named_exactly(web):
    port = web.rsplit(":", 1)[1]
    anyone = settings("*")
    # An IP literal, a name that resolves to loopback, cloud metadata (link-local): a
    # wildcard never opens the private network, and nothing is connected to.
    for url in (f"http://{web}/echo", f"http://localhost:{port}/echo",
                "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/"):
        with pytest.raises(PermanentError, match="non-public address"):
            get(anyone, url)
    # Named exactly: allowed. The connection goes to the address that was checked, and
    # the server still sees the name it was asked for (no second lookup to rebind).
    out = get(settings("localhost"), f"http://localhost:{port}/echo")
    assert out["json"]["headers"]["host"] == f"localhost:{port}"
    assert not public("127.0.0.1") and not public("::ffff:169.254.169.254")
    assert not public("fd00::1") and public("93.184.216.34")
    # IPv6 forms that carry an IPv4 address are judged by it (a NAT64 or 6to4 network
    # would take them to loopback or the metadata service); Teredo never passes.
    for carried in ("2002:7f00:1::", "64:ff9b::a9fe:a9fe", "::7f00:1", "::1", "::",
                    "2001:0:4136:e378:8000:63bf:80ff:fffe", "64:ff9b:1:7f00:0:100:808:808",
                    "::ffff:0:7f00:1", "fec0::1"):
        assert not public(carried), carried
    assert public("2002:5db8:d822::") and public("64:ff9b::5db8:d822")
    assert public("2606:4700::1111")


def test_redirects_are_followed_and_every_hop_checked(web):
    port = web.rsplit(":", 1)[1]
    s = settings("127.0.0.1")
    out = get(s, f"http://{web}/redirect", params={"to": "/echo?hop=2"})
    assert out["json"]["query"] == {"hop": "2"}
    out = get(s, f"http://{web}/redirect", "POST", body={"x": 1},
              params={"to": "/echo", "status": "303"})
    assert out["json"]["method"] == "GET" and out["json"]["body"] is None
    with pytest.raises(PermanentError, match=r"'169.254.169.254' is not allowed"):
        get(s, f"http://{web}/redirect", params={"to": "http://169.254.169.254/"})
    with pytest.raises(PermanentError, match="non-public address"):
        get(settings("127.0.0.1", "*"), f"http://{web}/redirect",
            params={"to": f"http://localhost:{port}/echo"})
    with pytest.raises(PermanentError, match="more than 5 redirects"):
        get(s, f"http://{web}/loop")


def test_secrets_come_from_settings_by_name_and_stay_on_their_hosts(web):
    port = web.rsplit(":", 1)[1]
    secrets = json.dumps({"tok": {"value": SECRET, "hosts": ["127.0.0.1"]},
                          "other": {"value": "x", "hosts": ["api.example.com"]}})
    s = settings("127.0.0.1", "localhost", http_secrets=secrets)
    out = get(s, f"http://{web}/echo", secret_headers={"Authorization": "Bearer ${tok}"})
    assert out["json"]["headers"]["authorization"] == f"Bearer {SECRET}"
    # A redirect to another host drops the secret (and plain credentials) on the way.
    out = get(s, f"http://{web}/redirect",
              headers={"Cookie": "c=1", "X-Keep": "k"},
              secret_headers={"Authorization": "Bearer ${tok}"},
              params={"to": f"http://localhost:{port}/echo"})
    seen = out["json"]["headers"]
    assert "authorization" not in seen and "cookie" not in seen and seen["x-keep"] == "k"
    with pytest.raises(PermanentError) as unknown:
        get(s, f"http://{web}/echo", secret_headers={"Authorization": "Bearer ${nope}"})
    assert "CHORDAL_HTTP_SECRETS" in str(unknown.value) and SECRET not in str(unknown.value)
    with pytest.raises(PermanentError, match=r"may not be sent to '127.0.0.1'"):
        get(s, f"http://{web}/echo", secret_headers={"X-Key": "${other}"})
    with pytest.raises(PermanentError, match="names no secret"):
        get(s, f"http://{web}/echo", secret_headers={"X-Key": "plain"})
    with pytest.raises(PermanentError, match="'Host' is set by the tool"):
        get(s, f"http://{web}/echo", headers={"Host": "evil.example"})
    assert SECRET not in repr(s)


def test_statuses_timeouts_and_refused_connections(web):
    s = settings("127.0.0.1", http_timeout_s="0.5")
    with pytest.raises(TransientError) as throttled:
        get(s, f"http://{web}/status/429", params={"retry_after": "7"})
    assert throttled.value.retry_after_s == 7
    with pytest.raises(TransientError, match="answered 503"):
        get(s, f"http://{web}/status/503")
    with pytest.raises(PermanentError, match=r"answered 404: \{\"error\": \"nope\"\}"):
        get(s, f"http://{web}/status/404?secret=q")
    with pytest.raises(TransientError, match="CHORDAL_HTTP_TIMEOUT_S"):
        get(s, f"http://{web}/slow", params={"s": "2"})
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(TransientError, match="cannot connect"):
        get(s, f"http://127.0.0.1:{port}/")


def test_the_body_is_capped(web):
    s = settings("127.0.0.1", http_max_bytes="2048")
    assert len(get(s, f"http://{web}/big", params={"n": 2048})["text"]) == 2048
    with pytest.raises(PermanentError, match=r"over 2048 bytes .*CHORDAL_HTTP_MAX_BYTES"):
        get(s, f"http://{web}/big", params={"n": 100_000})


def test_the_built_in_tool(web, monkeypatch):
    assert load_registry()["http_request"] is http_request
    schema = http_request.input_schema
    assert schema["required"] == ["url"] and "secret_headers" in schema["properties"]
    assert set(http_request.output_schema["properties"]) == {"status", "headers", "json",
                                                            "text"}
    monkeypatch.setenv("CHORDAL_HTTP_ALLOW", "127.0.0.1")
    ctx = ToolContext("run", "step", 1)
    out = http_request.invoke({"url": f"http://{web}/echo", "method": "PUT",
                               "params": {"a": 1}, "json": {"b": 2}}, ctx)
    assert out["json"]["query"] == {"a": "1"} and out["json"]["body"] == {"b": 2}
    assert "json" in schema["properties"] and "json_body" not in schema["properties"]
    with pytest.raises(PermanentError, match="json_body"):
        http_request.invoke({"url": f"http://{web}/echo", "json_body": 1}, ctx)
    with pytest.raises(PermanentError, match="method"):
        http_request.invoke({"url": f"http://{web}/echo", "method": "TRACE"}, ctx)
    assert shown("https://u:p@h.example:8443/p?token=1") == "https://h.example:8443/p"


def test_settings_name_the_variable():
    with pytest.raises(ConfigError, match="CHORDAL_HTTP_SECRETS"):
        Settings.from_env({"CHORDAL_HTTP_SECRETS": '{"a": {"value": "v"}}'})
    with pytest.raises(ConfigError, match=r"CHORDAL_HTTP_SECRETS: .*not JSON"):
        Settings.from_env({"CHORDAL_HTTP_SECRETS": "a=b"})
