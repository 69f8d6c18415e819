"""API keys and tenants: ``Authorization: Bearer <secret>`` names a key, and the key's name
is the tenant that owns the runs it creates.

Keys come from ``CHORDAL_API_KEYS`` (``name=secret,…``) or ``CHORDAL_API_KEYS_FILE`` (one
``name=secret`` per line). A presented secret is compared with every key in constant time
(over SHA-256 digests, so lengths leak nothing either), and the loop never stops early: the
time taken says nothing about which key, or how much of one, matched. Secrets are never
logged and never accepted in a URL.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from planner.errors import ConfigError, Unauthorized
from planner.service.accesslog import redacts
from planner.settings import Settings, parse_api_keys

#: Declares the scheme in /openapi.json; its own 403 is replaced by our 401 below.
bearer = HTTPBearer(auto_error=False, description="An API key's secret "
                                                  "(CHORDAL_API_KEYS).")


def load_keys(settings: Settings) -> dict[str, str]:
    """{secret: name} from CHORDAL_API_KEYS, or from CHORDAL_API_KEYS_FILE (not both: which
    one would win is a guess the operator should not have to make)."""
    if settings.api.api_keys_file is None:
        return dict(settings.api.api_keys)
    if settings.api.api_keys:
        raise ConfigError("CHORDAL_API_KEYS_FILE: set it or CHORDAL_API_KEYS, not both")
    try:
        text = Path(settings.api.api_keys_file).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"CHORDAL_API_KEYS_FILE: cannot read {settings.api.api_keys_file}: "
                          f"{exc.strerror}") from None
    try:
        return parse_api_keys(text, "CHORDAL_API_KEYS_FILE")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class Caller:
    """Who sends a request: a key's name, or None when the server runs with --no-auth
    (one local user, who sees every run)."""

    name: str | None
    #: A key named in CHORDAL_API_ADMINS: sees (and acts on) every run, those of other
    #: keys and those made without one (by the CLI or a Client); its own runs are its own.
    admin: bool = False

    @property
    def scope(self) -> str:
        """Where its idempotency keys and rate limit live (key names are never empty)."""
        return self.name or ""

    @property
    def sees_all(self) -> bool:
        return self.name is None or self.admin

    def owns(self, owner: str | None) -> bool:
        return self.sees_all or owner == self.name

    @property
    def listed(self) -> str | None:
        """Whose runs its lists show (None: every run)."""
        return None if self.sees_all else self.name


class KeyRing:
    """The server's keys, as digests; ``enabled`` is False only under ``--no-auth``."""

    def __init__(self, keys: dict[str, str], enabled: bool = True,
                 admins: Iterable[str] = ()) -> None:
        self.enabled = enabled
        self._keys = [(_digest(secret), name) for secret, name in keys.items()]
        self.admins = frozenset(admins)
        unknown = sorted(self.admins - set(keys.values()))
        if enabled and unknown:
            raise ConfigError(f"CHORDAL_API_ADMINS: no API key is named {unknown[0]!r} "
                              "(name keys in CHORDAL_API_KEYS as name=secret)")

    def identify(self, secret: str) -> str | None:
        presented = _digest(secret)
        found: str | None = None
        for digest, name in self._keys:
            if hmac.compare_digest(digest, presented):
                found = name  # no break: every key is compared, whichever matches
        return found


async def caller(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                 ) -> Caller:
    """The dependency of every /v1 operation: 401 without a known key. ``async`` (it does
    no I/O): on the event loop, not a thread, so a stream's slot is checked before any."""
    ring: KeyRing = request.app.state.service.keys
    if not ring.enabled:
        return Caller(None)
    if credentials is None:
        # Anything in the URL but the API's own parameters may be a key: never read, and
        # never quoted back (its name may be the secret itself, ?api_key%3D...).
        in_url = redacts(request.url.query, getattr(request.app.state, "query_names", ()))
        raise Unauthorized("Authorization: send 'Bearer <secret>' with an API key "
                           "(CHORDAL_API_KEYS)" + ("; a credential in the URL is never read "
                                                   "(URLs end up in logs)" if in_url else ""))
    name = ring.identify(credentials.credentials)
    if name is None:
        raise Unauthorized("Authorization: the key is not one of this server's keys")
    return Caller(name, admin=name in ring.admins)
