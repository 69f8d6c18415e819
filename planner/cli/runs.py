"""Commands that make and follow runs: run, watch. Following a run (its events, the live
view, the exit status) is :mod:`planner.cli.follow`; which client a command uses,
:mod:`planner.cli.connect`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from planner.cli.app import EXIT_NOT_ENDED, EXIT_OK, app, err, out, user_errors
from planner.cli.connect import connect, connected, over_http, warn_missing_workers, warn_unready
from planner.cli.follow import exit_for, finish, follow, goes_on, print_report
from planner.errors import InvalidInput
from planner.language.plan import load_plan_data
from planner.llm.model import ROLES
from planner.options import RunOptions
from planner.store.records import RunReport
from planner.vocabulary import RunStatus
from planner.wire import DEFAULT_QUEUE, LLM_QUEUE

if TYPE_CHECKING:
    from planner.cli.follow import AnyClient


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
        # A synthesized answer is written on the llm queue (by its worker's model, or as
        # the sinks' outputs when that worker has none): it needs a worker there.
        writes = bool(compiled.plan.synthesize)
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
    if report.status != RunStatus.AWAITING_APPROVAL:
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
    client = connected()
    nd = events or not out.is_terminal
    finish(follow(client, run_id, as_json, timeout, events=nd), as_json, nd)
