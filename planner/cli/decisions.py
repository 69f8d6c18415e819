"""A person's decisions on a run: cancel, approve, reject, retry, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner.cli.app import EXIT_FAILED, app, err, user_errors
from planner.cli.connect import connected
from planner.language.plan import load_plan_data


@app.command()
@user_errors
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
) -> None:
    """Cancel a run: steps not started never start; running steps finish but unlock
    nothing. Exit 0 if cancelled, 1 if the run had already ended."""
    client = connected()
    if client.cancel(run_id):
        print(f"{run_id}: cancelled")
        return
    status_ = client.report(run_id).status
    err.print(f"{run_id}: not cancelled, the run already ended ({status_})", highlight=False)
    raise typer.Exit(EXIT_FAILED)


@app.command()
@user_errors
def approve(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    plan: Annotated[Path | None, typer.Option(
        "--plan", "-p", help="An edited plan to run instead (validated like any plan).")
    ] = None,
) -> None:
    """Start a run that waits for approval (`run --approve`)."""
    client = connected()
    client.approve(run_id, load_plan_data(plan) if plan is not None else None)
    print(f"{run_id}: approved, running")


@app.command()
@user_errors
def reject(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the report.")
                      ] = None,
) -> None:
    """End a run that waits for approval: it ends cancelled, nothing of it ran."""
    client = connected()
    client.reject(run_id, reason)
    print(f"{run_id}: rejected")


@app.command()
@user_errors
def retry(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    step: Annotated[str | None, typer.Option("--step", help="Only this failed or "
                                                            "cancelled step.")] = None,
) -> None:
    """Re-drive a failed or cancelled run from where it stopped, keeping what it earned."""
    client = connected()
    again = client.retry(run_id, step)
    print(f"{run_id}: running again" + (f" ({', '.join(again)})" if again else ""))


@app.command()
@user_errors
def resume(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    budget_tokens: Annotated[int | None, typer.Option(help="The new token budget.", min=1)
                             ] = None,
    budget_usd: Annotated[float | None, typer.Option(help="The new budget in USD.", min=0)
                          ] = None,
) -> None:
    """Go on with a run paused at its budget (`run --on-budget pause`), with a new one."""
    client = connected()
    client.resume(run_id, budget_tokens, budget_usd)
    print(f"{run_id}: resumed")
