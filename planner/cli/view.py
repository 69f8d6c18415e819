"""Run reports for people: the goal, the run's phase and a table of the DAG's steps, each
with a timeline bar, live while the run goes on and the same afterwards.

Made to be read at 80 columns: one line per step (outputs and errors are cut, never
wrapped), so a wide output cannot push the other steps off the screen."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text

from planner.store.agent_records import AgentCall, AgentReport
from planner.store.records import EARNED_STEP, FINAL_STEP, TERMINAL_RUN, RunReport, StepReport
from planner.vocabulary import AttemptStatus, CallStatus, RunStatus, StepStatus, TurnKind

#: A colour for every run and step status (tests/test_vocabulary.py checks none is missing).
STYLE: dict[str, str] = {
    RunStatus.PENDING: "dim", RunStatus.RUNNING: "yellow", RunStatus.SUCCEEDED: "green",
    RunStatus.FAILED: "red", RunStatus.CANCELLED: "red", RunStatus.AWAITING_APPROVAL: "cyan",
    RunStatus.PAUSED: "cyan", StepStatus.SKIPPED: "magenta", StepStatus.REPLACED: "dim strike"}
#: Columns of a step's timeline bar.
BAR = 12


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f}s" if seconds >= 10 else f"{seconds:.2f}s"


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def phase(report: RunReport) -> str | None:
    """What the run is doing besides its steps: the model planning, replanning after a
    failure, or writing the answer. None when it is only running steps (or over)."""
    if report.status not in (RunStatus.PENDING, RunStatus.RUNNING):
        return None
    if report.plan_version == 0:
        return "planning…"
    handled = {s for v in report.versions for s in v.failed}
    if any(st.status == StepStatus.FAILED and sid not in handled
           for sid, st in report.steps.items()):
        return "replanning…"
    current = set(report.plan.dependencies()) if report.plan else set(report.steps)
    if report.status == RunStatus.RUNNING and all(
            sid in report.steps and report.steps[sid].status in FINAL_STEP for sid in current):
        return "writing the answer…"
    return None


def _bar(start: float, end: float, span: float, style: str) -> Text:
    """A step's start and duration on the run's time axis, ``BAR`` columns wide."""
    first = min(BAR - 1, int(start / span * BAR))
    last = max(first + 1, min(BAR, round(end / span * BAR)))
    return Text.assemble(" " * first, ("━" * (last - first), style), " " * (BAR - last))


def _when(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value


def render(report: RunReport, deps: dict[str, list[str]] | None = None,
           now: datetime | None = None) -> Group:
    """The report as people read it. ``now`` (the Redis clock's UTC time, roughly) gives
    running steps and a running run their elapsed time; by default, this machine's."""
    now = now or datetime.now(UTC)
    status = report.status
    origin = _when(report.created_at) or min(
        (t for st in report.steps.values() if (t := _when(st.started_at))), default=now)
    horizon = _when(report.finished_at) if status in TERMINAL_RUN else now
    horizon = max(horizon or now, origin)
    span = max((horizon - origin).total_seconds(), 1e-3)

    goal = Text(report.goal, style="bold", no_wrap=True, overflow="ellipsis")
    title = Text.assemble(("run ", "bold"), (report.run_id, "cyan"), "  ",
                          (status, STYLE.get(status, "")), no_wrap=True, overflow="ellipsis")
    # Most telling first: a narrow screen cuts the end of the line.
    doing = phase(report)
    if doing:
        title.append(f"  {doing}", style="bold yellow")
    # One space before the time (it belongs to the status): a 20-hex run id, the status and
    # "plan v2 (1 replan; replaced: weather)" still fit 80 columns.
    title.append(f" {_seconds(span)}", style="dim")
    if report.plan_version:
        title.append(f"  plan v{report.plan_version}")
    if report.replans:
        replaced = [s for v in report.versions for s in v.dropped]
        title.append(f" ({report.replans} replan{'s' if report.replans > 1 else ''}"
                     + (f"; replaced: {', '.join(replaced)}" if replaced else "") + ")")

    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold",
                  expand=False, padding=(0, 1, 0, 0))
    table.add_column("step", no_wrap=True, overflow="ellipsis", max_width=16)
    if deps is not None:
        table.add_column("after", no_wrap=True, overflow="ellipsis", max_width=12)
    table.add_column("status", no_wrap=True)
    table.add_column("try", no_wrap=True, justify="right")
    table.add_column("time", no_wrap=True, justify="right")
    table.add_column("timeline", no_wrap=True, width=BAR)
    # The only column Rich may narrow (the others are no_wrap): it takes what is left,
    # and its one-line Text is cut there with an ellipsis.
    table.add_column("output / error", overflow="ellipsis")
    for sid, st in report.steps.items():
        started, finished = _when(st.started_at), _when(st.finished_at)
        style = STYLE.get(st.status, "")
        took, bar = "", Text("")
        if started is not None:
            end = finished or (now if st.status == StepStatus.RUNNING else None)
            took = _seconds((end - started).total_seconds()) if end else ""
            if end is not None:
                bar = _bar((started - origin).total_seconds(),
                           (end - origin).total_seconds(), span, style)
        shown = (" ".join(st.error.message.split())
                 if st.error and st.status != StepStatus.SUCCEEDED
                 else _short(st.output, 400) if st.status in EARNED_STEP else "")
        cells: list[Any] = [sid]
        if deps is not None:
            cells.append(", ".join(deps.get(sid, [])))
        cells += [Text(st.status, style), str(st.attempts or ""), took, bar,
                  Text(shown, no_wrap=True, overflow="ellipsis")]
        table.add_row(*cells)

    parts: list[Any] = [goal, title, table]
    # An agent step's conversation: where it is, or what it came to, one line each.
    parts += [Text(f"{sid}: {line}", style="dim", no_wrap=True, overflow="ellipsis")
              for sid, st in report.steps.items() if (line := agent_line(st, now))]
    # A step whose attempts were taken for lost, revoked or superseded: its whole history.
    for sid, st in report.steps.items():
        if any(a.status in (AttemptStatus.LOST, AttemptStatus.REVOKED,
                            AttemptStatus.SUPERSEDED) for a in st.history):
            parts.append(Text(f"{sid}: attempts " + ", ".join(
                f"#{a.attempt} {a.status}" for a in st.history), style="dim"))
    if report.answer is not None:
        parts.append(_answer(report))
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


#: Between a tool and how many calls of it run at once (``travel.availability`` times 2).
TIMES = "\N{MULTIPLICATION SIGN}"
#: What an agent step's last turn came to, said when the step has ended.
ENDED: dict[str, str] = {
    TurnKind.FINAL: "answered", TurnKind.MAX_TURNS: "out of turns",
    TurnKind.INVALID: "answer off its schema", TurnKind.REFUSED: "calls refused",
    TurnKind.REPAIR: "repairing its answer", TurnKind.TOOLS: "calling tools",
    TurnKind.THINKING: "thinking"}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _calls_now(calls: list[AgentCall], now: datetime) -> str:
    """The calls of the current turn: running ones by tool (times n, with the longest one's
    time so far), then how many wait for a worker and how many have a result."""
    running: dict[str, list[AgentCall]] = {}
    for call in calls:
        if call.status == CallStatus.RUNNING:
            running.setdefault(call.tool, []).append(call)
    said = []
    for tool, group in running.items():
        since = [now - t for c in group if (t := _when(c.started_at))]
        took = f" {_seconds(max(since).total_seconds())}" if since else ""
        many = f" {TIMES}{len(group)}" if len(group) > 1 else ""
        said.append(f"{tool}{many} running{took}")
    waiting = sum(c.status == CallStatus.PENDING for c in calls)
    if waiting:
        said.append(f"{waiting} waiting")
    settled = len(calls) - waiting - sum(map(len, running.values()))
    if settled and (running or waiting):
        said.append(f"{settled} done")
    elif settled:
        said.append(f"{_count(settled, 'tool call')} done, next turn…")
    return ", ".join(said)


def agent_line(step: StepReport, now: datetime) -> str | None:
    """One agent step's conversation in a line: the turn it is at and what it waits for
    (the model, or its tool calls) while it runs; once it has ended, its turns, its calls
    and how it ended. None for other steps."""
    agent: AgentReport | None = step.agent
    if agent is None:
        return None
    turn = agent.current_turn
    if step.status == StepStatus.RUNNING and (turn is None or turn.kind != TurnKind.FINAL):
        if turn is None:
            return f"turn 1/{agent.max_turns} · starting…"
        at = f"turn {turn.turn + 1}/{agent.max_turns} · "
        if turn.kind == TurnKind.THINKING:
            started = _when(turn.started_at)
            took = f" {_seconds((now - started).total_seconds())}" if started else ""
            again = f" (try {turn.tries})" if turn.tries > 1 else ""
            return f"{at}thinking…{took}{again}"
        if turn.kind == TurnKind.TOOLS:
            return at + _calls_now(turn.calls, now)
        return at + ENDED.get(turn.kind, str(turn.kind)) + "…"
    if turn is None:
        return None if step.status == StepStatus.PENDING else f"no turns · {step.status}"
    calls = agent.calls
    errors = sum(c.status in (CallStatus.FAILED, CallStatus.REFUSED) for c in calls)
    cancelled = sum(c.status == CallStatus.CANCELLED for c in calls)
    # A cancelled step's running calls go on, and are recorded when they return.
    running = sum(c.status == CallStatus.RUNNING for c in calls)
    notes = [_count(errors, "error")] if errors else []
    notes += [f"{cancelled} cancelled"] if cancelled else []
    notes += [f"{running} still running"] if running else []
    said = _count(len(calls), "tool call") + (f" ({', '.join(notes)})" if notes else "")
    ended = (ENDED[turn.kind] if turn.kind in (TurnKind.FINAL, TurnKind.MAX_TURNS,
                                                 TurnKind.INVALID) else str(step.status))
    return f"{_count(len(agent.turns), 'turn')} · {said} · {ended}"


def _answer(report: RunReport) -> Any:
    """A written answer is shown whole; data (a plan file's sink outputs) one line per
    key, each cut to the screen."""
    label = "partial answer" if report.partial else "answer"
    answer = report.answer
    if isinstance(answer, str):
        return Text.assemble((f"{label}: ", "bold"), answer)
    if isinstance(answer, dict) and answer:
        lines = [Text(f"{label}:", style="bold")]
        lines += [Text(f"  {key}: {_short(value, 400)}", no_wrap=True, overflow="ellipsis")
                  for key, value in answer.items()]
        return Group(*lines)
    return Text.assemble((f"{label}: ", "bold"), Text(_short(answer, 400), no_wrap=True,
                                                      overflow="ellipsis"))


class LiveReport:
    """The latest report, drawn afresh at each refresh of a ``rich.live.Live``: running
    steps' times and bars grow between events."""

    def __init__(self, report: RunReport, deps: dict[str, list[str]] | None) -> None:
        self.report, self.deps = report, deps

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield render(self.report, self.deps)
