"""Schemathesis against the live server's /openapi.json, with every check and every phase:
examples, coverage (the edges of each schema), fuzzing (requests that fit the schema and
requests that do not: bad bodies, parameters, headers, keys) and stateful (sequences along
the OpenAPI links: make a run, then read it, follow its events, cancel, approve, retry...).
No 5xx; every response (status, content type, headers, body, each event of a stream)
conforms to the schema; schema-valid requests are accepted, but where the config says why
(tests/service/schemathesis.toml); invalid ones are refused.

Run through schemathesis's own CLI, as a user would (its pytest loader reaches into a pytest
internal that pytest 9 removed), bounded by examples and by time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.service.conftest import KEYS, Server

CONFIG = Path(__file__).with_name("schemathesis.toml")
#: The whole run's budget (seconds): schemathesis stops a phase when it is spent.
MAX_TIME = 15


def test_every_operation_conforms_with_every_check_and_phase(api: Server, tmp_path: Path):
    cli = Path(sys.executable).with_name("schemathesis")
    report = tmp_path / "report"
    # The fuzzer is a tenant of its own, so its runs stay out of the other tests' lists.
    # One worker: Python 3.11.7's ast.parse is not thread-safe ("AST constructor recursion
    # depth mismatch"), and hypothesis parses sources while it describes strategies.
    done = subprocess.run(
        [str(cli), "--config-file", str(CONFIG), "run", f"{api.url}/openapi.json",
         "--header", f"Authorization: Bearer {KEYS['fuzz']}", "--max-time", str(MAX_TIME),
         "--workers", "1", "--seed", "17", "--report", "ndjson", "--report-dir", str(report),
         "--no-color"],
        capture_output=True, text=True, timeout=MAX_TIME + 120, cwd=tmp_path)
    out = done.stdout + done.stderr
    (api.log.parent / "schemathesis.txt").write_text(out)
    assert done.returncode == 0, out[-12_000:]
    # Every operation was tried, and the stateful phase followed the links from a made run.
    assert "Tested: 14" in out or "Selected: 14/14" in out, out[-4_000:]
    assert "Stateful" in out and "⏭  Stateful" not in out, out[-4_000:]


def test_the_schema_says_what_the_api_does(api: Server):
    """The precisions schemathesis found missing, each asserted on the schema and on the
    server's behaviour."""
    with api.http("fuzz") as http:
        spec = http.get("/openapi.json").json()
        create = spec["paths"]["/v1/runs"]["post"]
        body = spec["components"]["schemas"]["CreateRun"]["properties"]
        # The plan is the plan's JSON Schema (`chordal schema`), by reference.
        assert {"$ref": "#/components/schemas/Plan"} in body["plan"]["anyOf"]
        approve = spec["components"]["schemas"]["ApproveRun"]["properties"]["plan"]
        assert {"$ref": "#/components/schemas/Plan"} in approve["anyOf"]
        assert spec["components"]["schemas"]["Plan"]["required"] == ["goal", "steps"]
        # Integers: 1.0 is the integer 1 (as JSON Schema says); 1.5 and "1" are not.
        made = http.post("/v1/runs", json={"plan": {"goal": "g", "max_replans": 2.0, "steps": [
            {"id": "a", "tool": "echo", "args": {"value": 1}, "max_retries": 1.0}]},
            "budget_tokens": 1000.0, "max_replans": 1.0})
        assert made.status_code == 201, made.text
        for bad in (1.5, "1000", True):
            refused = http.post("/v1/runs", json={"goal": "g", "budget_tokens": bad})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["problems"][0]["field"] == "budget_tokens"
        # Cursors and event ids: their format is declared, and what does not fit is a 422.
        params = {p["name"]: p["schema"] for p in spec["paths"]["/v1/runs"]["get"][
            "parameters"]}
        assert params["cursor"]["anyOf"][0]["pattern"]
        events = spec["paths"]["/v1/runs/{run_id}/events"]["get"]
        params = {p["name"]: p["schema"] for p in events["parameters"]}
        assert params["after"]["anyOf"][0]["pattern"] == \
            params["Last-Event-ID"]["anyOf"][0]["pattern"]
        assert http.get("/v1/runs", params={"cursor": "0" * 60}).status_code == 422
        run_id = made.json()["run_id"]
        assert http.get(f"/v1/runs/{run_id}/events",
                        params={"after": "0" * 64}).status_code == 422
        # The stream is text/event-stream whose events carry a RunEvent as JSON.
        stream = events["responses"]["200"]["content"]
        assert list(stream) == ["text/event-stream"]
        data = stream["text/event-stream"]["schema"]["properties"]["data"]
        assert data["contentMediaType"] == "application/json"
        assert data["contentSchema"]["required"] == ["id", "type", "status"]
        # Links from a made run to what one does with it.
        links = create["responses"]["201"]["links"]
        ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
        assert {"GetRun", "GetEvents", "CancelRun", "RetryRun"} <= set(links)
        assert all(link["operationId"] in ids for link in links.values())
        # A path with GET and POST answers another method with both in Allow.
        assert http.request("PUT", "/v1/runs").headers["Allow"] == "GET, POST"
    # The event stream as sent fits the declared event schema.
    with api.http("fuzz") as http, http.stream("GET", f"/v1/runs/{run_id}/events") as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in reply.read().decode().split("\n\n") if f.startswith("id:")]
    first = dict(line.split(": ", 1) for line in frames[0].splitlines())
    assert first["event"] == json.loads(first["data"])["type"] == "run.created"


def test_a_goal_without_a_model_is_a_422_naming_the_setting(open_api: Server):
    with httpx.Client(base_url=open_api.url, timeout=30) as http:
        reply = http.post("/v1/runs", json={"goal": "plan this"})
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["type"] == "InvalidInput" and error["message"].startswith("goal: ")
    assert "ANTHROPIC_API_KEY" in error["message"] and "CHORDAL_LLM" in error["message"]
    assert "Retry-After" not in reply.headers
