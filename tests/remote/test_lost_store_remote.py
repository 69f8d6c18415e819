"""Over HTTP, as over Redis: a Redis that lost its data while a RemoteClient or an
AsyncClient waits makes the API answer 404 saying the run store lost the run (and what to
check), and the clients and the CLI say so; they never say it may have expired."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.errors import RunNotFound
from planner.remote import AsyncClient, RemoteClient
from planner.store.records import RunReport
from tests.integration.conftest import ROOT, base_env
from tests.remote.conftest import ALICE, Server, start_server
from tests.store.test_lost_store import Forgetful

PLAN = {"goal": "g", "steps": [{"id": "a", "tool": "echo", "args": {"value": 1}}]}


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[Forgetful, Server]]:
    store = Forgetful(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    store.start()
    env = base_env(store.url, CHORDAL_TOOL_MODULES="planner.tools.testing",
                   CHORDAL_API_KEYS=f"alice={ALICE}")
    server = start_server(env, tmp_path / "server.log")
    try:
        yield store, server
    finally:
        server.stop()
        store.stop()


def lost_while_waiting(store: Forgetful, wait: object) -> BaseException | RunReport:
    """Run ``wait()`` on a thread, lose Redis's data under it; what it returned or raised."""
    result: dict[str, BaseException | RunReport] = {}

    def waiter() -> None:
        try:
            result["r"] = wait()  # type: ignore[operator]
        except BaseException as exc:
            result["r"] = exc

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(1.0)
    store.stop()
    time.sleep(1.0)
    store.start()  # empty
    thread.join(timeout=60)
    assert not thread.is_alive()
    return result["r"]


def assert_lost(error: object, run_id: str) -> None:
    assert isinstance(error, RunNotFound), error
    message = str(error)
    assert message.startswith(f"no run {run_id!r}: it was made at ")
    assert "the run store lost it" in message and "may have expired" not in message
    assert "noeviction" in message and "CHORDAL_REDIS_URL" in message


def test_remote_and_async_clients_and_the_cli_hear_the_store_lost_the_run(
        deployment: tuple[Forgetful, Server]) -> None:
    store, server = deployment
    remote = RemoteClient(server.url, ALICE)
    run_id = remote.submit(PLAN)  # no worker: it stays running
    assert_lost(lost_while_waiting(store, lambda: remote.wait(run_id, timeout=40)), run_id)

    other = remote.submit(PLAN)
    client = AsyncClient(server.url, ALICE)
    assert_lost(lost_while_waiting(
        store, lambda: asyncio.run(client.wait(other, timeout=40))), other)

    env = {"CHORDAL_API_URL": server.url, "CHORDAL_API_KEY": ALICE,
           "CHORDAL_REDIS_URL": "redis://127.0.0.1:1/0", "PYTHONPATH": str(ROOT)}
    cli = subprocess.run([sys.executable, "-m", "planner.cli", "status", run_id],
                         env={**base_env(store.url), **env}, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode == 2, cli.stderr
    assert "the run store lost it" in cli.stderr and "Traceback" not in cli.stderr
