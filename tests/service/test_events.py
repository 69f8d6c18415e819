"""Server-Sent Events: every event once, in order, across a disconnect and a resume with
Last-Event-ID; keep-alives while a run waits; the stream ends with the run."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.service.conftest import Server

STEPS = {"goal": "a chain", "steps": [
    {"id": f"s{i}", "tool": "sleep", "args": {"seconds": 0.2, "value": i},
     **({"depends_on": [f"s{i - 1}"]} if i else {})} for i in range(4)]}


def read_sse(reply: httpx.Response, stop_after: int | None = None,
             comments: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse frames as they arrive; stop after ``stop_after`` events (a disconnect)."""
    events: list[dict[str, Any]] = []
    frame: dict[str, Any] = {}
    for line in reply.iter_lines():
        if line.startswith(":"):
            if comments is not None:
                comments.append(line)
            continue
        if not line:
            if frame:
                events.append(frame)
                frame = {}
                if stop_after is not None and len(events) >= stop_after:
                    break
            continue
        name, _, value = line.partition(": ")
        frame[name] = value
    return events


def test_a_client_that_reconnects_misses_nothing_and_gets_nothing_twice(api: Server):
    with api.http() as http:
        run_id = http.post("/v1/runs", json={"plan": STEPS}).json()["run_id"]
        url = f"/v1/runs/{run_id}/events"
        with http.stream("GET", url) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            first = read_sse(reply, stop_after=3)  # then the connection is dropped
        time.sleep(0.5)  # events go on happening while nobody listens
        with http.stream("GET", url, headers={"Last-Event-ID": first[-1]["id"]}) as reply:
            rest = read_sse(reply)  # returns: the stream ends after run.finished
        got = first + rest
        assert got[-1]["event"] == "run.finished"
        stored = api.client.store.events(run_id, count=100_000)
        assert [e["id"] for e in got] == [e.id for e in stored]
        assert [e["event"] for e in got] == [e.type for e in stored]
        data = httpx.Response(200, content=got[-1]["data"]).json()
        assert data["type"] == "run.finished" and data["id"] == got[-1]["id"]

        # Reconnecting after the end: nothing more, and the stream ends at once.
        start = time.monotonic()
        with http.stream("GET", url, params={"after": got[-1]["id"]}) as reply:
            assert read_sse(reply) == []
        assert time.monotonic() - start < 2
        # ?after= resumes like Last-Event-ID.
        with http.stream("GET", url, params={"after": got[1]["id"]}) as reply:
            assert [e["id"] for e in read_sse(reply)] == [e["id"] for e in got[2:]]
        bad = http.get(url, headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 422 and "Last-Event-ID" in bad.json()["error"]["message"]
        # An id from the future (made up) is refused, not waited after: events written
        # until then would be skipped in silence.
        last_ms = int(got[-1]["id"].split("-")[0])
        for where in ({"headers": {"Last-Event-ID": f"{last_ms + 3_600_000}-0"}},
                      {"params": {"after": str(last_ms + 3_600_000)}}):
            future = http.get(url, **where)
            assert future.status_code == 422, (where, future.text)
            assert "in the future" in future.json()["error"]["message"]
        # One past the run's last event is not (a Redis restart may have lost the tail);
        # "<ms>" is "<ms>-0", as Redis reads it.
        with http.stream("GET", url, params={"after": f"{last_ms}-999999"}) as reply:
            assert reply.status_code == 200 and read_sse(reply) == []
        with http.stream("GET", url, params={"after": str(last_ms)}) as reply:
            assert [e["id"] for e in read_sse(reply)] == [
                e["id"] for e in got if e["id"] != f"{last_ms}-0"
                and int(e["id"].split("-")[0]) >= last_ms]


def test_a_waiting_run_gets_keep_alives_until_it_ends(api: Server):
    with api.http() as http:
        run_id = http.post("/v1/runs", json={"plan": STEPS, "approve": True}).json()["run_id"]
        comments: list[str] = []
        with http.stream("GET", f"/v1/runs/{run_id}/events") as reply:
            seen: list[dict[str, Any]] = []
            frame: dict[str, Any] = {}
            for line in reply.iter_lines():  # the server here sends one every second
                if line.startswith(":"):
                    comments.append(line)
                    if len(comments) == 2:
                        http.post(f"/v1/runs/{run_id}/cancel")
                elif line:
                    name, _, value = line.partition(": ")
                    frame[name] = value
                elif frame:
                    seen.append(frame)
                    frame = {}
        assert comments[:2] == [": keep-alive", ": keep-alive"]
        assert seen[-1]["event"] == "run.finished"
        assert '"cancelled"' in seen[-1]["data"]
