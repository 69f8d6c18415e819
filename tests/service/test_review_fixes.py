"""Edges found in review: input that cannot be encoded, an event stream of a run retried
after it ended, Host names under --no-auth, and a key list that must not echo secrets."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import httpx
import pytest

from planner import RunOptions
from planner.errors import ConfigError, Conflict
from planner.service.auth import KeyRing
from planner.service.idempotency import IN_FLIGHT_S, Idempotency, body_hash
from planner.service.schemas import CreateRun
from planner.settings import Settings
from tests.service.conftest import MAX_STREAMS, Server, wait_status

PLAN = {"goal": "g", "steps": [{"id": "a", "tool": "echo", "args": {"value": 1}}]}


def test_a_step_id_with_a_lone_surrogate_is_a_422_not_a_500(api: Server) -> None:
    body = '{"plan": {"goal": "g", "steps": [{"id": "\\ud800", "tool": "echo", ' \
           '"args": {"value": 1}}]}}'
    with api.http() as http:
        answer = http.post("/v1/runs", content=body,
                           headers={"Content-Type": "application/json"})
        assert answer.status_code in (400, 422), answer.text
        assert answer.json()["error"]["type"]


def test_the_stream_of_a_run_retried_after_it_ended_goes_on_to_its_new_end(
        api: Server) -> None:
    with api.http() as http:
        # Its step fails for good on attempt 1 and succeeds on attempt 2 (the retry's).
        fails_once = {"goal": "g", "steps": [
            {"id": "f", "tool": "fail", "on_failure": "fail",
             "args": {"times": 1, "kind": "permanent", "value": 1}}]}
        run_id = http.post("/v1/runs", json={"plan": fails_once}).json()["run_id"]
        wait_status(api, run_id, {"failed"})
        assert http.post(f"/v1/runs/{run_id}/retry").status_code == 200
        wait_status(api, run_id, {"succeeded"})
        with http.stream("GET", f"/v1/runs/{run_id}/events") as events:
            kinds = [line.split(":", 1)[1].strip() for line in events.iter_lines()
                     if line.startswith("event:")]
    # The first run.finished (failed) did not end the stream: the retry's did.
    assert kinds.count("run.finished") == 2 and kinds[-1] == "run.finished"
    assert "run.retried" in kinds


def test_without_keys_only_loopback_host_names_are_answered(open_api: Server) -> None:
    with httpx.Client(base_url=open_api.url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        rebound = http.get("/v1/runs", headers={"Host": "attacker.example"})
        assert rebound.status_code == 400


def test_a_malformed_key_list_does_not_echo_the_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"CHORDAL_API_KEYS": "ThisIsTheSecretValue123"})
    assert "ThisIsTheSecretValue123" not in str(caught.value)
    assert "CHORDAL_API_KEYS" in str(caught.value)


def test_a_create_that_died_midway_does_not_block_its_key_for_a_day(api: Server) -> None:
    store = api.client.store
    keys = Idempotency(store.r)
    made = store.create_run("g")  # its server died after making the run, before answering
    first = keys.reserve("alice", "k-made", "body", made, exists=store.exists)
    assert not first.replay
    assert 0 < store.r.ttl(first.key) <= IN_FLIGHT_S  # held only while in flight
    again = keys.reserve("alice", "k-made", "body", "other", exists=store.exists)
    assert again.replay and again.run_id == made
    # A reservation whose request made nothing yet: a concurrent retry is told to wait.
    keys.reserve("alice", "k-none", "body", "never-made", exists=store.exists)
    with pytest.raises(Conflict):
        keys.reserve("alice", "k-none", "body", "x", exists=store.exists)


def test_a_key_in_flight_is_a_409_saying_when_to_ask_again(api: Server) -> None:
    """A retry of a create still being handled (its answer was lost) is told to wait, so
    clients (RemoteClient, AsyncClient) ask again after Retry-After and get the run."""
    keys = Idempotency(api.client.store.r)
    digest = body_hash(CreateRun.model_validate({"plan": PLAN}).model_dump(mode="json"))
    keys.reserve("alice", "k-flying", digest, "not-made-yet", exists=api.client.store.exists)
    with api.http() as http:
        answer = http.post("/v1/runs", json={"plan": PLAN},
                           headers={"Idempotency-Key": "k-flying"})
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["type"] == "InFlight"
    assert answer.headers["Retry-After"] == "1"


def test_a_server_side_failure_does_not_tell_clients_where_its_backends_are() -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from starlette.requests import Request

    from planner.errors import NoWorkerError, Unavailable
    from planner.service.errors import _chordal_error

    request = Request({"type": "http", "method": "POST", "path": "/v1/runs", "headers": []})
    broker = Unavailable("cannot publish to the broker at rabbit.internal:5672// ([Errno "
                         "111] Connection refused); check CHORDAL_BROKER_URL")
    def handled(exc: Exception) -> Any:
        # A thread of its own: a test before may have left an event loop running here.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _chordal_error(request, exc)).result()

    answer = handled(broker)
    assert answer.status_code == 503
    body = bytes(answer.body).decode()
    assert "rabbit.internal" not in body and "5672" not in body
    assert "cannot publish to the broker at <internal>" in body
    # What is not an address stays: the client can act on it.
    queues = handled(NoWorkerError("no live worker consumes 'llm'; start one"))
    assert "no live worker consumes 'llm'" in bytes(queues.body).decode()


def test_one_key_may_hold_only_so_many_event_streams(api: Server) -> None:
    """Each open stream holds a Redis connection: past CHORDAL_API_MAX_STREAMS for one key,
    429 with Retry-After; other keys are not affected; a closed stream frees its slot."""
    with api.http() as http, api.http("bob") as bobs:
        waiting = http.post("/v1/runs", json={"plan": PLAN, "approve": True}).json()["run_id"]
        his = bobs.post("/v1/runs", json={"plan": PLAN, "approve": True}).json()["run_id"]
        with contextlib.ExitStack() as held:
            opened = [held.enter_context(api.http()) for _ in range(MAX_STREAMS)]
            streams = [held.enter_context(c.stream("GET", f"/v1/runs/{waiting}/events"))
                       for c in opened]
            assert all(s.status_code == 200 for s in streams)
            over = http.get(f"/v1/runs/{waiting}/events")
            assert over.status_code == 429, over.text
            assert over.json()["error"]["type"] == "RateLimited"
            assert "CHORDAL_API_MAX_STREAMS" in over.json()["error"]["message"]
            assert int(over.headers["Retry-After"]) >= 1
            with bobs.stream("GET", f"/v1/runs/{his}/events") as other:
                assert other.status_code == 200  # bob's own slots
            streams[0].close()
            opened[0].close()
            deadline = time.monotonic() + 10
            while True:  # the server notices the closed stream at its next keep-alive
                with http.stream("GET", f"/v1/runs/{waiting}/events") as again:
                    if again.status_code == 200:
                        break
                assert time.monotonic() < deadline, "the closed stream's slot never came back"
                time.sleep(0.3)
        for client, run_id in ((http, waiting), (bobs, his)):
            assert client.post(f"/v1/runs/{run_id}/reject").status_code == 200


def test_an_admin_key_sees_every_run_including_those_made_without_a_key(api: Server) -> None:
    """Runs made by the CLI or a Client have no tenant: no key sees them but an admin's
    (CHORDAL_API_ADMINS), which sees and steers every tenant's runs too."""
    ownerless = api.client.submit(PLAN, RunOptions(approve=True))
    with api.http() as alice, api.http("ops") as ops:
        alices = alice.post("/v1/runs", json={"plan": PLAN, "approve": True}).json()["run_id"]
        assert alice.get(f"/v1/runs/{ownerless}").status_code == 404
        assert ops.get(f"/v1/runs/{ownerless}").status_code == 200
        assert ops.get(f"/v1/runs/{alices}").status_code == 200
        listed = {r["run_id"] for r in ops.get("/v1/runs", params={"limit": 200})
                  .json()["runs"]}
        assert {ownerless, alices} <= listed
        mine = {r["run_id"] for r in alice.get("/v1/runs", params={"limit": 200})
                .json()["runs"]}
        assert alices in mine and ownerless not in mine
        for run_id in (ownerless, alices):
            assert ops.post(f"/v1/runs/{run_id}/reject").status_code == 200
    with pytest.raises(ConfigError, match="CHORDAL_API_ADMINS: no API key is named 'root'"):
        KeyRing({"s3cret-0123456789": "alice"}, admins=["root"])
