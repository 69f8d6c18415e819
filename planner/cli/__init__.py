"""The ``chordal`` command line (``planner.cli:main``)."""

# The command modules register their commands on ``app`` when imported.
from planner.cli import dev, init, plans, record, runs, serve
from planner.cli.app import app, main

__all__ = ["app", "dev", "init", "main", "plans", "record", "runs", "serve"]
