from __future__ import annotations

from typing import Any

from planner.store import RunEvent, RunStore


def step(sid: str, tool: str = "echo", deps: list[str] | tuple[str, ...] = (),
         **args: Any) -> dict[str, Any]:
    if tool == "echo" and "value" not in args:
        args["value"] = sid
    return {"id": sid, "tool": tool, "args": args, "depends_on": list(deps)}


def plan(*steps: dict[str, Any], goal: str = "test") -> dict[str, Any]:
    return {"goal": goal, "steps": list(steps)}


def assert_dependencies_respected(store: RunStore, run_id: str,
                                  deps: dict[str, set[str]]) -> None:
    """Every step started after all of its dependencies finished (one Redis clock)."""
    times = store.step_times(run_id)
    for sid, ups in deps.items():
        started = times[sid][0]
        assert started is not None, f"{sid} never started"
        for up in ups:
            finished = times[up][1]
            assert finished is not None and finished <= started, \
                f"{sid} started at {started} before {up} finished at {finished}"


def started_counts(events: list[RunEvent]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in events:
        if e.type == "step.started" and e.step:
            counts[e.step] = counts.get(e.step, 0) + 1
    return counts
