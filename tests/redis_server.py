"""The Redis the tests use: one redis-server per test process, started on first use.

Under pytest-xdist every worker is a process of its own, so every worker has a Redis of its
own and two workers never flush each other's data. Suites keep their own database numbers
(``url(db)``): a worker runs many suites one after another, and the session-scoped workers
and services of one suite must not see another suite's flushes. The server listens on a free
loopback port, keeps nothing on disk and never evicts keys (as `chordal dev`'s embedded
Redis). It stops when the process exits, and dies with it if the process is killed.

127.0.0.1:6379 is never used by the suites: a test that is about a local Redis there
(detecting it) only reads.
"""

from __future__ import annotations

import atexit
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from planner.cli.embedded import redis_answers, redis_server_binary

#: More databases than Redis's default 16, so that every suite's number is its own.
DATABASES = 32

_server: subprocess.Popen[bytes] | None = None
_base = ""
_workdir = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    # PR_SET_PDEATHSIG (1): a worker killed by SIGKILL leaves no redis-server behind. (It
    # fires when the starting thread ends: fixtures and collection run on the main one.)
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def base() -> str:
    """``redis://127.0.0.1:<port>`` of this process's Redis (no database number)."""
    global _server, _base, _workdir
    if _server is not None and _server.poll() is None:
        return _base
    port = free_port()
    _workdir = workdir = tempfile.mkdtemp(prefix="chordal-test-redis-")
    _server = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", workdir,
         "--databases", str(DATABASES), "--maxmemory-policy", "noeviction",
         "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent if sys.platform == "linux" else None)
    _base = f"redis://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while not redis_answers(f"{_base}/0", timeout=0.2):
        if _server.poll() is not None or time.monotonic() > deadline:
            stop()
            raise RuntimeError(f"the tests' redis-server did not start on port {port}")
        time.sleep(0.02)
    atexit.register(stop)
    return _base


def url(db: int) -> str:
    """``redis://127.0.0.1:<port>/<db>`` of this process's Redis."""
    assert 0 <= db < DATABASES, db
    return f"{base()}/{db}"


def stop() -> None:
    global _server
    if _server is not None and _server.poll() is None:
        _server.terminate()
        try:
            _server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _server.kill()
    _server = None
    shutil.rmtree(_workdir, ignore_errors=True)
