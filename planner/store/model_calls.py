"""A run's model calls in the run store: token and latency counters, and the exchanges
kept with the run for as long as it is kept."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from planner.store.base import StoreBase
from planner.store.keys import RunKeys


class ModelCalls(StoreBase):
    """Usage counters and kept exchanges, per run."""

    def record_usage(self, run_id: str, role: str, model: str, step_id: str | None,
                     counts: Mapping[str, int | float]) -> None:
        """Add one model call's tokens and latency to the run's counters."""
        k = RunKeys(run_id)
        prefix = f"{role}|{model.replace('|', '/')}|{step_id or ''}|"
        pipe = self.r.pipeline(transaction=True)
        for metric, value in counts.items():
            pipe.hincrby(k.usage, prefix + metric, int(value))
        pipe.expire(k.usage, self.retention_s)
        pipe.execute()

    def record_exchange(self, run_id: str, exchange: Mapping[str, Any]) -> None:
        """Keep one model call (request summary and response) with the run, as long as
        the run is kept."""
        k = RunKeys(run_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(k.exchanges, json.dumps(exchange, ensure_ascii=False))
        pipe.expire(k.exchanges, self.retention_s)
        pipe.execute()

    def exchanges(self, run_id: str) -> list[dict[str, Any]]:
        """The run's model calls, oldest first."""
        self.run_state(run_id)  # RunNotFound for an unknown or expired run
        rows = cast(list[str], self.r.lrange(RunKeys(run_id).exchanges, 0, -1))
        return [json.loads(row) for row in rows]

    def usage_fields(self, run_id: str) -> dict[str, str]:
        return cast(dict[str, str], self.r.hgetall(RunKeys(run_id).usage))
