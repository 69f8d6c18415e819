"""CLI start-up: what `chordal --help`, `validate`, `schema` and `import planner` import,
and how long it takes, here and at another revision, measured side by side in one run.

    .venv/bin/python bench/startup.py                    # this checkout only
    .venv/bin/python bench/startup.py --against 283cb90  # and that revision (a worktree)
    .venv/bin/python bench/startup.py --against 283cb90 --write   # docs/benchmarks.md

Each case runs in a fresh interpreter under ``python -X importtime`` (the same interpreter
and site-packages for both revisions, the revision's source first on the path); the figure
is the sum of the top-level imports' cumulative times, median and minimum of ``--runs``.
Both revisions alternate run by run, so a busy machine slows them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- startup:begin -->", "<!-- startup:end -->"
HEAVY = ("anthropic", "celery", "kombu", "fastapi", "uvicorn", "redis", "httpx", "workers")
PLAN = "examples/cost-of-living.json"
CASES: dict[str, list[str] | None] = {
    "chordal --help": ["--help"],
    f"chordal validate {PLAN}": ["validate", PLAN],
    "chordal schema": ["schema"],
    "import planner": None,
}
_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)")


def _code(args: list[str] | None) -> str:
    tail = ("import json, sys\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})),"
            " file=sys.stderr)\n")
    if args is None:
        return "import planner\n" + tail
    return (f"import sys\nsys.argv = ['chordal', *{args!r}]\n"
            "from planner.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            + tail)


def measure(tree: Path, args: list[str] | None) -> tuple[float, list[str]]:
    """Seconds of imports (top-level cumulative sum) and the heavy packages loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHORDAL_", "ANTHROPIC_"))}
    env.update(PYTHONPATH=str(tree), CHORDAL_TOOL_MODULES="planner.tools.testing")
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", _code(args)],
                            cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    total = sum(int(m.group(1)) for m in map(_LINE.match, result.stderr.splitlines())
                if m and len(m.group(2)) == 1)
    heavy = json.loads(result.stderr.strip().splitlines()[-1])
    return total / 1e6, heavy


def worktree(rev: str, into: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(into), rev],
                   cwd=ROOT, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV", help="also measure this git revision")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    opts = parser.parse_args()
    trees = {"now": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if opts.against:
            trees = {opts.against: worktree(opts.against, Path(tmp) / "before"), **trees}
        try:
            rows = run(trees, opts.runs)
        finally:
            if opts.against:
                subprocess.run(["git", "worktree", "remove", "--force", str(trees[opts.against])],
                               cwd=ROOT, check=False)
    section = render(rows, list(trees), opts.runs)
    print(section)
    if opts.write:
        from bench.doc import write_section

        write_section(START, END, section)


def run(trees: dict[str, Path], runs: int) -> dict[str, dict[str, tuple[list[float], list[str]]]]:
    rows: dict[str, dict[str, tuple[list[float], list[str]]]] = {}
    for name, args in CASES.items():
        rows[name] = {label: ([], []) for label in trees}
        for _ in range(runs):
            for label, tree in trees.items():  # alternate: a busy moment hits both
                seconds, heavy = measure(tree, args)
                rows[name][label][0].append(seconds)
                rows[name][label][1][:] = heavy
    return rows


def render(rows: dict[str, dict[str, tuple[list[float], list[str]]]], labels: list[str],
           runs: int) -> str:
    head = " | ".join(f"{label}: median (min) s, heavy packages loaded" for label in labels)
    lines = [START,
             f"Measured by `python bench/startup.py` ({runs} runs each, alternating; "
             f"{date.today()}, {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}):", "",
             f"| command | {head} |", "|---" * (len(labels) + 1) + "|"]
    for name, by in rows.items():
        cells = [f"{statistics.median(t):.3f} ({min(t):.3f}), "
                 f"{', '.join(h) or 'none'}" for t, h in by.values()]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join([*lines, END])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
