"""Pure arithmetic of bench/run.py: percentiles, per-step figures, Redis counter deltas.

Kept apart from the timing code so tests can check the yardstick without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def pct(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 <= q <= 1) of ``values``."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def per_step_ms(seconds: float, steps: int) -> float:
    return seconds / steps * 1000


def ratio(chordal: float, raw: float) -> float:
    """Chordal's figure over raw Celery's (a time: below 1 is faster)."""
    return chordal / raw if raw else float("inf")


@dataclass(frozen=True)
class Tally:
    """Redis's server-wide counters: commands processed and bytes in + out."""

    commands: float
    bytes: float

    def __sub__(self, other: Tally) -> Tally:
        return Tally(self.commands - other.commands, self.bytes - other.bytes)

    def scaled(self, factor: float) -> Tally:
        return Tally(self.commands * factor, self.bytes * factor)


def tally_of(stats: dict[str, Any]) -> Tally:
    """The tally in the answer of ``INFO stats``."""
    return Tally(float(stats["total_commands_processed"]),
                 float(stats["total_net_input_bytes"]) + float(stats["total_net_output_bytes"]))


def per_step_tally(delta: Tally, idle_per_s: Tally, elapsed_s: float, steps: int) -> Tally:
    """What one step cost Redis: the run's delta, less what an idle worker and client
    would have made in the same time (heartbeats, broker polls, the reconciler)."""
    work = delta - idle_per_s.scaled(elapsed_s)
    return Tally(max(0.0, work.commands) / steps, max(0.0, work.bytes) / steps)
