"""How the text of a ``CHORDAL_*`` variable becomes a value: API keys, allow-list entries,
http_request's secrets, comma lists and JSON. Shared by the areas' validators."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator


def parse_api_keys(text: str, source: str = "") -> dict[str, str]:
    """``name=secret`` pairs (comma- or newline-separated; ``#`` comments) -> {secret:
    name}. Names are the tenants; a secret must be unique and at least 16 characters."""
    where = f"{source}: " if source else ""
    keys: dict[str, str] = {}
    for raw in text.replace("\n", ",").split(","):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        name, sep, secret = item.partition("=")
        name, secret = name.strip(), secret.strip()
        if not sep or not name or not secret:
            raise ValueError(f"{where}each key is name=secret (an item has no name or no "
                             "secret; its text is not shown: it may be a secret)")
        if len(secret) < 16:
            raise ValueError(f"{where}the secret of {name!r} is shorter than 16 characters")
        if secret in keys:
            raise ValueError(f"{where}{name!r} and {keys[secret]!r} share a secret")
        keys[secret] = name
    return keys


def allow_entry(entry: str) -> tuple[str, int | None]:
    """One allow-list entry as (host pattern, port); port None: any port. ``host``,
    ``*.example.com``, ``*``, ``host:port``, ``[v6]`` and ``[v6]:port`` (a bare IPv6
    address, ``::1``, is a host with no port). ValueError says what is wrong."""
    text = entry.strip().lower()
    host, port = text, None
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or ":" not in inside:
            raise ValueError(f"{entry!r}: write an IPv6 address as [address] or "
                             "[address]:port")
        host, port = inside, (rest[1:] if rest else None)
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"{entry!r}: names no host")
    if port is None:
        return host, None
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65_535:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return host, int(port)


class HttpSecret(BaseModel):
    """A secret http_request may send in a header, and the hosts it may go to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str = Field(min_length=1, repr=False)
    # Scoped to hosts: a plan (written by a model, perhaps steered by what it read) must
    # not be able to send the secret anywhere else.
    hosts: list[str] = Field(min_length=1)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            allow_entry(entry)
        return value


def json_text(value: Any) -> Any:
    """A JSON variable's text parsed (a value given in code passes as it is)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc.msg}") from None
    return value


def comma_list(value: Any) -> Any:
    """``a, b,`` -> ["a", "b"]."""
    if isinstance(value, str):
        return [m.strip() for m in value.split(",") if m.strip()]
    return value


def host_list(value: Any) -> Any:
    """A comma list of allow-list entries, lower-cased; a bad entry stops the process at
    start, named."""
    if isinstance(value, str):
        value = [h.strip().lower() for h in value.split(",") if h.strip()]
    for entry in value if isinstance(value, list) else []:
        allow_entry(str(entry))
    return value


def _api_keys(value: Any) -> Any:
    if isinstance(value, str):
        return parse_api_keys(value)
    return value


#: The shapes of variables whose text is not the value's own (pydantic would read a list
#: or a dict only from JSON).
JsonText = BeforeValidator(json_text)
CommaList = Annotated[list[str], BeforeValidator(comma_list)]
HostList = Annotated[list[str], BeforeValidator(host_list)]
ApiKeys = Annotated[dict[str, str], BeforeValidator(_api_keys)]
