"""``chordal record``: a run's model exchanges as a scripted-model file, so
``CHORDAL_LLM=scripted:FILE`` replays that run offline (a regression test of an agent, in
CI, with no API key)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from planner.cli.app import app, err, user_errors
from planner.cli.connect import connect, over_http
from planner.errors import InvalidInput


@app.command()
@user_errors
def record(
    run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the file here (default: stdout).")] = None,
) -> None:
    """Write a run's model exchanges (each request's role, turn and prompt line, and the
    response) as a scripted-model file: CHORDAL_LLM=scripted:FILE replays the run offline
    and deterministically."""
    client = connect()
    if over_http(client):
        raise InvalidInput("chordal record reads the run store itself: it needs Redis "
                           "access, not CHORDAL_API_URL (unset it where Redis is reachable)")
    client.ping()
    exchanges = client.store.exchanges(run_id)
    if not exchanges:
        raise InvalidInput(f"run {run_id} made no model call (or ran before the workers "
                           "kept them): nothing to record")
    report = client.store.report(run_id)
    from planner.llm.scripted import cassette

    data = cassette(exchanges, f"run {run_id} ({report.goal})")
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        print(text, end="")
        return
    output.write_text(text, encoding="utf-8")
    roles = sorted({r["role"] for r in data["responses"]})
    err.print(f"{output}: {len(data['responses'])} model exchange(s) of run {run_id} "
              f"({', '.join(roles)}); replay with CHORDAL_LLM=scripted:{output}",
              highlight=False, markup=False, soft_wrap=True)
