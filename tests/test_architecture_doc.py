"""docs/architecture.md lists every module with one line saying what it is for, and lists
nothing that is gone: a module added, moved or removed without the map is a failure."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
#: Package markers and entry points, not rooms of their own.
UNLISTED = {"__init__.py", "__main__.py"}


def listed() -> set[str]:
    return set(re.findall(r"^((?:planner|workers|bench)/\S+)", DOC.read_text(), re.M))


def modules() -> set[str]:
    found = {p for pkg in ("planner", "workers") for p in (ROOT / pkg).rglob("*.py")}
    found |= set((ROOT / "planner" / "service" / "page").glob("*.js"))
    return {p.relative_to(ROOT).as_posix() for p in found
            if p.name not in UNLISTED and "__pycache__" not in p.parts
            and "vendor" not in p.parts}


def test_every_module_has_its_line():
    entries = listed()  # a glob covers a family (the page's modules, the Lua scripts)
    missing = sorted(m for m in modules() if not any(fnmatch(m, e) for e in entries))
    assert not missing, f"not in docs/architecture.md's module list: {missing}"


def test_every_line_names_something_that_exists():
    gone = sorted(entry for entry in listed() if not any(ROOT.glob(entry)))
    assert not gone, f"docs/architecture.md lists what is not there: {gone}"


def test_the_paths_of_a_run_and_of_a_failure_are_drawn():
    text = DOC.read_text()
    assert "## The path of a run" in text and "## The path of a failure" in text
