"""The ``chordal`` command line. User errors are one line on stderr and exit 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import kombu.exceptions
import redis
import typer
from rich.console import Console, Group
from rich.live import Live

from planner.client import Client
from planner.embedded import ensure_redis
from planner.errors import ChordalError, ConfigError, NoWorkerError, PlanInvalid
from planner.llm import LLM_QUEUE, require_model
from planner.llm.model import ROLES
from planner.llm.roles import plan_goal
from planner.plan import load_plan_data, plan_json_schema
from planner.refs import referenced_steps
from planner.settings import Settings
from planner.validation import Limits, ValidPlan, validate
from planner.view import render
from workers.tools.registry import DEFAULT_QUEUE, ToolRegistry, load_registry

app = typer.Typer(
    name="chordal",
    help="Plan-and-execute LLM agents that run on Celery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def user_errors(fn: F) -> F:
    """Turn a :class:`ChordalError` into one readable line (or the list of plan problems)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ChordalError as exc:
            err.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except (redis.RedisError, kombu.exceptions.OperationalError) as exc:
            # Redis or the broker went away mid-command: one line, not a traceback.
            err.print(f"[red]error:[/] lost the connection to Redis or the broker: {exc}",
                      markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    return Settings.from_env()


def registry(s: Settings) -> ToolRegistry:
    return load_registry(s.tool_modules)


def load_valid_plan(path: Path, s: Settings, tools: ToolRegistry) -> ValidPlan:
    return validate(load_plan_data(path), tools, Limits.from_settings(s))


@app.command()
@user_errors
def schema() -> None:
    """Print the plan's JSON Schema."""
    print(json.dumps(plan_json_schema(), indent=2))


@app.command("validate")
@user_errors
def validate_cmd(
    plan: Annotated[Path, typer.Argument(help="Plan file (JSON).", show_default=False)],
) -> None:
    """Check a plan: exit 0 with a summary, or exit 2 listing every problem."""
    s = settings()
    valid = load_valid_plan(plan, s, registry(s))
    print(f"{plan}: valid: {valid.shape.summary()}")


@app.command()
@user_errors
def tools(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the registered tools with their input and output schemas."""
    reg = registry(settings())
    described = [t.describe() for t in reg.values()]
    if as_json:
        print(json.dumps(described, indent=2))
        return
    for d in described:
        out.print(f"[bold]{d['name']}[/]  queue={d['queue']} retries={d['max_retries']} "
                  f"timeout={d['timeout_s']}s", highlight=False)
        out.print(f"  {d['description']}", highlight=False)
        out.print(f"  input:  {json.dumps(d['input_schema'].get('properties', {}))}",
                  highlight=False, soft_wrap=True)
        out.print(f"  output: {json.dumps(d['output_schema'])}", highlight=False,
                  soft_wrap=True)


@app.command()
@user_errors
def worker(
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1,
                                                    help="Processes or threads.")] = None,
    pool: Annotated[str, typer.Option(help="prefork (CPU-bound tools, enforces timeouts) "
                                           "or threads (I/O-bound tools).")] = "prefork",
    queues: Annotated[str | None, typer.Option(
        "--queues", "-Q", help="Comma-separated queues (default: every Chordal queue).")
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
) -> None:
    """Start a worker (a Celery worker with Chordal's tasks)."""
    if pool not in ("prefork", "threads", "solo"):
        raise ConfigError(f"--pool must be prefork, threads or solo, not {pool!r}")
    s = settings()
    names = queues or ",".join(sorted(registry(s).queues | {DEFAULT_QUEUE}))
    from workers.app import app as celery_app

    argv = ["worker", f"--loglevel={loglevel}", f"--pool={pool}", f"--queues={names}",
            "--task-events"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    celery_app.worker_main(argv)


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        out.print(render(report))


def _exit_for(report: dict[str, Any]) -> None:
    raise typer.Exit(EXIT_OK if report["status"] == "succeeded" else EXIT_FAILED)


def follow(client: Client, run_id: str, as_json: bool, timeout: float | None,
           deps: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Wait for a run: quietly for --json or a pipe, with a live view on a terminal."""
    if as_json or not out.is_terminal:
        return client.wait(run_id, timeout)

    def view() -> Group:
        report = client.report(run_id)
        steps = (report.get("plan") or {}).get("steps", [])
        plan_deps = deps or {s["id"]: sorted(set(s["depends_on"]) | referenced_steps(s["args"]))
                             for s in steps}
        return render(report, plan_deps)

    with Live(view(), console=out, refresh_per_second=8) as live:
        report = client.wait(run_id, timeout, on_event=lambda _id, _f: live.update(view()))
        live.update(view())
    return report


def warn_missing_workers(client: Client, queues: set[str]) -> None:
    """Say so, instead of waiting in silence; the run is queued all the same."""
    try:
        client.require_queues(queues)
    except NoWorkerError as exc:
        err.print(f"warning: {exc}; the run waits until one does.", highlight=False,
                  markup=False)


def run_plan(client: Client, path: Path, wait: bool, as_json: bool,
             timeout: float | None) -> dict[str, Any] | None:
    """Validate, submit and optionally wait; shared by `run` and `dev --run`."""
    compiled = client.compile(load_plan_data(path))
    client.ping()
    # With a model configured, the join is written by the synthesizer on the llm queue.
    warn_missing_workers(client, compiled.queues() | ({LLM_QUEUE} if client.has_model
                                                       else set()))
    run_id = client.submit(compiled)
    if not wait:
        print(json.dumps({"run_id": run_id}) if as_json else run_id)
        return None
    return follow(client, run_id, as_json, timeout,
                  {sid: sorted(ups) for sid, ups in compiled.deps.items()})


def parse_models(pairs: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["planner=claude-sonnet-5-5"]`` -> ``{"planner": {"model": "claude-sonnet-5-5"}}``."""
    roles: dict[str, dict[str, Any]] = {}
    for pair in pairs or []:
        role, sep, name = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--model takes ROLE=MODEL, e.g. planner=claude-sonnet-5-5, "
                              f"not {pair!r}")
        if role not in ROLES:
            raise ConfigError(f"--model: unknown role {role!r}; roles are {', '.join(ROLES)}")
        roles[role] = {"model": name.strip()}
    return roles


def run_goal(client: Client, goal: str, wait: bool, as_json: bool, timeout: float | None,
             budget_tokens: int | None = None, budget_usd: float | None = None,
             roles: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Submit a goal for the planner model and optionally wait; `run GOAL`, `dev --goal`."""
    run_id = client.submit_goal(goal, roles=roles, budget_tokens=budget_tokens,
                                budget_usd=budget_usd)
    warn_missing_workers(client, {DEFAULT_QUEUE, LLM_QUEUE})
    if not wait:
        print(json.dumps({"run_id": run_id}) if as_json else run_id)
        return None
    return follow(client, run_id, as_json, timeout)


@app.command()
@user_errors
def run(
    goal: Annotated[str | None, typer.Argument(help="A goal for the planner model.")] = None,
    plan: Annotated[Path | None, typer.Option("--plan", "-p", help="Run this plan file.")
                    ] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait for the run to end.")
                    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Stop waiting after S seconds.",
                                                  min=0)] = None,
    budget_tokens: Annotated[int | None, typer.Option(
        help="With a GOAL: stop the run past this many model tokens.", min=1)] = None,
    budget_usd: Annotated[float | None, typer.Option(
        help="With a GOAL: stop the run past this estimated cost in USD.", min=0)] = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="With a GOAL: ROLE=MODEL for this run (planner, replanner, "
                        "executor, synthesizer); repeatable.")] = None,
) -> None:
    """Run a goal (planned by the model) or a plan file: submit, and with --wait follow it.

    Exit status: 0 succeeded, 1 failed or timed out, 2 bad input."""
    if (goal is None) == (plan is None):
        raise ConfigError("give a GOAL (planned by the model) or --plan PLAN.json, not "
                          + ("both" if goal else "neither"))
    s = settings()
    client = Client(s, registry(s))
    if plan is not None:
        report = run_plan(client, plan, wait, as_json, timeout)
    else:
        assert goal is not None
        report = run_goal(client, goal, wait, as_json, timeout, budget_tokens, budget_usd,
                          parse_models(model))
    if report is not None:
        if as_json or not out.is_terminal:
            _print_report(report, as_json)
        _exit_for(report)


@app.command("plan")
@user_errors
def plan_cmd(
    goal: Annotated[str, typer.Argument(help="What to plan for.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print only the plan's JSON.")
                       ] = False,
    model: Annotated[str | None, typer.Option("--model", help="The planner's model.")
                     ] = None,
) -> None:
    """Plan a goal with the model and print the plan without running it (review or edit
    it, then `chordal run --plan`)."""
    s = settings()
    tools = registry(s)
    overrides = parse_models([f"planner={model}"]) if model else None
    outcome = plan_goal(require_model(s), s, tools, goal, overrides)
    if outcome.plan is None:
        raise PlanInvalid(outcome.problems)
    text = outcome.plan.model_dump_json(indent=2)
    if as_json:
        print(text)
        return
    summary = validate(outcome.plan, tools, Limits.from_settings(s)).shape.summary()
    err.print(f"plan for {goal!r}: {summary}", highlight=False, markup=False)
    print(text)
    tokens = sum(r.usage.total_tokens for r in outcome.responses)
    err.print(f"{outcome.attempts} model call(s), {tokens} tokens", highlight=False)


@app.command()
@user_errors
def status(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Print a run's report."""
    s = settings()
    client = Client(s, registry(s))
    client.ping()
    report = client.report(run_id)
    _print_report(report, as_json)


@app.command()
@user_errors
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
) -> None:
    """Cancel a run: steps not started never start; running steps finish but unlock
    nothing. Exit 0 if cancelled, 1 if the run had already ended."""
    s = settings()
    client = Client(s, registry(s))
    client.ping()
    if client.cancel(run_id):
        print(f"{run_id}: cancelled")
        return
    status_ = client.report(run_id)["status"]
    err.print(f"{run_id}: not cancelled, the run already ended ({status_})", highlight=False)
    raise typer.Exit(EXIT_FAILED)


@app.command()
@user_errors
def dev(
    run_path: Annotated[Path | None, typer.Option(
        "--run", help="Run this plan, print its report, then stop everything.")] = None,
    goal: Annotated[str | None, typer.Option(
        "--goal", help="Plan this goal with the model, run it, print the report, stop.")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="With --run: a JSON report.")
                       ] = False,
    timeout: Annotated[float, typer.Option(help="With --run: seconds to wait.", min=1)
                       ] = 120.0,
) -> None:
    """Redis (embedded if none is configured or running) plus a worker, in the foreground.
    Ctrl-C stops them all."""
    s = settings()  # fail early on a bad CHORDAL_* variable
    # SIGTERM (a process manager, `kill`) stops everything in order, like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as stack:
        embedded = ensure_redis()
        if embedded:
            stack.callback(embedded.stop)
            err.print(f"dev: started an embedded Redis at {embedded.url}", highlight=False)
        cmd = [sys.executable, "-m", "planner.cli", "worker", f"--concurrency={concurrency}"]
        log = None
        if run_path and goal:
            raise ConfigError("give --run PLAN.json or --goal GOAL, not both")
        once = run_path is not None or goal is not None
        if once:
            # The worker's banner and log would bury the report: they go to a file.
            log = stack.enter_context(tempfile.NamedTemporaryFile(
                prefix="chordal-worker-", suffix=".log", delete=False))
            err.print(f"dev: worker log in {log.name}", highlight=False)
        worker_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT if log else None)
        stack.callback(_stop, worker_proc)
        try:
            if not once:
                err.print("dev: worker started; Ctrl-C stops everything", highlight=False)
                worker_proc.wait()
                return
            client = Client(s, registry(s))
            deadline = time.monotonic() + 60
            while client.missing_queues({DEFAULT_QUEUE}, timeout=0.5):
                if worker_proc.poll() is not None or time.monotonic() > deadline:
                    raise ConfigError(f"dev: the worker did not start; see {log and log.name}")
            report = (run_plan(client, run_path, True, as_json, timeout) if run_path else
                      run_goal(client, str(goal), True, as_json, timeout))
            assert report is not None
            if as_json or not out.is_terminal:
                _print_report(report, as_json)
            _exit_for(report)
        except KeyboardInterrupt:
            err.print("dev: stopping", highlight=False)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (running steps finish or are requeued), then kill if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    try:
        app()
    except ChordalError as exc:  # raised outside a command (e.g. while parsing options)
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
