"""The HTTP API against a real server, worker and Redis: runs, tenants, idempotency,
limits and the error shape."""

from __future__ import annotations

import time

import httpx

from tests.integration.conftest import _free_port, base_env
from tests.service.conftest import (
    GOAL_PLAN,
    KEYS,
    TOOLS,
    Server,
    start_server,
    wait_status,
)

PLAN = {"goal": "add", "steps": [
    {"id": "a", "tool": "echo", "args": {"value": 2}},
    {"id": "b", "tool": "calculate",
     "args": {"expression": "x * 21", "variables": {"x": {"$ref": "a"}}}}]}
SLOW = {"goal": "slow", "steps": [{"id": "nap", "tool": "sleep", "args": {"seconds": 3}}]}


def report_plan(report: dict) -> list:
    return list(report["plan"]["steps"])


def create(http: httpx.Client, body: dict, **kw) -> dict:
    reply = http.post("/v1/runs", json=body, **kw)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def test_a_plan_runs_and_its_report_has_usage(api: Server):
    with api.http() as http:
        made = create(http, {"plan": {**PLAN, "synthesize": True}})
        plain = create(http, {"plan": PLAN})["run_id"]
        run_id = made["run_id"]
        assert made["links"] == {"self": f"/v1/runs/{run_id}",
                                 "events": f"/v1/runs/{run_id}/events",
                                 "page": f"/runs/{run_id}"}
        report = wait_status(api, run_id, {"succeeded", "failed"})
        assert report["status"] == "succeeded", report
        assert report["steps"]["b"]["output"] == 42
        assert report["answer"] == "synthesizer answer"  # the model writes the answer
        assert report["usage"]["by_role"]["synthesizer"]["calls"] == 1
        # A plan that does not ask for the synthesizer answers with its sink's output,
        # although the workers have a model (as from the CLI and a Client).
        unasked = wait_status(api, plain, {"succeeded", "failed"})
        assert unasked["answer"] == {"b": 42} and unasked["usage"]["by_role"] == {}, unasked
        # Each plan version as installed; other versions, other tenants: 404.
        v1 = http.get(f"/v1/runs/{plain}/plans/1")
        assert v1.status_code == 200 and v1.json()["steps"] == report_plan(unasked)
        assert http.get(f"/v1/runs/{plain}/plans/2").status_code == 404
        assert http.get(f"/v1/runs/{plain}/plans/0").status_code == 422
    with api.http("bob") as other:
        assert other.get(f"/v1/runs/{plain}/plans/1").status_code == 404
        assert api.client.store.options(run_id).owner == "alice"


def test_a_goal_is_planned_by_the_model_and_cancelled(api: Server):
    with api.http() as http:
        run_id = create(http, {"goal": "Compare rents in Lisbon", "budget_usd": 1.0,
                               "models": {"executor": "claude-haiku-5-5"}})["run_id"]
        running = wait_status(api, run_id, {"running"})
        assert [s["id"] for s in running["plan"]["steps"]] == ["lookup", "total"]
        reply = http.post(f"/v1/runs/{run_id}/cancel")
        assert reply.json() == {"run_id": run_id, "status": "cancelled"}
        again = http.post(f"/v1/runs/{run_id}/cancel")
        assert again.status_code == 409 and again.json()["error"]["type"] == "Conflict"
    options = api.client.store.options(run_id)
    assert options.roles == {"executor": {"model": "claude-haiku-5-5"}}
    assert GOAL_PLAN["steps"][0]["id"] == "lookup"


def test_approve_reject_and_retry(api: Server):
    with api.http() as http:
        first = create(http, {"plan": PLAN, "approve": True})
        assert first["status"] == "awaiting_approval"
        edited = {"goal": "edited", "steps": [{"id": "e", "tool": "echo",
                                               "args": {"value": "edited"}}]}
        reply = http.post(f"/v1/runs/{first['run_id']}/approve", json={"plan": edited})
        assert reply.status_code == 200, reply.text
        report = wait_status(api, first["run_id"], {"succeeded", "failed"})
        assert report["steps"]["e"]["output"] == "edited"
        assert [s["id"] for s in report["plan"]["steps"]] == ["e"]

        second = create(http, {"plan": PLAN, "approve": True})["run_id"]
        reply = http.post(f"/v1/runs/{second}/reject", json={"reason": "not now"})
        assert reply.json() == {"run_id": second, "status": "cancelled"}
        assert http.post(f"/v1/runs/{second}/approve").status_code == 409

        # A rejected run never runs: retry is a conflict, and nothing was published.
        retried = http.post(f"/v1/runs/{second}/retry")
        assert retried.status_code == 409, retried.text
        error = retried.json()["error"]
        assert error["type"] == "Conflict" and "rejected" in error["message"]
        time.sleep(1)
        report = http.get(f"/v1/runs/{second}").json()
        assert report["status"] == "cancelled"
        assert all(s["attempts"] == 0 for s in report["steps"].values())

        paused = http.post(f"/v1/runs/{second}/resume", json={"budget_usd": 2.0})
        assert paused.status_code == 409, paused.text  # it is not paused


def test_an_invalid_plan_lists_every_problem_with_step_and_field(api: Server):
    bad = {"goal": "g", "steps": [
        {"id": "a", "tool": "teleport", "args": {}},
        {"id": "b", "tool": "echo", "args": {"value": {"$ref": "nowhere"}}},
        {"id": "b", "tool": "calculate", "args": {}}]}
    with api.http() as http:
        reply = http.post("/v1/runs", json={"plan": bad})
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error["type"] == "PlanInvalid"
    where = {(p["step"], p["field"]) for p in error["problems"]}
    assert {("a", "tool"), ("b", "id")} <= where
    assert any(p["step"] == "b" and "nowhere" in p["message"] for p in error["problems"])
    assert all(set(p) == {"step", "field", "message"} for p in error["problems"])


def test_bad_input_is_a_4xx_naming_the_field(api: Server):
    with api.http() as http:
        cases = {
            "goal, plan": {},
            "budget_usd": {"goal": "g", "budget_usd": -1},
            "budget_tokens": {"goal": "g", "budget_tokens": "5"},
            "models.auditor": {"goal": "g", "models": {"auditor": "m"}},
            "surprise": {"goal": "g", "surprise": 1},
            "callback_url": {"goal": "g", "callback_url": "https://evil.example.net/x"},
        }
        for field, body in cases.items():
            reply = http.post("/v1/runs", json=body)
            assert reply.status_code == 422, (field, reply.text)
            assert field in reply.json()["error"]["message"], (field, reply.text)
        creds = http.post("/v1/runs", json={"plan": PLAN, "callback_url":
                                            "https://u:p@hooks.example.com/x"})
        assert creds.status_code == 422 and "credentials" in creds.text
        for url in ("https://hooks.example.com/done", "http://a.b.example.org/cb"):
            made = create(http, {"plan": PLAN, "callback_url": url})
            assert api.client.store.options(made["run_id"]).callback_url == url
        not_json = http.post("/v1/runs", content=b'{"plan":',
                             headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400
        assert not_json.json()["error"]["type"] == "BadRequest"
        assert http.get("/v1/runs", params={"limit": 0}).status_code == 422
        assert http.get("/v1/runs", params={"cursor": "nope"}).json()["error"][
            "message"].startswith("cursor")
        assert http.get("/v1/nowhere").json()["error"]["type"] == "NotFound"
        assert http.delete("/v1/runs").status_code == 405


def test_keys_and_tenants(api: Server):
    with api.http() as alice:
        run_id = create(alice, {"plan": SLOW})["run_id"]
    with api.http(None) as anonymous:
        reply = anonymous.get(f"/v1/runs/{run_id}")
        assert reply.status_code == 401
        assert reply.headers["WWW-Authenticate"] == "Bearer"
        assert reply.json()["error"]["type"] == "Unauthorized"
        wrong = anonymous.get("/v1/runs", headers={"Authorization": "Bearer x" * 3})
        assert wrong.status_code == 401
        basic = anonymous.get("/v1/runs", headers={"Authorization": "Basic YTpi"})
        assert basic.status_code == 401
        assert anonymous.get(f"/v1/runs?api_key={KEYS['alice']}").status_code == 401
    with api.http("bob") as bob:
        for reply in (bob.get(f"/v1/runs/{run_id}"), bob.post(f"/v1/runs/{run_id}/cancel"),
                      bob.get(f"/v1/runs/{run_id}/events"),
                      bob.post(f"/v1/runs/{run_id}/approve"),
                      bob.post(f"/v1/runs/{run_id}/retry")):
            assert reply.status_code == 404, reply.text
            # Answered as a run of the same age that was never made: nothing to probe.
            twin = run_id[:8] + "0" * (len(run_id) - 8)
            answer = bob.get(f"/v1/runs/{twin}").json()["error"]["message"]
            assert reply.json()["error"]["message"] == answer.replace(twin, run_id)
            assert answer.startswith(f"no run {twin!r}")
        assert run_id not in {r["run_id"] for r in bob.get("/v1/runs").json()["runs"]}
        assert bob.get("/v1/runs/no-such-run").json()["error"]["message"] == \
            "no run 'no-such-run' (it may have expired after 7 days)"
    with api.http() as alice:
        assert run_id in {r["run_id"] for r in alice.get("/v1/runs").json()["runs"]}
        assert alice.post(f"/v1/runs/{run_id}/cancel").status_code == 200


def test_lists_are_the_callers_own_newest_first_in_pages(api: Server):
    with api.http("bob") as bob:
        made = [create(bob, {"plan": PLAN})["run_id"] for _ in range(5)]
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = bob.get("/v1/runs", params=params).json()
            assert len(page["runs"]) <= 2
            seen += [r["run_id"] for r in page["runs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen[:5] == made[::-1]
        assert len(seen) == len(set(seen))
        done = bob.get("/v1/runs", params={"status": "cancelled"}).json()["runs"]
        assert all(r["status"] == "cancelled" for r in done)


def test_idempotent_create(api: Server):
    key = {"Idempotency-Key": f"order-{time.time_ns()}"}
    body = {"plan": PLAN, "budget_tokens": 1000}
    with api.http() as alice, api.http("bob") as bob:
        first = alice.post("/v1/runs", json=body, headers=key)
        assert first.status_code == 201
        # Same key, same body (another spelling of it): the same run.
        again = alice.post("/v1/runs", headers={**key, "Content-Type": "application/json"},
                           content=b'{ "budget_tokens": 1000, "plan": %s }'
                           % httpx.Request("POST", "/", json=PLAN).content)
        assert again.status_code == 200, again.text
        assert again.json()["run_id"] == first.json()["run_id"]
        other = alice.post("/v1/runs", json={**body, "budget_tokens": 2000}, headers=key)
        assert other.status_code == 409 and "Idempotency-Key" in other.text
        # Keys are per tenant: bob's same key makes bob's own run.
        theirs = bob.post("/v1/runs", json=body, headers=key)
        assert theirs.status_code == 201
        assert theirs.json()["run_id"] != first.json()["run_id"]
        # A create that failed does not hold the key.
        key2 = {"Idempotency-Key": f"bad-{time.time_ns()}"}
        assert alice.post("/v1/runs", json={"plan": {"goal": "g", "steps": []}},
                          headers=key2).status_code == 422
        assert alice.post("/v1/runs", json=body, headers=key2).status_code == 201


def test_bodies_over_the_cap_are_413_by_length_and_by_stream(api: Server):
    big = {"plan": {"goal": "g", "steps": [{"id": "a", "tool": "echo",
                                            "args": {"value": "x" * 70_000}}]}}
    with api.http() as http:
        reply = http.post("/v1/runs", json=big)
        assert reply.status_code == 413
        assert "CHORDAL_MAX_REQUEST_BYTES" in reply.json()["error"]["message"]

        def chunks():  # no Content-Length: the cap is enforced on the bytes themselves
            for _ in range(20):
                yield b"x" * 8192

        streamed = http.post("/v1/runs", content=chunks(),
                             headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        assert streamed.json()["error"]["type"] == "RequestTooLarge"


def test_tools_and_probes(api: Server):
    with api.http() as http:
        tools = {t["name"]: t for t in http.get("/v1/tools").json()["tools"]}
        assert {"echo", "calculate", "sleep"} <= set(tools)
        assert tools["calculate"]["input_schema"]["required"] == ["expression"]
    with api.http(None) as anonymous:
        assert anonymous.get("/v1/tools").status_code == 401
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"


def test_no_auth_server_on_loopback_announces_itself_and_is_not_ready(open_api: Server):
    assert "warning: --no-auth" in open_api.log.read_text()
    with open_api.http(None) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["missing_queues"] == ["lonely"]
        # The rate limit: 2 runs a minute here, then 429 with Retry-After. Refused
        # creates (a plan that cannot run) do not count.
        bad = {"goal": "g", "steps": [{"id": "a", "tool": "no-such-tool"}]}
        for _ in range(3):
            refused = http.post("/v1/runs", json={"plan": bad})
            assert refused.status_code == 422 and refused.json()["error"]["type"] == \
                "PlanInvalid", refused.text
        replies = [http.post("/v1/runs", json={"plan": PLAN}) for _ in range(3)]
        assert [r.status_code for r in replies] == [201, 201, 429]
        assert 1 <= int(replies[2].headers["Retry-After"]) <= 60
        assert replies[2].json()["error"]["type"] == "RateLimited"
        # Over the limit, a create is refused before its plan is even compiled.
        assert http.post("/v1/runs", json={"plan": bad}).status_code == 429
        # No model on this server: a goal is refused (422 naming the setting), not a 500.
        assert http.post("/v1/runs", json={"goal": "g"}).status_code == 422


def test_redis_down_is_503_and_says_nothing_of_the_url(tmp_path):
    url = f"redis://:hunter2-password@127.0.0.1:{_free_port()}/15"
    env = base_env(url, CHORDAL_TOOL_MODULES=TOOLS, CHORDAL_API_KEYS=f"alice={KEYS['alice']}")
    server = start_server(env, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30,
                          headers={"Authorization": f"Bearer {KEYS['alice']}"}) as http:
            replies = [http.get("/v1/runs"), http.get("/v1/runs/abc"),
                       http.post("/v1/runs", json={"plan": PLAN}),
                       http.get("/v1/runs/abc/events")]
            for reply in replies:
                assert reply.status_code == 503, reply.text
                assert reply.json()["error"]["type"] == "Unavailable"
                assert "hunter2" not in reply.text
                # Nor where the deployment's Redis is: clients learn what failed, not where.
                assert "127.0.0.1" not in reply.text and url.split(":")[-1] not in reply.text
            ready = http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["redis"] is False
            assert http.get("/healthz").status_code == 200
        assert "hunter2" not in server.log.read_text()
    finally:
        server.stop()
