"""Secrets out of the access log, by allow-list: only the query parameters the API defines
(``after``, ``cursor``, ``limit``, ``status``…, read from the app's routes) are logged
with their values; any other value is ``<redacted>``, whatever its name.

The API never reads a key from a URL (``Authorization: Bearer`` only), but a client that
puts one there (an ``EventSource`` cannot send headers) still sends it to the server, and
uvicorn would write it to its access log, where secrets must never be. Names cannot say
which values are secrets (``pwd``, ``sig``, ``api_key%3Dsekrit``, ``x=1;api_key=...``),
so only what the API defines, and looks like what it defines, is kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

#: uvicorn's access logger: its records' args are (client, method, path?query, version,
#: status).
ACCESS_LOGGER = "uvicorn.access"
REDACTED = "<redacted>"
#: What a value of the API's own parameters looks like (ids, cursors, numbers, statuses);
#: anything else in one (``after=1%26api_key%3D...``) is redacted too.
PLAIN_VALUE = re.compile(r"[\w.:+\-]{0,200}")
#: A name shown (its value redacted) when not the API's: one that could not hold a value.
PLAIN_NAME = re.compile(r"[A-Za-z][\w.\-]{0,63}")
#: Pairs are split on ``;`` too: a server that reads it as a separator would see its own
#: parameter there (``x=1;api_key=...``), and the log must not.
PAIRS = re.compile(r"[&;]")


def query_names(app: FastAPI) -> frozenset[str]:
    """The query parameters the app's operations declare (in its OpenAPI document: the one
    description of them that holds across FastAPI versions; built apart, not cached)."""
    spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
    return frozenset(p["name"] for path in spec.get("paths", {}).values()
                     for op in path.values() if isinstance(op, dict)
                     for p in op.get("parameters", []) if p.get("in") == "query")


def redact_query(target: str, allowed: Iterable[str]) -> str:
    """``path?query`` with every value but those of ``allowed`` parameters replaced."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    allowed = frozenset(allowed)
    parts = []
    for pair, cut in zip(PAIRS.split(query), [*PAIRS.findall(query), ""], strict=True):
        name, eq, value = pair.partition("=")
        plain = unquote_plus(name)
        if eq and plain in allowed and PLAIN_VALUE.fullmatch(unquote_plus(value)):
            kept = pair
        elif eq and PLAIN_NAME.fullmatch(plain):
            kept = f"{name}={REDACTED}"
        else:  # a bare name (``?sk-...``, ``?api_key%3D...``) or an odd one: all of it
            kept = REDACTED if pair else pair
        parts.append(kept + cut)
    return f"{path}?{''.join(parts)}"


def redacts(query: str, allowed: Iterable[str]) -> bool:
    """Whether the log would hide something of ``query``: it holds more than the API's own
    parameters."""
    return redact_query(f"?{query}", allowed) != f"?{query}"


class RedactQuery(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.allowed: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2], self.allowed), *args[3:])
        return True


def install(app: FastAPI) -> frozenset[str]:
    """Redact uvicorn's access log in this process, keeping ``app``'s parameters (once,
    however many apps it makes: their parameters together); returns them. On the logger,
    not a handler: it holds whatever handlers the log config gives it."""
    logger = logging.getLogger(ACCESS_LOGGER)
    found = [f for f in logger.filters if isinstance(f, RedactQuery)]
    redactor = found[0] if found else RedactQuery()
    if not found:
        logger.addFilter(redactor)
    names = query_names(app)
    redactor.allowed |= names
    return names
