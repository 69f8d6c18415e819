"""Fixtures of tests/deploy: a database of the tests' own (of the test process's Redis),
flushed before each test."""

from __future__ import annotations

import pytest
import redis

from tests import redis_server

DB = 25


@pytest.fixture
def redis_url() -> str:
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    return url
