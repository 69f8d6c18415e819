"""Which ``callback_url`` a run may have: ``CHORDAL_CALLBACK_ALLOW`` names the hosts
(``hooks.example.com``, or ``*.example.com`` for any host under it), each on any port or
on the one it names (``hooks.example.com:8443``, ``[::1]:9000``). With none allowed,
no run may have a callback: a server must not be turned into a client of any URL a caller
names (requests into a private network, SSRF).

Also the checks every outbound request shares (a run's callback, the ``http_request``
tool): host patterns, which addresses are public, resolution, and how a URL is shown in
messages (never its query or credentials).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from planner.errors import InvalidInput
from planner.settings import allow_entry


def _matches(host: str, pattern: str, star: bool) -> bool:
    pattern = pattern.rstrip(".")
    if pattern == "*":
        return star
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def host_allowed(host: str, port: int, allow: Sequence[str], *, star: bool = False) -> bool:
    """An entry of ``allow`` matches ``host`` on ``port`` (the URL's, or its scheme's
    default): ``host``, ``*.domain`` (any host under it) and, with ``star``, ``*`` (any
    host), each on any port, or only on the one it names (``host:8080``)."""
    host = host.lower().rstrip(".")
    return any(_matches(host, h, star) and p in (None, port) for h, p in map(allow_entry,
                                                                                allow))


def named_exactly(host: str, port: int, allow: Sequence[str]) -> bool:
    """The allow-list names ``host`` itself (not through ``*`` or ``*.`` patterns), on any
    port or on ``port``: only then may it be reached on a private address."""
    host = host.lower().rstrip(".")
    return any(h.rstrip(".") == host and p in (None, port)
               for h, p in map(allow_entry, allow) if not h.startswith("*"))


def refused(host: str, port: int, allow: Sequence[str], setting: str, *,
            star: bool = False) -> str:
    """Why ``host`` on ``port`` is not allowed: the allow-list names the host on other
    ports only, or not at all."""
    host = host.lower().rstrip(".")
    ports = sorted({p for h, p in map(allow_entry, allow)
                    if p is not None and _matches(host, h, star)})
    if ports:
        return (f"port {port} of host {host!r} is not allowed ({setting} allows it on "
                f"port {', '.join(map(str, ports))} only)")
    return f"host {host!r} is not allowed ({setting})"


def first_private(host: str, port: int, addresses: Sequence[str], allow: Sequence[str]
                  ) -> str | None:
    """The first of ``addresses`` (those ``host`` resolved to) that is not public, unless
    the allow-list names ``host`` exactly (on ``port``); None: every address may be
    reached. The caller logs the address and tells its user only that one was refused (a
    tenant must not learn what the internal network's names resolve to)."""
    if named_exactly(host, port, allow):
        return None
    return next((a for a in addresses if not public(a)), None)


def check_callback_url(url: str, allow: Sequence[str]) -> str:
    """``url`` if a run may POST its report there; else :class:`InvalidInput` naming the
    field and saying why."""
    try:
        parts = urlsplit(url)
        given = parts.port  # a bad port raises ValueError
    except ValueError:
        raise InvalidInput("callback_url: not a URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("callback_url: must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("callback_url: must not carry credentials (user:password@); the "
                           "callback is signed instead (CHORDAL_CALLBACK_SECRET)")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise InvalidInput("callback_url: must not contain spaces or control characters")
    if not allow:
        raise InvalidInput("callback_url: this server allows no callbacks (set "
                           "CHORDAL_CALLBACK_ALLOW to the hosts it may call)")
    port = given or (443 if parts.scheme == "https" else 80)
    if not host_allowed(parts.hostname, port, allow):
        raise InvalidInput("callback_url: " + refused(parts.hostname, port, allow,
                                                      "CHORDAL_CALLBACK_ALLOW"))
    return url


def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (an IP literal: itself), in the resolver's order."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


#: IPv6 prefixes whose last 32 bits are an IPv4 address that a gateway (NAT64's well-known
#: prefix) or the host itself (IPv4-compatible, deprecated) may reach on a caller's behalf.
_LAST_32_IS_IPV4 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))
#: Never public here: local-use NAT64 (the IPv4 address sits elsewhere in it, by prefix
#: length), IPv4-translated addresses, site-local (deprecated, still routed by some).
_NEVER_PUBLIC = (ipaddress.ip_network("64:ff9b:1::/48"), ipaddress.ip_network("::ffff:0:0:0/96"),
                 ipaddress.ip_network("fec0::/10"))


def public(address: str) -> bool:
    """Whether an address is on the public internet (not private, loopback, link-local,
    reserved or multicast). An IPv6 address that carries an IPv4 one (mapped, 6to4, NAT64,
    IPv4-compatible) is judged as that IPv4 address: through a translating network those
    forms reach 127.0.0.1 or 10.0.0.0/8 too. Teredo, local-use NAT64, IPv4-translated and
    site-local addresses are never public here."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or any(ip in net for net in _NEVER_PUBLIC):
            return False
        if any(ip in net for net in _LAST_32_IS_IPV4):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        else:
            ip = ip.ipv4_mapped or ip.sixtofour or ip
    return ip.is_global and not ip.is_multicast


def shown(url: str) -> str:
    """A URL for events, logs and messages: scheme, host, port and path; never the query
    or credentials (either may hold a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "<not a URL>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
