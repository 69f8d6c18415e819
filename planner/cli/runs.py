"""Commands about runs: run, watch, status, runs, cancel, approve, reject, retry, resume.
Following a run (its events, the live view, the exit status) is :mod:`planner.cli.follow`.

They talk to Redis, or to a Chordal server when ``CHORDAL_API_URL`` is set (with
``CHORDAL_API_KEY``): the same commands, the same output, no Redis access or tool modules
needed on this machine."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typing_extensions import TypeIs

from planner.cli.app import (
    EXIT_FAILED,
    EXIT_NOT_ENDED,
    EXIT_OK,
    app,
    err,
    out,
    registry,
    settings,
    user_errors,
)
from planner.cli.follow import (
    exit_for,
    finish,
    follow,
    goes_on,
    print_report,
)
from planner.errors import InvalidInput, NoWorkerError
from planner.language.plan import load_plan_data
from planner.llm.model import ROLES
from planner.options import RunOptions
from planner.store.records import RUN_STATUSES, RunReport
from planner.wire import DEFAULT_QUEUE, LLM_QUEUE

if TYPE_CHECKING:
    from planner.cli.follow import AnyClient
    from planner.client import Client
    from planner.remote import RemoteClient


def connect() -> AnyClient:
    """The server at CHORDAL_API_URL when it is set, else Redis (CHORDAL_REDIS_URL)."""
    # Imported here: `chordal --help`, `validate` and `schema` need neither client.
    s = settings()
    if s.api_url:
        from planner.remote import RemoteClient

        return RemoteClient.from_settings(s)
    from planner.client import Client

    return Client(s, registry(s))


def over_http(client: AnyClient) -> TypeIs[RemoteClient]:
    """Whether ``client`` talks to a Chordal server (it was loaded if so: no import)."""
    remote = sys.modules.get("planner.remote")
    return remote is not None and isinstance(client, remote.RemoteClient)


def warn_missing_workers(client: Client, queues: set[str]) -> None:
    """Say so, instead of waiting in silence; the run is queued all the same."""
    try:
        client.require_queues(queues)
    except NoWorkerError as exc:
        err.print(f"warning: {exc}; the run waits until one does.", highlight=False,
                  markup=False)


def warn_unready(client: RemoteClient) -> None:
    """Over HTTP: the server's /readyz says what is missing (no worker, no Redis)."""
    why = client.ready()
    if why:
        err.print(f"warning: the server is not ready: {why}; the run waits until it is.",
                  highlight=False, markup=False)


def run_plan(client: AnyClient, path: Path, wait: bool, as_json: bool,
             timeout: float | None, events: bool = False, synthesize: bool = False,
             left: Callable[[str], str] = goes_on, options: RunOptions | None = None
             ) -> RunReport | None:
    """Validate, submit and optionally wait; shared by `run` and `dev --run`.

    The plan's ``"synthesize"`` decides whether the synthesizer writes the answer; if it
    says nothing, no (``synthesize`` forces it): a plan file's answer is its last steps'
    outputs, even when the workers have a model."""
    data = load_plan_data(path)
    if synthesize or "synthesize" not in data:
        # Written into the plan, so a server (CHORDAL_API_URL) decides the same way.
        data["synthesize"] = synthesize
    deps = None
    if over_http(client):
        # The server validates the plan with its own tool modules.
        run_id = client.submit(data, options)
        warn_unready(client)
    else:
        compiled = client.compile(data)
        client.ping()
        # A synthesized answer is written on the llm queue.
        writes = client.has_model and compiled.plan.synthesize is not False
        warn_missing_workers(client, compiled.queues() | ({LLM_QUEUE} if writes else set()))
        for problem in client.uncovered_steps(compiled):
            err.print(f"warning: {problem}; the step will fail.", highlight=False,
                      markup=False)
        run_id = client.submit(compiled, options)
        deps = {sid: sorted(ups) for sid, ups in compiled.deps.items()}
    if options is not None and options.approve:
        awaiting(client, run_id, as_json, timeout, wait or events)
    if not wait and not events:
        print(json.dumps({"run_id": run_id}) if as_json else run_id)
        return None
    return follow(client, run_id, as_json, timeout, deps, events, left)


def parse_models(pairs: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["planner=claude-sonnet-5-5"]`` -> ``{"planner": {"model": "claude-sonnet-5-5"}}``."""
    roles: dict[str, dict[str, Any]] = {}
    for pair in pairs or []:
        role, sep, name = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"--model takes ROLE=MODEL, e.g. planner=claude-sonnet-5-5, "
                               f"not {pair!r}")
        if role not in ROLES:
            raise InvalidInput(f"--model: unknown role {role!r}; roles are {', '.join(ROLES)}")
        roles[role] = {"model": name.strip()}
    return roles


def run_goal(client: AnyClient, goal: str, wait: bool, as_json: bool,
             timeout: float | None, events: bool = False,
             left: Callable[[str], str] = goes_on, options: RunOptions | None = None
             ) -> RunReport | None:
    """Submit a goal for the planner model and optionally wait; `run GOAL`, `dev --goal`."""
    run_id = client.submit_goal(goal, options)
    if over_http(client):
        warn_unready(client)
    else:
        warn_missing_workers(client, {DEFAULT_QUEUE, LLM_QUEUE})
    if options is not None and options.approve:
        awaiting(client, run_id, as_json, timeout, wait or events)
    if not wait and not events:
        print(json.dumps({"run_id": run_id}) if as_json else run_id)
        return None
    return follow(client, run_id, as_json, timeout, events=events, left=left)


def awaiting(client: AnyClient, run_id: str, as_json: bool, timeout: float | None,
             waited: bool = False) -> NoReturn:
    """`run --approve`: wait for the plan (a goal is planned first), print it and the run
    id, and exit while the run waits for `chordal approve` or `chordal reject`: 0, what
    was asked; 3 (as `chordal status`) when ``waited``: --wait asked for its end."""
    report = client.wait(run_id, timeout)
    if report.status != "awaiting_approval":
        print_report(report, as_json)
        exit_for(report)
    plan = report.plan.model_dump(mode="json") if report.plan else None
    if as_json:
        print(json.dumps({"run_id": run_id, "status": report.status, "plan": plan},
                         indent=2))
    else:
        print(json.dumps(plan, indent=2))
        err.print(f"run {run_id} awaits approval: chordal approve {run_id} "
                  f"[--plan EDITED.json], or chordal reject {run_id} [--reason TEXT]",
                  highlight=False, markup=False)
    raise typer.Exit(EXIT_NOT_ENDED if waited else EXIT_OK)


@app.command()
@user_errors
def run(
    goal: Annotated[str | None, typer.Argument(help="A goal for the planner model.")] = None,
    plan: Annotated[Path | None, typer.Option("--plan", "-p", help="Run this plan file.")
                    ] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait for the run to end.")
                    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    events: Annotated[bool, typer.Option(
        "--events", help="Follow the run, printing its events as JSON lines (NDJSON) as "
                         "they happen (with --json, the report is the last line).")] = False,
    timeout: Annotated[float | None, typer.Option(help="Stop waiting after S seconds.",
                                                  min=0)] = None,
    budget_tokens: Annotated[int | None, typer.Option(
        help="Stop (or pause) the run past this many model tokens.", min=1)] = None,
    budget_usd: Annotated[float | None, typer.Option(
        help="Stop (or pause) the run past this estimated cost in USD.", min=0)] = None,
    on_budget: Annotated[str, typer.Option(
        "--on-budget", help="stop: end with the partial results; pause: wait for "
                            "`chordal resume` with a new budget.")] = "stop",
    max_replans: Annotated[int | None, typer.Option(
        "--max-replans", help="Most replans of this run (default: the plan's, else "
                              "CHORDAL_MAX_REPLANS).", min=0)] = None,
    approve: Annotated[bool, typer.Option(
        "--approve", help="Plan, print the plan and stop: nothing runs before `chordal "
                          "approve RUN_ID`.")] = False,
    checkpoint_all: Annotated[bool, typer.Option(
        "--checkpoint-all", help="Every step is a checkpoint: the replanner reviews the "
                                 "plan after each one.")] = False,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="With a GOAL: ROLE=MODEL for this run (planner, replanner, "
                        "executor, synthesizer); repeatable.")] = None,
    synthesize: Annotated[bool, typer.Option(
        "--synthesize", help="With --plan: the synthesizer model writes the answer (as the "
                             "plan's \"synthesize\": true). A goal's run always has one.")
    ] = False,
) -> None:
    """Run a goal (planned by the model) or a plan file: submit, and with --wait (or
    --events) follow it. With CHORDAL_API_URL set, through that server.

    Exit status: 0 succeeded (without --wait: submitted; --approve: planned), 1 failed,
    cancelled or timed out, 2 bad input, 3 waits for a person (approval, a paused
    budget)."""
    if (goal is None) == (plan is None):
        raise InvalidInput("give a GOAL (planned by the model) or --plan PLAN.json, not "
                           + ("both" if goal else "neither"))
    if on_budget not in ("stop", "pause"):
        raise InvalidInput(f"--on-budget must be stop or pause, not {on_budget!r}")
    if plan is not None and model:
        raise InvalidInput("--model applies to a GOAL; a plan file's llm steps use "
                           "CHORDAL_EXECUTOR_MODEL")
    options = RunOptions.checked(
        budget_tokens=budget_tokens, budget_usd=budget_usd, on_budget=on_budget,
        max_replans=max_replans, approve=approve, checkpoint_all=checkpoint_all,
        roles=parse_models(model))
    client = connect()
    if plan is not None:
        report = run_plan(client, plan, wait, as_json, timeout, events, synthesize,
                          options=options)
    else:
        assert goal is not None
        report = run_goal(client, goal, wait, as_json, timeout, events, options=options)
    if report is not None:
        finish(report, as_json, events)


@app.command()
@user_errors
def watch(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    events: Annotated[bool, typer.Option(
        "--events", help="Print its events as JSON lines (the default when stdout is not "
                         "a terminal).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Then print the JSON report.")
                       ] = False,
    timeout: Annotated[float | None, typer.Option(help="Stop after S seconds.", min=0)
                       ] = None,
) -> None:
    """Follow any run live (from its first event) until it ends or waits for a person: a
    live table on a terminal, its events as JSON lines otherwise.

    Exit status: 0 succeeded, 1 failed, cancelled or timed out, 2 bad input (no such
    run), 3 waits for a person (approval, a paused budget)."""
    client = connect()
    client.ping()
    nd = events or not out.is_terminal
    finish(follow(client, run_id, as_json, timeout, events=nd), as_json, nd)


@app.command()
@user_errors
def status(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Print a run's report. Exit status: 0 succeeded, 1 failed or cancelled, 3 not ended
    yet (pending, running, paused, awaiting approval)."""
    client = connect()
    client.ping()
    report = client.report(run_id)
    print_report(report, as_json)
    raise typer.Exit(EXIT_OK if report.status == "succeeded" else
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
    client = connect()
    client.ping()
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


@app.command()
@user_errors
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
) -> None:
    """Cancel a run: steps not started never start; running steps finish but unlock
    nothing. Exit 0 if cancelled, 1 if the run had already ended."""
    client = connect()
    client.ping()
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
    client = connect()
    client.ping()
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
    client = connect()
    client.ping()
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
    client = connect()
    client.ping()
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
    client = connect()
    client.ping()
    client.resume(run_id, budget_tokens, budget_usd)
    print(f"{run_id}: resumed")
