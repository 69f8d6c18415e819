"""What a process loaded: run Python code, or a ``chordal`` command, in a fresh interpreter
and report which of the heavy or higher-layer packages it imported. The layer tests (the
import-linter contracts hold on paper; these hold at run time) share it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: What a client, `import planner` and the quick CLI commands must not pay for.
HEAVY = ("anthropic", "celery", "kombu", "fastapi", "uvicorn", "workers")

_REPORT = """
import json, os, sys
def _report(code):
    seen = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(os.environ["HEAVY"])))
    with open(os.environ["LOADED_TO"], "w") as f:
        json.dump({"code": code, "loaded": seen}, f)
"""

_CLI = _REPORT + """
sys.argv = ["chordal", *json.loads(os.environ["ARGS"])]
from planner.cli import main
try:
    main()
    _report(0)
except SystemExit as exc:
    _report(exc.code if isinstance(exc.code, int) else 1)
"""


@dataclass
class Loaded:
    code: int
    loaded: list[str]
    stdout: str
    stderr: str


def _run(script: str, env: Mapping[str, str], extra: Mapping[str, str]) -> Loaded:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "loaded.json"
        full = {**env, **extra, "HEAVY": json.dumps(HEAVY), "LOADED_TO": str(out),
                "PYTHONPATH": str(ROOT)}
        result = subprocess.run([sys.executable, "-c", script], env=full, cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert out.exists(), f"the process did not finish:\n{result.stderr[-3000:]}"
        data = json.loads(out.read_text())
    return Loaded(data["code"], data["loaded"], result.stdout, result.stderr)


def loaded_by_code(code: str, env: Mapping[str, str] | None = None) -> Loaded:
    """Run ``code`` (its last statement done, the report is written)."""
    return _run(_REPORT + code + "\n_report(0)\n", env if env is not None else os.environ, {})


def loaded_by_cli(*args: str, env: Mapping[str, str] | None = None) -> Loaded:
    """Run ``chordal ARGS`` in-process of a fresh interpreter, as the console script does."""
    return _run(_CLI, env if env is not None else os.environ, {"ARGS": json.dumps(args)})
