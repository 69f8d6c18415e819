"""The ``chordal`` command line (``planner.cli:main``). Each module registers its commands on
``app`` when imported, in the order `chordal --help` lists them: runs first, then the
workers, then plans and tools."""

# isort: off
from planner.cli import runs, status, decisions, dev, init, plans, record, serve, config
# isort: on
from planner.cli.app import app, main

__all__ = ["app", "config", "decisions", "dev", "init", "main", "plans", "record", "runs",
           "serve", "status"]
