"""The ``.env`` file of the working directory, and where each variable came from."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values

#: The file of settings read from the working directory (``KEY=value`` lines).
ENV_FILE = ".env"

#: Variables that came from a ``.env`` file, and which one: errors about them say so.
_FROM_FILE: dict[str, str] = {}

Origin = Literal["env", ".env", "default"]


def load_env_file(path: str | Path = ENV_FILE) -> dict[str, str]:
    """Put the variables of a ``.env`` file into ``os.environ``, except those already set
    there (the environment wins); return the ones it set.

    Into ``os.environ``, not only into :class:`Settings`: the model's key
    (``ANTHROPIC_API_KEY``) is read from the environment, and processes started from here
    (``chordal dev``'s worker) inherit it. Setting a variable only where it is missing
    makes a repeated load a no-op, so every entry point may call it."""
    p = Path(path)
    if not p.is_file():
        return {}
    loaded: dict[str, str] = {}
    for key, value in dotenv_values(p).items():
        if value is not None and key not in os.environ:
            os.environ[key] = loaded[key] = value
    _FROM_FILE.update({k: str(p) for k in loaded})
    return loaded


def where(var: str) -> str:
    """`` (from .env)`` for a variable a file set, else nothing: for error messages."""
    return f" (from {_FROM_FILE[var]})" if var in _FROM_FILE else ""


def origin(var: str, environ: Mapping[str, str]) -> tuple[Origin, str | None]:
    """Where a variable's value came from: the environment, a ``.env`` file (and which),
    or nowhere (its default)."""
    if var not in environ:
        return "default", None
    if var in _FROM_FILE and environ is os.environ:
        return ".env", _FROM_FILE[var]
    return "env", None
