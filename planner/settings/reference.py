"""docs/configuration.md, written from the area models (``python -m
planner.settings.reference > docs/configuration.md``); a test keeps it current."""

from __future__ import annotations

import json
from typing import Any

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from planner.settings.area import env_name
from planner.settings.core import Settings

INTRO = """\
# Configuration

Chordal reads its settings from `CHORDAL_*` environment variables, and from a `.env` file
in the working directory (`KEY=value` lines; a variable set in the environment wins; the
file's other variables, such as `ANTHROPIC_API_KEY`, are loaded too). An unknown
`CHORDAL_*` variable, or a value that does not fit, stops the process at start with one
line naming the variable (and the closest known name, and the file it came from).

`chordal config` prints the effective settings, area by area, with where each value came
from (the environment, `.env`, or the default) and secrets masked; `chordal config --json`
the same as JSON. In code, `Settings.from_env()` reads them and `settings.<area>.<field>`
holds each (`settings.store.redis_url` is `CHORDAL_REDIS_URL`).

A Redis Cluster as the run store: `CHORDAL_REDIS_URL=redis+cluster://host:port,host:port`
(any of its nodes; `rediss+cluster://` over TLS; `user:password@` as in a `redis://` URL;
database 0 only, no `?options`), with `CHORDAL_BROKER_URL` set to RabbitMQ (or a Redis
apart): Celery's Redis transport and result backend speak to one node, so Celery keeps no
results there (the run store keeps every output). See docs/operations.md, "Redis Cluster".

This page is generated from the settings' models (`python -m planner.settings.reference >
docs/configuration.md`); a test checks that it is current.
"""


def default_text(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "unset" in extra:
        return f"({extra['unset']})"
    value: Any = (field.default_factory() if field.default_factory is not None  # type: ignore[call-arg]
                  else field.default)
    if value is None or value == [] or value == {} or value is PydanticUndefined:
        return "(none)"
    if isinstance(value, dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def bounds(field: FieldInfo) -> str:
    words = {Ge: "≥", Gt: ">", Le: "≤", Lt: "<"}
    parts = [f"{sign} {getattr(m, kind.__name__.lower())}" for m in field.metadata
             for kind, sign in words.items() if isinstance(m, kind)]
    parts += [f"at least {m.min_length} characters" for m in field.metadata
              if isinstance(m, MinLen)]
    return f" ({', '.join(parts)})" if parts else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    lines = [INTRO]
    for area, model in Settings.areas().items():
        lines += [f"## {area}", "", " ".join((model.__doc__ or "").split()), "",
                  "| variable | default | meaning |", "|---|---|---|"]
        for name, field in model.model_fields.items():
            meaning = (field.description or "") + bounds(field)
            lines.append(f"| `{env_name(name)}` | {_cell(default_text(field))} | "
                         f"{_cell(meaning)} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
