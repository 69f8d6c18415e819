"""Commands that read runs: status (one run's report) and runs (the list, or the stuck)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from planner.cli.app import EXIT_FAILED, EXIT_NOT_ENDED, EXIT_OK, app, out, user_errors
from planner.cli.connect import connected, over_http
from planner.cli.follow import print_report
from planner.errors import InvalidInput
from planner.store.records import RUN_STATUSES
from planner.vocabulary import RunStatus


@app.command()
@user_errors
def status(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Print a run's report. Exit status: 0 succeeded, 1 failed or cancelled, 3 not ended
    yet (pending, running, paused, awaiting approval)."""
    client = connected()
    report = client.report(run_id)
    print_report(report, as_json)
    raise typer.Exit(EXIT_OK if report.status == RunStatus.SUCCEEDED else
                     EXIT_FAILED if report.ended else EXIT_NOT_ENDED)


@app.command("runs")
@user_errors
def runs_cmd(
    status_: Annotated[str | None, typer.Option(
        "--status", help="Only runs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1,
                                       max=10_000)] = 20,
    stuck: Annotated[bool, typer.Option(
        "--stuck", help="Only runs not ended that had no event for CHORDAL_DISPATCH_GRACE_S "
                        "seconds, quietest first, with what each waits for.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List runs, newest first."""
    if status_ is not None and status_ not in RUN_STATUSES:
        raise InvalidInput(f"--status must be one of {', '.join(RUN_STATUSES)}, "
                           f"not {status_!r}")
    if stuck and status_ is not None:
        raise InvalidInput("--stuck lists running and pending runs: leave out --status")
    client = connected()
    if not stuck:
        found = client.runs(status=status_, limit=limit)
    elif not over_http(client):
        found = client.stuck(limit)
    else:
        raise InvalidInput("--stuck reads the run store itself: it needs Redis access, not "
                           "CHORDAL_API_URL (unset it where Redis is reachable)")
    for run in found:
        if as_json:
            print(json.dumps(run.model_dump(mode="json", exclude_none=True)))
            continue
        created = run.created_at.isoformat(timespec="seconds") if run.created_at else ""
        line = f"{run.run_id}  {run.status:<17} {created}  {run.goal[:60]}"
        if run.quiet_s is not None:
            line += f"\n    quiet {run.quiet_s:.0f} s, waiting for {run.waiting_for}"
        out.print(line, highlight=False, markup=False)
