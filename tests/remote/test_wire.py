"""What the HTTP clients read: error answers, the event stream's format, URLs. Pure."""

from __future__ import annotations

import time

import httpx
import pytest

from planner import RunOptions, errors
from planner.remote import base_url, error_from
from planner.remote._sse import Sse
from planner.remote._wire import create_body


def answer(status: int, error: dict | None = None, **kw: object) -> httpx.Response:
    if error is not None:
        return httpx.Response(status, json={"error": error}, **kw)  # type: ignore[arg-type]
    return httpx.Response(status, **kw)  # type: ignore[arg-type]


def test_error_answers_come_back_as_the_class_they_name():
    invalid = error_from(answer(422, {"type": "PlanInvalid", "message": "invalid plan: 2",
                                      "problems": [
                                          {"step": "x", "field": "tool", "message": "unknown"},
                                          {"step": None, "field": "goal", "message": "empty"}]}))
    assert isinstance(invalid, errors.PlanInvalid)
    assert [(p.step, p.field) for p in invalid.problems] == [("x", "tool"), (None, "goal")]
    assert "step 'x', tool: unknown" in str(invalid)
    found = error_from(answer(404, {"type": "RunNotFound", "message": "no run 'r'"}))
    assert type(found) is errors.RunNotFound and str(found) == "no run 'r'"
    limited = error_from(answer(429, {"type": "RateLimited", "message": "slow down"},
                                headers={"Retry-After": "7"}))
    assert isinstance(limited, errors.RateLimited) and limited.retry_after_s == 7
    # A type this client does not know: the status decides.
    assert type(error_from(answer(403, {"type": "Forbidden", "message": "no"}))) \
        is errors.Unauthorized
    assert type(error_from(answer(422, {"type": "InvalidInput", "message": "budget_usd: "
                                        "must be > 0", "problems": []}))) is errors.InvalidInput
    # Not our shape: a proxy's 502 passes (Unavailable); a bare 500 is the server's fault.
    bad_gateway = error_from(answer(502, content=b"<html>bad gateway</html>"))
    assert isinstance(bad_gateway, errors.Unavailable) and "502" in str(bad_gateway)
    broken = error_from(answer(500, {"type": "InternalError", "message": "see the log"}))
    assert type(broken) is errors.ChordalError and "see the log" in str(broken)
    no_key = error_from(answer(401, {"type": "Unauthorized", "message": "no key"}),
                        had_key=False)
    assert isinstance(no_key, errors.Unauthorized) and "CHORDAL_API_KEY" in str(no_key)


def test_the_event_stream_format():
    sse = Sse()
    lines = [": keep-alive", "", "id: 5-0", "event: step.finished",
             'data: {"id": "5-0", "type": "step.finished", "step": "a",',
             'data:  "status": "succeeded", "data": null}', "", ": keep-alive", ""]
    events = [e for e in (sse.feed(line) for line in lines) if e is not None]
    assert len(events) == 1
    assert (events[0].id, events[0].type, events[0].step) == ("5-0", "step.finished", "a")
    with pytest.raises(errors.Unavailable, match="not a run event"):
        for line in ['data: {"what": 1}', ""]:
            sse.feed(line)


def test_server_urls():
    assert base_url("http://h:8000/") == "http://h:8000"
    assert base_url(" https://h/chordal/ ") == "https://h/chordal"
    for bad, why in (("h:8000", "http:// or https://"), ("", "empty"),
                     ("http://k:secret@h", "credentials"), ("http://h/?key=x", "query")):
        with pytest.raises(errors.InvalidInput, match=why) as raised:
            base_url(bad)
        assert "k:secret" not in str(raised.value)  # a URL's secret is never echoed


def test_a_create_whose_key_is_in_flight_is_asked_again_after_retry_after():
    """The first create's answer was lost while the server still handles it: the retry
    (same Idempotency-Key) is told 409 InFlight + Retry-After, waits, and gets the run."""
    seen: list[tuple[str | None, float]] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("Idempotency-Key"), time.monotonic()))
        if len(seen) == 1:
            return answer(409, {"type": "InFlight", "message": "Idempotency-Key: still being "
                                "handled"}, headers={"Retry-After": "1"})
        return httpx.Response(201, json={"run_id": "r1", "status": "pending"})

    from planner.remote import RemoteClient

    with RemoteClient("http://chordal.test", "k", transport=httpx.MockTransport(server)) as c:
        assert c.submit({"goal": "g", "steps": [{"id": "a", "tool": "echo"}]}) == "r1"
    assert len(seen) == 2 and seen[0][0] == seen[1][0] is not None
    assert seen[1][1] - seen[0][1] >= 0.9  # it waited as asked, not the 0.1 s backoff
    in_flight = error_from(answer(409, {"type": "InFlight", "message": "m"},
                                  headers={"Retry-After": "3"}))
    assert isinstance(in_flight, errors.Conflict) and in_flight.retry_after_s == 3


def test_following_a_run_waits_when_the_key_has_all_its_streams_open():
    """429 on the events stream (CHORDAL_API_MAX_STREAMS): asked again after Retry-After,
    not raised to the caller."""
    seen: list[float] = []
    finished = ('{"id": "5-0", "type": "run.finished", "step": null, "status": "succeeded",'
                ' "data": null}')

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            seen.append(time.monotonic())
            if len(seen) == 1:
                return answer(429, {"type": "RateLimited", "message": "event streams: 20 "
                                    "already open"}, headers={"Retry-After": "1"})
            sent = b"" if request.headers.get("Last-Event-ID") == "5-0" else (
                f"id: 5-0\nevent: run.finished\ndata: {finished}\n\n".encode())
            return httpx.Response(200, content=sent,
                                  headers={"Content-Type": "text/event-stream"})
        return httpx.Response(200, json={"run_id": "r1", "status": "succeeded"})

    from planner.remote import RemoteClient

    with RemoteClient("http://chordal.test", "k", transport=httpx.MockTransport(server)) as c:
        events = list(c.events("r1"))
    assert [e.type for e in events] == ["run.finished"]
    assert len(seen) == 3 and seen[1] - seen[0] >= 0.9  # then once more, after its id


def test_a_runs_options_as_the_create_body_carries_them():
    """One RunOptions for every door: over HTTP the options that are set travel (the
    server's defaults hold otherwise), a role's model as ``models``; what HTTP cannot say
    is refused here, before anything is sent."""
    plan = {"goal": "g", "steps": [{"id": "a", "tool": "echo"}]}
    assert create_body(None, plan=plan) == {
        "plan": plan, "approve": False, "on_budget": "stop", "checkpoint_all": False}
    body = create_body(RunOptions(budget_usd=0.5, approve=True, synthesize=True,
                                  roles={"planner": {"model": "m"}}), goal="g")
    assert body == {"goal": "g", "approve": True, "on_budget": "stop",
                    "checkpoint_all": False, "budget_usd": 0.5, "models": {"planner": "m"}}
    # A plan's synthesize is the plan's own field to the server.
    assert create_body(RunOptions(synthesize=True), plan=plan)["plan"]["synthesize"] is True
    assert "synthesize" not in plan
    with pytest.raises(errors.InvalidInput, match="owner"):
        create_body(RunOptions(owner="eve"), plan=plan)
    with pytest.raises(errors.InvalidInput, match=r"roles\.planner: over HTTP"):
        create_body(RunOptions(roles={"planner": {"temperature": 0.5}}), goal="g")
    with pytest.raises(errors.InvalidInput, match="options: must be a RunOptions"):
        create_body({"approve": True}, goal="g")  # type: ignore[arg-type]


def test_options_from_untyped_input_name_the_bad_one():
    with pytest.raises(errors.InvalidInput, match="budget_usd: Input should be greater"):
        RunOptions.checked(budget_usd=0)
    assert RunOptions.checked(max_replans=2) == RunOptions(max_replans=2)


def test_a_misspelt_option_is_refused_by_name_and_a_newer_record_still_reads():
    with pytest.raises(errors.InvalidInput, match="budget_used: Extra inputs are not"):
        RunOptions(budget_used=0.5)  # type: ignore[call-arg]
    with pytest.raises(errors.InvalidInput, match="budget_usd: Input should be greater"):
        RunOptions(budget_usd=-1)
    with pytest.raises(errors.InvalidInput, match="budget_used: Extra inputs are not"):
        RunOptions.checked(budget_used=0.5)
    # what a newer release recorded: its new option is left out, the rest is kept
    stored = RunOptions.stored('{"approve": true, "budget_usd": 0.5, "added_later": 1}')
    assert stored == RunOptions(approve=True, budget_usd=0.5)
