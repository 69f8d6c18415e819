"""Token usage, its estimated cost, and per-run budgets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

METRICS = ("calls", "input_tokens", "output_tokens", "cache_read_input_tokens",
           "cache_creation_input_tokens", "latency_ms")
TOKEN_METRICS = METRICS[1:5]


def price_for(model: str, prices: Mapping[str, Mapping[str, float]]) -> Mapping[str, float]:
    """The price row whose key is the longest prefix of ``model`` (scripted models are
    priced as the model they stand in for)."""
    name = model.removeprefix("scripted:")
    best = max((k for k in prices if name.startswith(k)), key=len, default=None)
    return prices[best] if best else {}


def cost_usd(model: str, counts: Mapping[str, float],
             prices: Mapping[str, Mapping[str, float]]) -> float:
    row = price_for(model, prices)
    return (counts.get("input_tokens", 0) * row.get("input", 0)
            + counts.get("output_tokens", 0) * row.get("output", 0)
            + counts.get("cache_read_input_tokens", 0) * row.get("cache_read", 0)
            + counts.get("cache_creation_input_tokens", 0) * row.get("cache_write", 0)
            ) / 1_000_000


class UsageTotals(BaseModel):
    """Model calls, tokens, latency and estimated cost, summed over some calls."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    total_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0


class UsageSummary(BaseModel):
    """A run's model usage: in total, by role and by step."""

    total: UsageTotals = UsageTotals()
    by_role: dict[str, UsageTotals] = {}
    by_step: dict[str, UsageTotals] = {}


def _blank() -> dict[str, float]:
    return {**dict.fromkeys(METRICS, 0.0), "cost_usd": 0.0}


def summarize(fields: Mapping[str, str], prices: Mapping[str, Mapping[str, float]]
              ) -> UsageSummary:
    """Fold ``role|model|step|metric`` counters into totals by role, by step and overall."""
    total = _blank()
    by_role: dict[str, dict[str, float]] = {}
    by_step: dict[str, dict[str, float]] = {}
    per_model: dict[tuple[str, str, str], dict[str, float]] = {}
    for key, value in fields.items():
        role, model, step, metric = key.split("|")
        per_model.setdefault((role, model, step), {})[metric] = float(value)
    for (role, model, step), counts in per_model.items():
        cost = cost_usd(model, counts, prices)
        buckets = [total, by_role.setdefault(role, _blank())]
        if step:
            buckets.append(by_step.setdefault(step, _blank()))
        for bucket in buckets:
            for metric in METRICS:
                bucket[metric] += counts.get(metric, 0)
            bucket["cost_usd"] += cost

    def tidy(b: dict[str, float]) -> UsageTotals:
        return UsageTotals(
            **{m: int(b[m]) for m in METRICS if m != "latency_ms"},
            total_tokens=sum(int(b[m]) for m in TOKEN_METRICS),
            latency_s=round(b["latency_ms"] / 1000, 3),
            cost_usd=round(b["cost_usd"], 6))

    return UsageSummary(total=tidy(total),
                        by_role={r: tidy(b) for r, b in sorted(by_role.items())},
                        by_step={s: tidy(b) for s, b in sorted(by_step.items())})


@dataclass(frozen=True)
class Budget:
    max_tokens: int | None = None
    max_usd: float | None = None

    def exceeded(self, total: UsageTotals) -> str | None:
        """Why the run is over budget, or None."""
        if self.max_tokens is not None and total.total_tokens >= self.max_tokens:
            return f"used {total.total_tokens} tokens; the budget is {self.max_tokens}"
        if self.max_usd is not None and total.cost_usd >= self.max_usd:
            return f"spent ~${total.cost_usd:.4f}; the budget is ${self.max_usd:g}"
        return None
