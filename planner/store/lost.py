"""Telling a run that expired from one the run store lost.

A run's record lasts its retention (``CHORDAL_RETENTION_S``, 7 days). A Redis restarted
without persistence, flushed, or evicting keys loses runs long before that, and a client
waiting for one must not be told it "may have expired". Two signals tell them apart:

- A run id starts with its creation time (8 hex digits of epoch seconds, then 12 random
  ones): a run younger than the retention cannot have expired.
- The store's marker (``chordal:store``), written with no expiry when the first run is
  recorded: gone, the store lost everything (or this is another Redis or database);
  newer than the run, the store was started afresh after the run was made.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid

import redis

from planner.errors import RunNotFound
from planner.store.keys import STORE_MARKER

#: Earliest creation time a run id may claim (2024-01-01): older ids are not time-stamped.
_EPOCH = 1_704_067_200
ADVICE = ("Check that Redis keeps its data (appendonly yes, or save snapshots), that its "
          "maxmemory-policy is noeviction, and that CHORDAL_REDIS_URL names the server and "
          "database the run was created in.")


def new_run_id() -> str:
    """20 hex digits: the creation second, then 48 random bits (unique within a second)."""
    return f"{int(time.time()):08x}{uuid.uuid4().hex[:12]}"


def created_at(run_id: str) -> float | None:
    """When a run id says its run was created (epoch seconds); None for an id that is not
    time-stamped (made before they were, or chosen by its creator) or claims the future."""
    stamped = run_id.split("-", 1)[0]  # a run that joined a caller's trace: id-traceid
    if len(stamped) != 20 or stamped.strip("0123456789abcdef"):
        return None
    at = int(stamped[:8], 16)
    return float(at) if _EPOCH <= at <= time.time() + 86_400 else None


def mark(r: redis.Redis, now: float) -> None:
    """Note when this store was first used (once: later calls change nothing)."""
    r.set(STORE_MARKER, json.dumps({"since": now}), nx=True)


def _since(r: redis.Redis) -> float | None:
    raw = r.get(STORE_MARKER)
    if raw is None:
        return None
    try:
        return float(json.loads(raw)["since"])
    except (ValueError, TypeError, KeyError):
        return 0.0  # a marker there, whatever it says: the store was not lost


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def not_found(r: redis.Redis, run_id: str, retention_s: int, scoped: bool = False
              ) -> RunNotFound:
    """The error for a run the store has no record of, saying why as well as it can.
    ``scoped``: asked through the HTTP API, which answers another key's run exactly as a
    missing one (so ids cannot be probed), so that may be why too."""
    created = created_at(run_id)
    since = _since(r)
    days = f"{retention_s / 86_400:g}-day" if retention_s >= 86_400 else f"{retention_s}-s"
    if created is not None and time.time() - created < retention_s:
        if since is None:
            why = ("the store holds no runs at all and its marker key chordal:store is gone: "
                   "Redis restarted without persistence or was flushed, or this is another "
                   "Redis or database")
        elif since > created:
            why = (f"the store was started afresh at {_when(since)}, after the run was made: "
                   "Redis lost its data (restarted without persistence, or flushed)")
        else:
            why = "its keys were deleted or evicted"
            if scoped:
                why += ", or another API key made it"
        return RunNotFound(
            f"no run {run_id!r}: it was made at {_when(created)}, within the {days} "
            f"retention, so it did not expire: the run store lost it ({why}). {ADVICE}")
    if since is None:
        return RunNotFound(
            f"no run {run_id!r}, and the run store holds no runs at all (its marker key "
            "chordal:store is gone): if runs were made here, Redis lost its data. " + ADVICE)
    return RunNotFound(f"no run {run_id!r} (it may have expired after "
                       f"{retention_s // 86_400} days)")
