"""What a run costs Redis, per step: commands sent over the network (from MONITOR; a
pipeline's commands count one by one, so an upper bound of round trips), commands executed
(INFO's ``total_commands_processed``, which counts every ``redis.call`` inside a script
too) and bytes in + out (``total_net_*_bytes``).

Each is measured over one run, less the rate an idle worker and client make (broker polls,
heartbeats, the reconciler) measured just before. Round trips are counted over a second run
of their own: MONITOR's stream would add its bytes to the first's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from bench.measure import Tally, per_step_tally, tally_of

IDLE_S = 2.0
STOP = "bench-monitor-stop"


def tally(r: Any) -> Tally:
    return tally_of(r.info("stats"))


def over(r: Any, action: Callable[[], object]) -> tuple[Tally, float]:
    """Counters' delta and the seconds ``action`` took."""
    t0, before = time.perf_counter(), tally(r)
    action()
    return tally(r) - before, time.perf_counter() - t0


def sent(r: Any, action: Callable[[], object]) -> tuple[float, float]:
    """Commands that arrived over the network while ``action`` ran (scripts' inner calls
    left out), and the seconds it took."""
    counted = {"network": 0}
    ready = threading.Event()

    def listen() -> None:
        with r.monitor() as m:
            ready.set()
            for cmd in m.listen():
                if STOP in str(cmd.get("command", "")):
                    return
                if cmd.get("client_type") != "lua":
                    counted["network"] += 1

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.1)  # MONITOR is subscribed once its reply has come back
    t0 = time.perf_counter()
    action()
    elapsed = time.perf_counter() - t0
    r.echo(STOP)
    thread.join(30)
    return float(counted["network"]), elapsed


def per_step(r: Any, run: Callable[[], object], steps: int) -> tuple[float, Tally]:
    """(commands sent, Tally(commands executed, bytes)) per step of ``run``."""
    idle, idle_s = over(r, lambda: time.sleep(IDLE_S))
    delta, elapsed = over(r, run)
    cost = per_step_tally(delta, idle.scaled(1 / idle_s), elapsed, steps)
    idle_trips, idle_trips_s = sent(r, lambda: time.sleep(IDLE_S))
    trips, trips_s = sent(r, run)
    net = trips - idle_trips / idle_trips_s * trips_s
    return max(0.0, net) / steps, cost

