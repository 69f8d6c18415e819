"""Shared fixtures. Engine fixtures (real Redis, real workers) live in tests/engine/."""

from __future__ import annotations

import pytest

from workers.tools.registry import ToolRegistry, load_registry


@pytest.fixture(scope="session")
def tools() -> ToolRegistry:
    return load_registry(["workers.tools.testing"])
