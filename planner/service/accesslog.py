"""Secrets out of the access log: a query parameter whose name says it holds a credential
(``api_key``, ``token``, ``access_token``, ``secret``, ``password``…) is logged as
``name=<redacted>``.

The API never reads a key from a URL (``Authorization: Bearer`` only), but a client that
puts one there (an ``EventSource`` cannot send headers) still sends it to the server, and
uvicorn would write it to its access log, where secrets must never be.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

#: uvicorn's access logger: its records' args are (client, method, path?query, version,
#: status).
ACCESS_LOGGER = "uvicorn.access"
#: Names (decoded, any case) of the parameters whose values are never logged.
SECRET_NAME = re.compile(r"key|token|secret|passw|^auth$|authoriz|signature|credential|"
                         r"session", re.IGNORECASE)
REDACTED = "<redacted>"


def redact_query(target: str) -> str:
    """``path?query`` with the values of credential-like parameters replaced."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        if SECRET_NAME.search(unquote_plus(name)):
            pair = f"{name}={REDACTED}" if eq else name
        parts.append(pair)
    return f"{path}?{'&'.join(parts)}"


class RedactQuery(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def install() -> None:
    """Redact uvicorn's access log in this process (once, however many apps it makes).
    On the logger, not a handler: it holds whatever handlers the log config gives it."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactQuery) for f in logger.filters):
        logger.addFilter(RedactQuery())
