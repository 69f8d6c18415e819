"""Log lines that say which run, step and attempt they belong to.

A task binds its run and step (and, once the run store has counted it, the attempt) to
the log context; :class:`ContextFilter` copies them onto every record logged meanwhile,
whoever logs it (the engine, a tool, Celery's own task lines). With
``CHORDAL_LOG_FORMAT=json``, :class:`JsonFormatter` writes one JSON object per line, so a
log pipeline can select a run's or a step's lines by field instead of by regex.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

#: The fields a task bound: run_id, step_id, attempt, task_id... (each binding makes a new
#: mapping; the default is read-only, so it cannot be changed under everyone).
_context: ContextVar[Mapping[str, Any]] = ContextVar(
    "chordal_log_context", default=MappingProxyType({}))

#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message",
                                                                          "asctime"}


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add ``fields`` to the log context until :func:`unbind` (Celery's prerun/postrun
    pair, which cannot share a ``with`` block)."""
    return _context.set({**_context.get(), **fields})


def unbind(token: Token[Mapping[str, Any]]) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to the log context inside the block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def add(**fields: Any) -> None:
    """Add ``fields`` to the current context (e.g. the attempt, once the run store has
    counted it); they go when the enclosing :func:`bind` or :func:`bound` ends."""
    _context.set({**_context.get(), **fields})


def current() -> Mapping[str, Any]:
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the log context onto each record (as attributes, so a text format may use
    ``%(run_id)s`` too). A line Celery logs outside a task (``received``) names its task
    id, ``<run>.<version>.<step>``: the run and step are read from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = dict(_context.get())
        if "run_id" not in fields:
            data = getattr(record, "data", None)
            task_id = data.get("id") if isinstance(data, dict) else None
            if isinstance(task_id, str) and task_id.count(".") >= 2:
                run_id, _version, what = task_id.split(".", 2)
                fields.update(run_id=run_id, task_id=task_id)
                name = str(data.get("name", "")) if isinstance(data, dict) else ""
                if name.startswith("chordal.step "):
                    fields["step_id"] = what
        for key, value in fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the log context, any
    ``extra=`` fields, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "data" and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["traceback"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(fmt: str, level: int | str = logging.INFO) -> None:
    """Log to stderr in ``fmt`` ("json" or "text"), every record carrying the context.
    Replaces the root logger's handlers (a worker configures logging once, at start)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
