"""The ``chordal`` command line (``planner.cli:main``)."""

from planner.cli import dev, plans, runs, serve  # the commands register themselves on ``app``
from planner.cli.app import app, main

__all__ = ["app", "dev", "main", "plans", "runs", "serve"]
