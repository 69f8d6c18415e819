"""``chordal config [--json]``: the effective settings, area by area, each with its
variable, its value (secrets masked) and where the value came from: the environment, a
``.env`` file, or the default. Reads no Redis, so it answers where nothing runs yet."""

from __future__ import annotations

import json
import os
from itertools import groupby
from typing import Annotated

import typer

from planner.cli.app import app, settings, user_errors
from planner.settings import Settings
from planner.settings.report import Entry, as_text, effective


def by_area(entries: list[Entry]) -> dict[str, list[Entry]]:
    return {area: list(group) for area, group in groupby(entries, key=lambda e: e.area)}


def source_text(entry: Entry) -> str:
    return entry.file or entry.source  # a .env file by its path


def value_text(entry: Entry) -> str:
    if entry.value is None:
        extra = Settings.areas()[entry.area].model_fields[entry.field].json_schema_extra
        if isinstance(extra, dict) and "unset" in extra:
            return f"(unset: {extra['unset']})"
    return as_text(entry.value)


@app.command("config")
@user_errors
def config(
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object: each area's variables, with value and source.")]
    = False,
) -> None:
    """The effective settings by area, secrets masked, and where each came from.

    Each variable, its value, and its source: env, .env (a file), or default.
    docs/configuration.md says what each one means."""
    entries = effective(settings(), os.environ)
    if as_json:
        print(json.dumps({area: [e.model_dump(exclude={"area"}) for e in group]
                          for area, group in by_area(entries).items()}, indent=2))
        return
    width = max(len(e.env) for e in entries)
    docs = {area: " ".join((model.__doc__ or "").split())
            for area, model in Settings.areas().items()}
    blocks = []
    for area, group in by_area(entries).items():
        lines = [f"[{area}] {docs[area]}"]
        lines += [f"  {e.env:<{width}}  {value_text(e)}  ({source_text(e)})"
                  for e in group]
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))
