"""A real Redis Cluster for the tests: three masters, no replicas, on free loopback ports.

Each node is a ``redis-server --cluster-enabled yes`` keeping nothing on disk (its
``nodes.conf`` lives in a temporary directory); ``redis-cli --cluster create`` joins them and
spreads the 16,384 slots. The nodes die with the process that started them (as
tests/redis_server.py's), and :meth:`Cluster.stop` removes them and their directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import redis
from redis.cluster import RedisCluster

from planner.cli.embedded import port_is_free
from tests.redis_server import die_with_parent, free_port

#: Masters in the test cluster (the fewest ``redis-cli --cluster create`` accepts).
MASTERS = 3


def binaries() -> tuple[str, str] | None:
    """``redis-server`` and ``redis-cli`` from the PATH, or None if either is missing."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    return (server, cli) if server and cli else None


@dataclass
class Cluster:
    ports: list[int]
    workdir: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The run store's URL for this cluster (every node a startup node)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def client(self) -> RedisCluster:
        return RedisCluster(host="127.0.0.1", port=self.ports[0], decode_responses=True)

    def flush(self) -> None:
        """Empty every master (FLUSHALL goes to each of them)."""
        c = self.client()
        try:
            c.flushall(target_nodes=RedisCluster.PRIMARIES)
        finally:
            c.close()

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.terminate()
        for p in self.processes:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.processes = []
        shutil.rmtree(self.workdir, ignore_errors=True)


def _node_port() -> int:
    """A free port for a node whose cluster bus port (10,000 higher) is free too."""
    while True:
        port = free_port()
        if port <= 55_535 and port_is_free("127.0.0.1", port + 10_000):
            return port


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.2,
                                socket_connect_timeout=0.2).ping())
    except (redis.RedisError, OSError):
        return False


def start(masters: int = MASTERS, timeout: float = 30) -> Cluster:
    """Start ``masters`` cluster nodes, join them, and wait until the cluster says ok."""
    found = binaries()
    if found is None:
        raise RuntimeError("redis-server and redis-cli are needed to start a Redis Cluster")
    server, cli = found
    cluster = Cluster([_node_port() for _ in range(masters)],
                      tempfile.mkdtemp(prefix="chordal-test-cluster-"))
    try:
        for port in cluster.ports:
            cluster.processes.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                 "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
                 "--dir", cluster.workdir, "--maxmemory-policy", "noeviction",
                 "--loglevel", "warning", "--logfile", f"node-{port}.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent if sys.platform == "linux" else None))
        deadline = time.monotonic() + timeout
        while not all(_answers(p) for p in cluster.ports):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster nodes did not start on ports {cluster.ports}: "
                                   + _logs(cluster))
            time.sleep(0.05)
        subprocess.run([cli, "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in cluster.ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=timeout)
        # Every node must agree before a client maps the slots (the gossip takes a beat).
        while not all(_ok(p, masters) for p in cluster.ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not reach cluster_state:ok")
            time.sleep(0.05)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _ok(port: int, masters: int) -> bool:
    # redis-py parses CLUSTER INFO into a dict of strings.
    info = redis.Redis(port=port, decode_responses=True).execute_command("CLUSTER INFO")
    return bool(info.get("cluster_state") == "ok"
                and info.get("cluster_known_nodes") == str(masters))


def _logs(cluster: Cluster) -> str:
    """The nodes' logs, for an error that says why."""
    texts = []
    for port in cluster.ports:
        try:
            with open(f"{cluster.workdir}/node-{port}.log", encoding="utf-8") as f:
                texts.append(f"{port}: {f.read()[-500:]}")
        except OSError:
            texts.append(f"{port}: no log")
    return "; ".join(texts)
