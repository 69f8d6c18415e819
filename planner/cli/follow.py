"""Following a run: its events as JSON lines, quietly, or the live view; what it came to;
and the exit status that says so (the same for ``run --wait``, ``watch``, ``dev --run``
and ``status``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeAlias

import typer
from rich.live import Live

from planner.cli.app import EXIT_FAILED, EXIT_NOT_ENDED, EXIT_OK, err, out
from planner.cli.view import LiveReport, render
from planner.store.records import WAITING_RUN, RunEvent, RunReport
from planner.vocabulary import RunStatus

if TYPE_CHECKING:  # the clients load when a command connects, not for `--help`
    from planner.client import Client
    from planner.remote import RemoteClient

    #: Redis (the Client), or a Chordal server over HTTP.
    AnyClient: TypeAlias = Client | RemoteClient

#: Exit status after Ctrl-C, as a shell reports a process SIGINT ended (128 + 2).
EXIT_INTERRUPTED = 130


def print_event(event: RunEvent) -> None:
    """One event as a JSON line, out at once (NDJSON: a pipe reads each as it comes)."""
    print(json.dumps(event.model_dump(mode="json"), ensure_ascii=False), flush=True)


def print_report(report: RunReport, as_json: bool) -> None:
    if as_json:
        print(report.to_json())
    else:
        out.print(render(report))


def exit_for(report: RunReport) -> NoReturn:
    """As `chordal status`: 0 succeeded; 3 waits for a person (approval, a paused budget),
    so a script cannot take a run that has not ended for a success; 1 otherwise (failed,
    cancelled, or still running when the wait timed out)."""
    raise typer.Exit(EXIT_OK if report.status == RunStatus.SUCCEEDED else
                     EXIT_NOT_ENDED if report.status in WAITING_RUN else EXIT_FAILED)


def goes_on(run_id: str) -> str:
    """Stopping to wait does not stop the run (it is on the workers): say how to get back
    to it or end it."""
    return (f"run {run_id} goes on: `chordal watch {run_id}` follows it again, "
            f"`chordal cancel {run_id}` cancels it")


def follow(client: AnyClient, run_id: str, as_json: bool, timeout: float | None,
           deps: dict[str, list[str]] | None = None, events: bool = False,
           left: Callable[[str], str] = goes_on) -> RunReport:
    """Wait for a run: its events as JSON lines with ``events``; quietly for --json or a
    pipe; with a live view on a terminal. Ctrl-C stops waiting, not the run, and says so
    (``left``: what becomes of the run, when that is not "it goes on")."""
    try:
        return _follow(client, run_id, as_json, timeout, deps, events)
    except KeyboardInterrupt:
        err.print(f"\nstopped waiting; {left(run_id)}", highlight=False, markup=False,
                  soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _follow(client: AnyClient, run_id: str, as_json: bool, timeout: float | None,
            deps: dict[str, list[str]] | None, events: bool) -> RunReport:
    if events:
        return client.wait(run_id, timeout, on_event=print_event)
    if as_json or not out.is_terminal:
        return client.wait(run_id, timeout)

    def latest(view: LiveReport, report: RunReport | None = None) -> LiveReport:
        view.report = report or client.report(run_id)
        steps = view.report.plan.steps if view.report.plan else []
        # A replan changes the edges: the plan's own, once it has one.
        view.deps = ({s.id: sorted(s.dependencies()) for s in steps} if steps else deps)
        return view

    view = latest(LiveReport(client.report(run_id), deps))
    # Redrawn 4 times a second from the last report (running steps' times grow), and
    # read again at each event; the last frame is drawn from the report the wait ended
    # with (the one `chordal status` shows), edges included.
    with Live(view, console=out, refresh_per_second=4) as live:
        report = client.wait(run_id, timeout, on_event=lambda _event: live.update(
            latest(view)))
        live.update(latest(view, report), refresh=True)
    return report


def finish(report: RunReport, as_json: bool, events: bool = False, *,
           left: Callable[[str], str] = goes_on, who: str = "") -> NoReturn:
    """Print what a followed run came to, and exit with its status. After --events, stdout
    stays JSON lines: the report is one more with --json, else a line on stderr. ``left``
    says what becomes of a run still going (``who``: the command saying it, e.g. "dev: ")."""
    if events:
        if as_json:
            print(report.to_json(indent=None), flush=True)
        else:
            waits = f" ({report.reason})" if report.reason else ""
            err.print(f"run {report.run_id}: {report.status}{waits}", highlight=False,
                      markup=False, soft_wrap=True)
    elif as_json or not out.is_terminal:
        print_report(report, as_json)
    if not report.ended and report.status not in WAITING_RUN:
        # --timeout passed: the report above is of a run still going.
        err.print(f"{who}timed out waiting; {left(report.run_id)}", highlight=False,
                  markup=False, soft_wrap=True)
    exit_for(report)
