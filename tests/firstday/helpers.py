"""Run `chordal` as a new user does: the installed console script, in a directory of their
own, with only the environment they would have (no CHORDAL_* from the test run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The venv's `chordal` script (its sys.path[0] is the venv's bin, not the working
#: directory: as for a user), else the module.
SCRIPT = shutil.which("chordal", path=str(Path(sys.executable).parent))
CHORDAL = [SCRIPT] if SCRIPT else [sys.executable, "-m", "planner.cli"]


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHORDAL_", "ANTHROPIC_", "TEST_"))}
    # This checkout's planner, wherever the venv's copy comes from.
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def argv(command: str) -> list[str]:
    """A command as printed (``chordal run ...``) -> what runs it here."""
    words = command.split()
    assert words[0] == "chordal", command
    return [*CHORDAL, *words[1:]]


def chordal(cwd: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHORDAL, *args], cwd=cwd, env=env or user_env(),
                          capture_output=True, text=True, timeout=timeout)
