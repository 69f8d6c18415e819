"""The run store's Redis clients, from its URL: one Redis, or a Redis Cluster.

A cluster URL (``redis+cluster://host:port,...``, planner/settings/redis_url.py) gets
redis-py's :class:`~redis.cluster.RedisCluster` (and its asyncio twin for the service's
event streams), which routes each command to the node of its key's slot. The store's code
is the same either way: every script and every MULTI touches one run's keys, which share a
hash tag (planner/store/keys.py), and the global keys are read and written one command at a
time (a pipeline without MULTI is split by node). So the cluster client is handed out typed
as the single-node one it stands in for.
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from planner.settings.redis_url import is_cluster, parse_cluster


def _cluster_options(url: str) -> dict[str, Any]:
    parsed = parse_cluster(url)
    return {"username": parsed.username, "password": parsed.password, "ssl": parsed.tls}


def connect(url: str, **options: Any) -> redis.Redis:
    """A client of the run store at ``url``; ``options`` go to every connection."""
    if not is_cluster(url):
        return redis.Redis.from_url(url, **options)
    nodes = [ClusterNode(host, port)  # type: ignore[no-untyped-call]  # (redis-py)
             for host, port in parse_cluster(url).nodes]
    try:
        client = RedisCluster(startup_nodes=nodes, **_cluster_options(url), **options)
    except RedisClusterException as exc:
        # Unlike one Redis's client, a cluster's connects here (to learn the slot map); its
        # error is no RedisError, which every caller already turns into one clear line.
        raise redis.ConnectionError(f"no startup node of the Redis Cluster answered with "
                                    f"its slot map ({exc})") from None
    # Same commands, routed by slot: the store uses it as it would one Redis.
    return cast(redis.Redis, client)


def connect_async(url: str, pool_size: int, **options: Any) -> redis.asyncio.Redis:
    """An asyncio client of a cluster run store, up to ``pool_size`` connections per node
    (the service's event streams: each blocking read holds one)."""
    nodes = [redis.asyncio.cluster.ClusterNode(host, port)
             for host, port in parse_cluster(url).nodes]
    return cast(redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster(
        startup_nodes=nodes, max_connections=pool_size, **_cluster_options(url), **options))


def is_cluster_client(client: object) -> bool:
    """Whether ``client`` speaks to a Redis Cluster (some commands differ: no TIME in a
    MULTI, a lock's and a scan's keys routed by the cluster client)."""
    return isinstance(client, RedisCluster | redis.asyncio.cluster.RedisCluster)
