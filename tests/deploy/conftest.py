"""Fixtures of tests/deploy: a Redis of the test's own (an embedded one on a free port), so
tests that start workers share nothing with other suites running on this machine."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from planner.cli.embedded import start_embedded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url() -> Iterator[str]:
    server = start_embedded(port=free_port())
    try:
        yield f"{server.url.rsplit('/', 1)[0]}/0"
    finally:
        server.stop()
