"""Shared fixtures. Fixtures with real Redis and real workers live in tests/integration/.

The Redis every suite uses is this test process's own (tests/redis_server.py): under
pytest-xdist each worker has one, so suites running in parallel never share a database."""

from __future__ import annotations

import pytest

from planner.tools import ToolRegistry, load_registry
from tests import redis_server


@pytest.fixture(scope="session")
def tools() -> ToolRegistry:
    return load_registry(["planner.tools.testing"])


@pytest.fixture(scope="session")
def redis_base() -> str:
    """``redis://127.0.0.1:<port>`` of this process's Redis (no database number)."""
    return redis_server.base()


def pytest_unconfigure(config: pytest.Config) -> None:
    redis_server.stop()
