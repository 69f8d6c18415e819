"""``http_request``: an HTTP call from a plan, off for every host until allowed.

What a request may reach is the workers' decision, never the plan's (a plan is written by
a model, which may have read something hostile):

- ``CHORDAL_HTTP_ALLOW`` lists the hosts (``api.example.com``, ``*.example.com``, or ``*``
  for any public host), each on any port or only on the one it names
  (``127.0.0.1:8080``, ``[::1]:8080``). None by default: every call is refused.
- A host is resolved once; every address it resolves to must be public (not private,
  loopback, link-local such as cloud metadata, or reserved) unless the allow-list names
  the host exactly. The request goes to the checked address (the URL's host is sent as
  ``Host`` and as TLS SNI, and the certificate is checked against it), so a second lookup
  cannot rebind the name to another address. Proxy variables are ignored.
- Redirects are followed here, at most :data:`MAX_REDIRECTS`, each hop checked as above.
- The whole call (redirects included) has ``CHORDAL_HTTP_TIMEOUT_S``; a body over
  ``CHORDAL_HTTP_MAX_BYTES`` is not read further.
- Secrets: ``secret_headers`` values name secrets of ``CHORDAL_HTTP_SECRETS`` as
  ``${name}`` (``{"Authorization": "Bearer ${github_token}"}``); the worker fills them in,
  only for the hosts each secret is scoped to, and drops them on a redirect elsewhere. A
  plan, its report and the logs never hold a secret's value.

Outcomes: 2xx (and other non-error answers) are ``{status, headers, json}`` for a JSON
body, else ``{status, headers, text}``; 408, 425, 429 and 5xx, timeouts and dropped
connections are transient (``Retry-After`` is honoured); other 4xx and every refusal are
permanent.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, NotRequired
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from pydantic import Field

# pydantic reads a TypedDict from typing_extensions only, on Python 3.11
from typing_extensions import TypedDict

from planner.errors import PermanentError, TransientError
from planner.net import (
    first_private,
    host_allowed,
    public,
    refused,
    resolve,
    shown,
)
from planner.settings import HttpSecret, Settings
from planner.tools import tool

if TYPE_CHECKING:  # loaded by the first call: a registry that lists the tool (a client
    # validating plans, `chordal validate`) does not pay for the HTTP client
    import httpx

log = logging.getLogger("chordal.http")

MAX_REDIRECTS = 5
#: Longest a ``Retry-After`` may make a retry wait (a server may ask for days).
MAX_RETRY_AFTER_S = 3_600.0
USER_AGENT = "chordal-http-request/1"
TRANSIENT_STATUSES = frozenset({408, 425, 429})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Headers a plan may not set: Host would undo the pinning to the checked address, and the
# framing ones belong to the client.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Credentials a plan put in plain headers go no further than the origin it named.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
SECRET_REF = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
Resolver = Callable[[str, int], list[str]]


class HttpResponse(TypedDict):
    status: int
    headers: dict[str, str]
    json: NotRequired[Any]
    text: NotRequired[str]


@tool(max_retries=3, timeout_s=120)
def http_request(url: str, method: Method = "GET", headers: dict[str, str] | None = None,
                 params: dict[str, str | int | float | bool] | None = None,
                 # "json" in the schema; a field may not be named so (BaseModel.json)
                 json_body: Annotated[Any, Field(alias="json")] = None,
                 secret_headers: dict[str, str] | None = None) -> HttpResponse:
    """Call an HTTP(S) URL and return {status, headers, json} (a JSON body) or {status,
    headers, text}. Only hosts the workers allow (CHORDAL_HTTP_ALLOW); ``json`` is the
    request body; ``secret_headers`` values name the workers' secrets as ${name}, e.g.
    {"Authorization": "Bearer ${github_token}"}. 429/5xx are retried; other 4xx fail."""
    return fetch(Settings.from_env(), url, method, headers or {}, params or {}, json_body,
                 secret_headers or {})


def fetch(settings: Settings, url: str, method: str, headers: Mapping[str, str],
          params: Mapping[str, Any], body: Any, secret_headers: Mapping[str, str],
          resolver: Resolver | None = None) -> HttpResponse:
    """One call, as :func:`http_request` documents it (``resolver``: for tests)."""
    import httpx

    allow = settings.http.http_allow
    if not allow:
        raise PermanentError("http_request: no host is allowed; the workers' "
                             "CHORDAL_HTTP_ALLOW lists the hosts it may call")
    for name in headers:
        if name.lower() in RESERVED_HEADERS:
            raise PermanentError(f"http_request: headers: {name!r} is set by the tool")
    secrets = _secrets(secret_headers, settings.http.http_secrets)
    deadline = time.monotonic() + settings.http.http_timeout_s
    plain = dict(headers)
    query = {k: _param(v) for k, v in params.items()}
    origin = None
    with httpx.Client(trust_env=False, follow_redirects=False) as client:
        for hop in range(MAX_REDIRECTS + 1):
            parts = _checked_url(url, allow)
            host = parts.hostname or ""
            here = (parts.scheme, host, _port(parts))
            if origin is not None and here != origin:
                plain = {k: v for k, v in plain.items()
                         if k.lower() not in CREDENTIAL_HEADERS}
            origin = here
            sent = {**plain, **_fill(secret_headers, secrets, host, _port(parts),
                                     first=hop == 0)}
            response = _send(client, parts, method, sent, query if hop == 0 else None,
                             body, allow, deadline, resolver or resolve)
            location = response.headers.get("location")
            if response.status_code in REDIRECTS and location:
                response.close()
                url = urljoin(url, location)
                if response.status_code == 303 or (response.status_code in (301, 302)
                                                    and method == "POST"):
                    method, body = "GET", None  # as browsers do
                continue
            try:
                return _outcome(response, method, shown(url), settings.http.http_max_bytes,
                                deadline)
            finally:
                response.close()
    raise PermanentError(f"http_request: more than {MAX_REDIRECTS} redirects from "
                         f"{shown(url)}")


def _param(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _secrets(secret_headers: Mapping[str, str], known: Mapping[str, HttpSecret]
             ) -> dict[str, HttpSecret]:
    """The secrets ``secret_headers`` names; each must exist."""
    used: dict[str, HttpSecret] = {}
    for header, template in secret_headers.items():
        if header.lower() in RESERVED_HEADERS:
            raise PermanentError(f"http_request: secret_headers: {header!r} is set by the "
                                 "tool")
        names = SECRET_REF.findall(template)
        if not names:
            raise PermanentError(f"http_request: secret_headers.{header}: names no secret; "
                                 "write ${name} for a secret of CHORDAL_HTTP_SECRETS (plain "
                                 "values go in headers)")
        for name in names:
            if name not in known:
                have = ", ".join(sorted(known)) or "none"
                raise PermanentError(f"http_request: secret_headers.{header}: no secret "
                                     f"{name!r} in the workers' CHORDAL_HTTP_SECRETS (it "
                                     f"has: {have})")
            used[name] = known[name]
    return used


def _fill(secret_headers: Mapping[str, str], secrets: Mapping[str, HttpSecret], host: str,
          port: int, first: bool) -> dict[str, str]:
    """The secret headers for a request to ``host``: each whose secrets may go there.
    The first hop must be allowed for every secret; a redirect elsewhere drops them."""
    out: dict[str, str] = {}
    for header, template in secret_headers.items():
        names = SECRET_REF.findall(template)
        outside = [n for n in names if not host_allowed(host, port, secrets[n].hosts)]
        if outside and first:
            raise PermanentError(f"http_request: secret {outside[0]!r} may not be sent to "
                                 f"{host!r} (its hosts in CHORDAL_HTTP_SECRETS: "
                                 f"{', '.join(secrets[outside[0]].hosts)})")
        if not outside:
            out[header] = SECRET_REF.sub(lambda m: secrets[m.group(1)].value, template)
    return out


def _checked_url(url: str, allow: Sequence[str]) -> SplitResult:
    try:
        parts = urlsplit(url)
        _port(parts)
    except ValueError:
        raise PermanentError(f"http_request: url: not a URL: {url[:200]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError("http_request: url: must be an http:// or https:// URL with a "
                             f"host, not {shown(url)!r}")
    if parts.username is not None or parts.password is not None:
        raise PermanentError("http_request: url: must not carry credentials (user:pass@); "
                             "use secret_headers")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise PermanentError("http_request: url: must not contain spaces or control "
                             "characters")
    if not host_allowed(parts.hostname, _port(parts), allow, star=True):
        raise PermanentError("http_request: " + refused(
            parts.hostname, _port(parts), allow, "the workers' CHORDAL_HTTP_ALLOW", star=True))
    return parts


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)




def _send(client: httpx.Client, parts: SplitResult, method: str, headers: dict[str, str],
          params: Mapping[str, str] | None, body: Any, allow: Sequence[str],
          deadline: float, resolver: Resolver) -> httpx.Response:
    import httpx

    host, port = parts.hostname or "", _port(parts)
    try:
        addresses = resolver(host, port)
    except OSError as exc:
        raise TransientError(f"http_request: cannot resolve {host!r}: {exc}") from None
    if not addresses:
        raise TransientError(f"http_request: host {host!r} has no address")
    private = first_private(host, port, addresses, allow)
    if private is not None:
        log.warning("http_request: host %r resolves to non-public %s; refused", host,
                    private)
        raise PermanentError(
            f"http_request: host {host!r} resolves to a non-public address; only a host "
            "named exactly in CHORDAL_HTTP_ALLOW may be reached on a private, loopback or "
            "link-local network")
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    sent = {"User-Agent": USER_AGENT, **headers, "Host": netloc}
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    last: Exception | None = None
    for address in addresses:  # every one was checked; the first that answers
        pinned = f"[{address}]" if ":" in address else address
        target = urlunsplit((parts.scheme, f"{pinned}:{port}", parts.path or "/",
                             parts.query, ""))
        timeout = _remaining(deadline)
        try:
            request = client.build_request(
                method, target, headers=sent, params=params,
                json=body if body is not None and method not in ("GET", "HEAD") else None,
                timeout=httpx.Timeout(timeout), extensions=extensions)
            return client.send(request, stream=True)
        except httpx.ConnectError as exc:
            last = exc
            continue
        except httpx.TimeoutException:
            raise TransientError(f"http_request: {method} {shown(urlunsplit(parts))}: no "
                                 f"answer in time (CHORDAL_HTTP_TIMEOUT_S)") from None
        except httpx.TransportError as exc:
            raise TransientError(f"http_request: {method} {shown(urlunsplit(parts))}: "
                                 f"{type(exc).__name__}: {exc}") from None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, TypeError) as exc:
            raise PermanentError(f"http_request: cannot send the request: "
                                 f"{type(exc).__name__}: {exc}") from None
    raise TransientError(f"http_request: cannot connect to {host!r}: {last}")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransientError("http_request: out of time (CHORDAL_HTTP_TIMEOUT_S)")
    return left


def _outcome(response: httpx.Response, method: str, where: str, max_bytes: int,
             deadline: float) -> HttpResponse:
    import httpx

    status = response.status_code
    try:
        data = _read(response, max_bytes, deadline) if method != "HEAD" else b""
    except httpx.TimeoutException:
        raise TransientError(f"http_request: {method} {where}: the body did not arrive in "
                             "time (CHORDAL_HTTP_TIMEOUT_S)") from None
    except httpx.TransportError as exc:
        raise TransientError(f"http_request: {method} {where}: {type(exc).__name__}: "
                             f"{exc}") from None
    text = data.decode(response.encoding or "utf-8", errors="replace")
    if status >= 500 or status in TRANSIENT_STATUSES:
        raise TransientError(f"http_request: {method} {where} answered {status}: "
                             f"{text[:300]}", retry_after_s=retry_after(response))
    if status >= 400:
        raise PermanentError(f"http_request: {method} {where} answered {status}: "
                             f"{text[:300]}")
    headers: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if data and (kind == "application/json" or kind.endswith("+json")):
        try:
            return {"status": status, "headers": headers, "json": jsonlib.loads(text)}
        except ValueError:
            pass  # a server that says JSON and sends something else: give the text
    return {"status": status, "headers": headers, "text": text}


def _read(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise PermanentError(f"http_request: the response body is over {max_bytes} "
                                 "bytes (CHORDAL_HTTP_MAX_BYTES)")
        chunks.append(chunk)
        _remaining(deadline)
    return b"".join(chunks)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a ``Retry-After`` header asks for (seconds or an HTTP date), capped."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)



__all__ = ["HttpResponse", "fetch", "http_request", "public", "resolve", "retry_after",
           "shown"]
