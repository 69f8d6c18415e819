"""The effective settings, one entry per variable: its area, value (secrets masked) and
where the value came from. What ``chordal config`` prints."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

from planner.settings.area import env_name
from planner.settings.core import Settings
from planner.settings.envfile import Origin, origin

MASK = "***"
#: Query parameters of a URL shown as they are: they say how to connect, not with what.
_CLEAR_QUERY = frozenset({"db", "protocol", "ssl_cert_reqs", "socket_timeout",
                          "socket_connect_timeout", "health_check_interval", "timeout",
                          "virtual_host", "heartbeat"})
#: Keys kept in the clear inside a masked value: where a secret may go is no secret.
_CLEAR_KEYS = frozenset({"hosts"})


class Entry(BaseModel):
    """One variable's effective value."""

    model_config = ConfigDict(frozen=True)

    area: str
    field: str
    env: str
    value: Any
    source: Origin
    #: The ``.env`` file a value came from.
    file: str | None = None
    secret: bool = False


def is_secret(field: FieldInfo) -> bool:
    """A field that holds a secret is one kept out of its model's repr."""
    return not field.repr


def mask_url(url: str) -> str:
    """``redis://user:pw@host`` -> ``redis://user:***@host`` (``//pw@`` too), and every
    query value but a few harmless ones (``?password=pw`` -> ``?password=***``): redis-py
    and kombu take credentials and TLS key paths as query parameters too."""
    url = re.sub(r"//([^@/:]*:)?[^@/]*@", lambda m: f"//{m.group(1) or ''}{MASK}@", url)
    return re.sub(r"([?&][^=&#]+)=([^&#]*)",
                  lambda m: m.group(0) if m.group(1)[1:].lower() in _CLEAR_QUERY
                  else f"{m.group(1)}={MASK}", url)


def mask(value: Any) -> Any:
    """A secret's shape without its secrets: names (dict keys) stay, strings go, and the
    hosts a secret may be sent to stay."""
    if isinstance(value, dict):
        return {k: (v if k in _CLEAR_KEYS else mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return MASK


def shown(name: str, field: FieldInfo, value: Any) -> Any:
    """A value as it may be shown: secrets masked, passwords out of URLs."""
    if is_secret(field):
        if name == "api_keys" and isinstance(value, dict):  # {secret: name}: names only
            return {tenant: MASK for tenant in value.values()}
        return mask(value)
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def effective(settings: Settings, environ: Mapping[str, str]) -> list[Entry]:
    """Every variable, area by area, as ``settings`` holds it; ``environ`` is where it was
    read from (to tell a set value from a default)."""
    entries = []
    for area, model in Settings.areas().items():
        values = getattr(settings, area).model_dump(mode="json")
        for name, field in model.model_fields.items():
            var = env_name(name)
            source, file = origin(var, environ)
            entries.append(Entry(area=area, field=name, env=var, source=source, file=file,
                                 value=shown(name, field, values[name]),
                                 secret=is_secret(field)))
    return entries


def as_text(value: Any) -> str:
    """A value as a line shows it: lists comma-separated, dicts as JSON."""
    if value is None:
        return "(unset)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return json.dumps(value) if value else "(none)"
    return str(value)
