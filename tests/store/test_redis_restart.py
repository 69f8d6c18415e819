"""Client.wait rides out a Redis restart: it reconnects with backoff and resumes from its
event cursor, so the run's end is seen and no event is missed or repeated (Redis with AOF,
fsync always, on a port of its own)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from planner.cli.embedded import redis_answers, redis_server_binary
from planner.client import Client
from planner.errors import Unavailable
from planner.language.plan import Plan
from planner.settings import Settings
from planner.store.records import RunEvent, RunReport


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A redis-server of a test's own that keeps every write on disk (AOF, fsync always)."""

    #: How it keeps its data (a subclass may keep none).
    PERSISTENCE: tuple[str, ...] = ("--appendonly", "yes", "--appendfsync", "always")

    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir = free_port(), workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), *self.PERSISTENCE, "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not redis_answers(self.url, timeout=0.2):
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path):
    s = Server(tmp_path)
    s.start()
    yield s
    s.stop()


def test_wait_reconnects_across_a_redis_restart(server: Server, tools):
    client = Client(Settings.from_env({"CHORDAL_REDIS_URL": server.url}), tools)
    plan = Plan.model_validate({"goal": "g", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": 1}}]})
    run_id = client.store.create_run("g", plan)
    client.store.start_run(run_id)
    seen: list[RunEvent] = []
    result: dict[str, RunReport | BaseException] = {}

    def waiter() -> None:
        try:
            result["report"] = client.wait(run_id, timeout=40, on_event=seen.append)
        except BaseException as exc:
            result["report"] = exc

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)
    server.stop()          # Redis goes away for ~2 s, the waiter keeps trying
    time.sleep(2.0)
    assert thread.is_alive()
    server.start()         # AOF brings the run back
    writer = redis.Redis.from_url(server.url)
    assert writer.exists(f"chordal:run:{{{run_id}}}")
    client.store.finish_run(run_id, "succeeded", answer={"a": 1})
    thread.join(timeout=20)
    report = result.get("report")
    assert isinstance(report, RunReport), report
    assert report.status == "succeeded" and report.answer == {"a": 1}
    types = [e.type for e in seen]
    assert types.count("run.finished") == 1 and types.count("run.started") == 1
    assert len({e.id for e in seen}) == len(seen)  # nothing repeated


def test_wait_says_so_when_redis_does_not_come_back(server: Server, tools):
    client = Client(Settings.from_env({"CHORDAL_REDIS_URL": server.url}), tools)
    plan = Plan.model_validate({"goal": "g", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": 1}}]})
    run_id = client.store.create_run("g", plan)
    server.stop()
    started = time.monotonic()
    with pytest.raises(Unavailable, match="lost Redis"):
        client.wait(run_id, timeout=2)
    assert time.monotonic() - started < 10
