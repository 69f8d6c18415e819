"""``chordal init [DIR]``: a starter a new tool author can run at once: a module of typed
tools, a plan that uses them (with ``$ref``), a ``.env`` of the settings people change,
and the two commands to run it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner.cli.app import app, user_errors
from planner.errors import InvalidInput

TOOLS_MODULE = "mytools"

TOOLS = '''"""My tools. Each is a typed function: its arguments and return type are the schemas
the plan is checked against, and the first line of its docstring is what the planner
model reads about it (so say what it does). `chordal tools` lists them."""

from pydantic import BaseModel

from planner import PermanentError, tool


class TextStats(BaseModel):
    words: int
    sentences: int
    longest_word: str


@tool
def text_stats(text: str) -> TextStats:
    """Count the words and sentences of a text, and find its longest word."""
    words = [w.strip(".,;:!?\\"'()") for w in text.split()]
    words = [w for w in words if w]
    if not words:
        # A permanent error is not retried: the step fails for good (its policy applies).
        raise PermanentError("the text has no words")
    sentences = sum(text.count(mark) for mark in ".!?") or 1
    return TextStats(words=len(words), sentences=sentences,
                     longest_word=max(words, key=len))


@tool(max_retries=2, timeout_s=10)
def shout(text: str, times: int = 1) -> str:
    """Repeat a text in capitals, `times` times."""
    return " ".join([text.upper()] * times)
'''

PLAN = '''{
  "goal": "Describe a short text: its words per sentence and its longest word, shouted",
  "steps": [
    {"id": "stats", "tool": "text_stats",
     "args": {"text": "Chordal runs plans on Celery. Independent steps run side by side."}},
    {"id": "per_sentence", "tool": "calculate",
     "args": {"expression": "words / sentences",
              "variables": {"words": {"$ref": "stats.words"},
                            "sentences": {"$ref": "stats.sentences"}}}},
    {"id": "loud", "tool": "shout",
     "args": {"text": {"$ref": "stats.longest_word"}, "times": 2}}
  ]
}
'''

ENV = f'''# Chordal reads this file from the directory you run `chordal` in; a variable set in
# the environment wins over the one here.

# The modules whose tools the CLI and the workers load (importable from this directory).
CHORDAL_TOOL_MODULES={TOOLS_MODULE}

# Redis (run store and broker). Unset: `chordal dev` uses 127.0.0.1:6379, or starts a
# Redis of its own if none answers there.
# CHORDAL_REDIS_URL=redis://127.0.0.1:6379/0

# A model, to plan goals (`chordal run "GOAL"`), run `llm` steps and write answers:
# Claude with a key...
# ANTHROPIC_API_KEY=sk-ant-...
# ...or a recording of a run (`chordal record RUN_ID -o cassette.json`), offline:
# CHORDAL_LLM=scripted:cassette.json

# A budget per run (the run stops with what it earned when it is spent).
# CHORDAL_BUDGET_USD=0.50
'''

FILES = {f"{TOOLS_MODULE}.py": TOOLS, "plan.json": PLAN, ".env": ENV}

#: The commands printed at the end, run as written by tests/firstday/test_init.py.
COMMANDS = [
    ("chordal dev", "in one terminal: Redis (if none) and a worker; Ctrl-C stops them"),
    ("chordal run --plan plan.json --wait", "in another: run the plan, live"),
]


@app.command()
@user_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write the starter (made if "
                                                   "missing).")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")
                     ] = False,
) -> None:
    """Write a starter: a tools module with two typed tools, a plan using them, a .env,
    and the two commands that run it."""
    existing = [name for name in FILES if (directory / name).exists()]
    if existing and not force:
        raise InvalidInput(f"{', '.join(existing)} already exist in {directory}; "
                           "choose another directory, or --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (directory / name).write_text(text, encoding="utf-8")
    # Plain prints, never wrapped: the commands are to be copied as they are.
    print(f"wrote {', '.join(FILES)} in {directory}")
    here = directory.resolve() == Path.cwd()
    print("\nrun it" + ("" if here else f" from {directory} (cd {directory})") + ":")
    width = max(len(c) for c, _ in COMMANDS)
    for command, what in COMMANDS:
        print(f"  {command:<{width}}   # {what}")
    print(f"\nthen: chordal tools lists your tools; edit {TOOLS_MODULE}.py and plan.json "
          "(docs/tools.md).")
