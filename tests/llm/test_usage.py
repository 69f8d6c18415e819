"""Usage accounting, budgets and the shared rate limit, on a real Redis."""

from __future__ import annotations

import pytest
import redis

from planner.engine.metering import MeteredModel
from planner.errors import BudgetExceeded, TransientError
from planner.language.plan import Plan
from planner.llm.model import ModelRequest, ModelResponse, RoleConfig, Usage
from planner.settings import DEFAULT_PRICES, Settings
from planner.store import RunStore
from planner.store.keys import MODEL_CALLS as KEY
from planner.store.ratelimit import RateLimiter
from planner.store.records import RunOptions
from planner.usage import Budget, UsageTotals, cost_usd, price_for, summarize
from tests import redis_server

DB = 5


@pytest.fixture
def store() -> RunStore:
    return RunStore.from_url(redis_server.url(DB))


class Fixed:
    name = "fixed"

    def __init__(self, usage: Usage) -> None:
        self.usage, self.calls = usage, 0

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        return ModelResponse([{"type": "text", "text": "ok"}], self.usage,
                             request.config.model, latency_s=0.25)


REQ = ModelRequest("executor", RoleConfig("claude-haiku-5-5", 10), [], [])


def test_prices_by_longest_prefix():
    prices = {**DEFAULT_PRICES, "claude-haiku-5": {"input": 2.0}}
    assert price_for("claude-haiku-5-5", prices) == {"input": 2.0}
    assert price_for("scripted:claude-opus-5-5", prices)["output"] == 25.0
    assert price_for("other", prices) == {}
    assert cost_usd("claude-opus-5-5", {"input_tokens": 1_000_000, "output_tokens": 2_000_000,
                                        "cache_read_input_tokens": 1_000_000,
                                        "cache_creation_input_tokens": 1_000_000},
                    DEFAULT_PRICES) == pytest.approx(5 + 50 + 0.5 + 6.25)


def test_usage_is_recorded_per_role_and_step_with_cache_tokens(store):
    run_id = store.create_run("g", Plan.model_validate(
        {"goal": "g", "steps": [{"id": "s", "tool": "echo", "args": {"value": 1}}]}))
    model = MeteredModel(Fixed(Usage(10, 20, 300, 40)), store, Settings.from_env({}),
                         run_id, "s")
    model.complete(REQ)
    model.complete(REQ)
    MeteredModel(Fixed(Usage(1, 2)), store, Settings.from_env({}), run_id).complete(
        ModelRequest("planner", RoleConfig("claude-opus-5-5", 10), [], []))
    usage = summarize(store.usage_fields(run_id), DEFAULT_PRICES)
    executor = usage.by_role["executor"]
    assert executor.model_dump() == {"calls": 2, "input_tokens": 20, "output_tokens": 40,
                        "cache_read_input_tokens": 600, "cache_creation_input_tokens": 80,
                        "total_tokens": 740, "latency_s": 0.5,
                        "cost_usd": pytest.approx((20 * 1 + 40 * 5 + 600 * 0.1 + 80 * 1.25)
                                                  / 1e6)}
    assert usage.by_step == {"s": executor}
    assert usage.total.calls == 3 and usage.total.total_tokens == 743


def test_budget_ends_the_run_and_refuses_further_calls(store):
    run_id = store.create_run("g", Plan.model_validate(
        {"goal": "g", "steps": [{"id": "s", "tool": "echo", "args": {"value": 1}}]}),
        options=RunOptions(budget_tokens=100))
    store.start_run(run_id)
    inner = Fixed(Usage(60, 50))
    model = MeteredModel(inner, store, Settings.from_env({}), run_id)
    assert model.complete(REQ).text() == "ok"  # crosses the budget: kept, run ended
    report = store.report(run_id)
    assert report.status == "failed" and report.error.type == "BudgetExceeded"
    with pytest.raises(BudgetExceeded):
        model.complete(REQ)
    assert inner.calls == 1
    assert Budget(max_usd=1.0).exceeded(UsageTotals(total_tokens=5, cost_usd=1.5))
    assert Budget().exceeded(UsageTotals(total_tokens=10**9, cost_usd=10**9)) is None


def test_rate_limit_is_shared_through_redis(store):
    store.r.delete(KEY)
    a = RateLimiter(store.r, per_minute=2)
    b = RateLimiter(redis.Redis.from_url(redis_server.url(DB)), per_minute=2)  # another "worker"
    assert a.wait_ms() == 0 and b.wait_ms() == 0
    assert 59_000 < a.wait_ms() <= 60_000
    with pytest.raises(TransientError, match="CHORDAL_LLM_RATE_LIMIT_PER_MIN"):
        b.acquire(max_wait_s=0.1)
    store.r.delete(KEY)
