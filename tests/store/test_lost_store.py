"""A Redis that lost its data (restarted without persistence) while a client waits: the
client is told that the run store lost the run, and what to check, not that the run may
have expired. A run that may really have expired still hears that.

The Redis is a redis-server of the test's own, with no persistence, restarted on its port.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from planner.client import Client
from planner.errors import RunNotFound
from planner.language.plan import Plan
from planner.settings import Settings
from planner.store.lost import created_at, new_run_id
from planner.store.records import RunReport
from tests.store.test_redis_restart import Server

PLAN = Plan.model_validate({"goal": "g", "steps": [
    {"id": "a", "tool": "echo", "args": {"value": 1}}]})


class Forgetful(Server):
    """A redis-server that keeps nothing on disk: a restart comes back empty."""

    PERSISTENCE = ("--appendonly", "no")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # no shutdown save either
            self.process.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path):
    s = Forgetful(tmp_path)
    s.start()
    yield s
    s.stop()


def test_run_ids_carry_their_creation_time() -> None:
    run_id = new_run_id()
    assert len(run_id) == 20 and int(run_id, 16) >= 0
    at = created_at(run_id)
    assert at is not None and abs(at - time.time()) < 5
    assert created_at("0123456789abcdef") is None  # an id from before they carried it
    assert created_at("no-such-run") is None
    assert created_at("ffffffff" + "0" * 12) is None  # claims the future
    # A run that joined a caller's trace (the HTTP API's id-traceid) keeps its time.
    assert created_at(f"{run_id}-{'ab' * 16}") == at


def test_a_waiting_client_hears_the_store_lost_the_run(server: Forgetful, tools) -> None:
    client = Client(Settings.from_env({"CHORDAL_REDIS_URL": server.url}), tools)
    run_id = client.store.create_run("g", PLAN)
    client.store.start_run(run_id)
    result: dict[str, RunReport | BaseException] = {}

    def waiter() -> None:
        try:
            result["report"] = client.wait(run_id, timeout=40)
        except BaseException as exc:
            result["report"] = exc

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)
    server.stop()  # kill -9, and nothing on disk
    time.sleep(1.0)
    server.start()  # empty
    thread.join(timeout=30)
    assert not thread.is_alive()
    error = result.get("report")
    assert isinstance(error, RunNotFound), error
    message = str(error)
    assert message.startswith(f"no run {run_id!r}: it was made at ")
    assert "the run store lost it" in message and "may have expired" not in message
    assert "marker key chordal:store is gone" in message
    for advice in ("appendonly", "maxmemory-policy", "noeviction", "CHORDAL_REDIS_URL"):
        assert advice in message

    # A new run makes the store anew: the old run is said to predate it.
    time.sleep(1.1)
    client.store.create_run("g", PLAN)
    with pytest.raises(RunNotFound, match=r"started afresh at .*, after the run was made"):
        client.report(run_id)
    with pytest.raises(RunNotFound, match="the run store lost it"):
        client.store.owner(run_id)


def test_an_old_or_unknown_id_still_may_have_expired(server: Forgetful, tools) -> None:
    client = Client(Settings.from_env({"CHORDAL_REDIS_URL": server.url,
                                       "CHORDAL_RETENTION_S": "86400"}), tools)
    client.store.create_run("g", PLAN)
    long_ago = f"{int(time.time()) - 2 * 86_400:08x}{'a' * 12}"  # older than the retention
    for old in ("0123456789abcdef", "no-such-run", long_ago):
        with pytest.raises(RunNotFound) as caught:
            client.report(old)
        assert str(caught.value) == f"no run {old!r} (it may have expired after 1 days)"
    # A young id the store never saw although it holds runs made before it: deleted or
    # evicted (not expired).
    young = f"{int(time.time()) + 5:08x}{'b' * 12}"
    with pytest.raises(RunNotFound, match="keys were deleted or evicted"):
        client.report(young)
