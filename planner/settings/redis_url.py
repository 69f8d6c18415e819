"""The run store's URL: one Redis (``redis://``, ``rediss://``, ``unix://``) or a Redis
Cluster (``redis+cluster://host:port[,host:port...]``, ``rediss+cluster://`` over TLS).

A cluster URL names its startup nodes (any of the cluster's nodes: the client learns the
rest from ``CLUSTER SLOTS``), with credentials as in a ``redis://`` URL. A cluster has only
database 0, so a URL naming another database is refused rather than ignored. Parsed here,
with no Redis client, so the settings can check it when they are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
SINGLE_SCHEMES = ("redis://", "rediss://", "unix://")
EXAMPLE = "redis+cluster://10.0.0.1:6379,10.0.0.2:6379"


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


@dataclass(frozen=True)
class ClusterURL:
    """A parsed cluster URL: its startup nodes and what every connection needs."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_cluster(url: str) -> ClusterURL:
    """The startup nodes and credentials of a ``redis+cluster://`` URL; ValueError saying
    what is wrong with one that is not."""
    scheme, _, rest = url.partition("://")
    if f"{scheme}://" not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL (redis+cluster://...), e.g. {EXAMPLE}")
    if "?" in rest or "#" in rest:
        raise ValueError("a Redis Cluster URL takes no ?options or #fragment; e.g. "
                         + EXAMPLE)
    netloc, _, path = rest.partition("/")
    if path not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0, not /{path}; e.g. {EXAMPLE}")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_node(part) for part in hosts.split(","))
    return ClusterURL(nodes, username, password, tls=scheme == "rediss+cluster")


def _node(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) of one startup node."""
    host, colon, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ValueError(f"{text.strip() or '(empty)'!r} is not a host:port of a cluster "
                         f"node; list the nodes comma-separated, e.g. {EXAMPLE}")
    return host, int(port)


def check(url: str) -> str:
    """``url`` if it is a run-store URL this version can use; ValueError otherwise."""
    if is_cluster(url):
        parse_cluster(url)
    elif not url.startswith(SINGLE_SCHEMES):
        raise ValueError("must be a redis://, rediss:// or unix:// URL, e.g. "
                         f"redis://127.0.0.1:6379/0, or a Redis Cluster's, e.g. {EXAMPLE}")
    return url
