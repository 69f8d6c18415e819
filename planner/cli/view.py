"""Run reports for people: a Rich table of the DAG's steps, live while the run goes on."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from planner.store.records import RunReport

STYLE = {"pending": "dim", "running": "yellow", "succeeded": "green", "failed": "red",
         "skipped": "magenta", "cancelled": "red", "replaced": "dim strike",
         "awaiting_approval": "cyan", "paused": "cyan"}


def _seconds(start: datetime | None, end: datetime | None) -> str:
    if not start or not end:
        return ""
    return f"{(end - start).total_seconds():.3f}s"


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def render(report: RunReport, deps: dict[str, list[str]] | None = None) -> Group:
    status = report.status
    title = Text.assemble(("run ", "bold"), (report.run_id, "bold cyan"), "  ",
                          (status, STYLE.get(status, "")))
    if report.plan_version > 1:
        replaced = [s for v in report.versions for s in v.dropped]
        title.append(f"  plan v{report.plan_version} ({report.replans} replan(s)"
                     + (f"; replaced: {', '.join(replaced)}" if replaced else "") + ")",
                     style="bold")
    table = Table(show_edge=False, pad_edge=False, expand=False)
    columns = ["step", "after", "status", "tries", "time", "worker", "output / error"]
    if deps is None:
        columns.remove("after")
    for column in columns:
        table.add_column(column, overflow="fold")
    for sid, st in report.steps.items():
        shown = st.error.message if st.error and st.status != "succeeded" else (
            _short(st.output) if st.status in ("succeeded", "skipped") else "")
        cells: list[Any] = [sid, Text(st.status, STYLE.get(st.status, "")),
                            str(st.attempts), _seconds(st.started_at, st.finished_at),
                            (st.worker or "").split("@")[-1], shown]
        if deps is not None:
            cells.insert(1, ", ".join(deps.get(sid, [])))
        table.add_row(*cells)
    parts: list[Any] = [title, table]
    if report.answer is not None:
        answer = report.answer
        label = "partial answer: " if report.partial else "answer: "
        parts.append(Text.assemble((label, "bold"), answer if isinstance(answer, str)
                                   else _short(answer, 2_000)))
    usage = report.usage.total if report.usage else None
    if usage and usage.calls:
        parts.append(Text(f"model: {usage.calls} call(s), {usage.total_tokens} tokens "
                          f"(cache read {usage.cache_read_input_tokens}), "
                          f"~${usage.cost_usd:.4f}", style="dim"))
    if report.error:
        parts.append(Text.assemble(("error: ", "bold red"), report.error.message))
    if report.reason:
        parts.append(Text.assemble(("waiting: ", "bold cyan"), report.reason))
    return Group(*parts)
