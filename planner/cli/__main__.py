"""``python -m planner.cli``: the same as the ``chordal`` command."""

from planner.cli import main

main()
