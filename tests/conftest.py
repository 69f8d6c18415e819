"""Shared fixtures. Fixtures with real Redis and real workers live in tests/integration/."""

from __future__ import annotations

import pytest

from planner.tools import ToolRegistry, load_registry


@pytest.fixture(scope="session")
def tools() -> ToolRegistry:
    return load_registry(["planner.tools.testing"])
