"""``Idempotency-Key``: a client that retries a create (a timeout, a dropped connection)
gets the run it already made instead of a second one.

The key is scoped per API key and kept in Redis for a day (shared by every API replica).
The first request reserves it with the run id it is about to create (``SET NX``), so two
concurrent requests with one key make one run. The same key with the same body (compared
as canonical JSON, so spacing and key order do not matter) answers with that run; with
another body it is a 409: the client reused a key by mistake.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis

from planner.errors import Conflict, InFlight
from planner.store.keys import idempotency_key

#: How long a key is remembered: past it, the same key makes a new run.
TTL_S = 86_400
#: How long a reservation whose request is still being handled holds the key: a server that
#: died mid-create must not block its key for a day.
IN_FLIGHT_S = 60
MAX_KEY_CHARS = 255


def body_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Reservation:
    """``run_id`` is new (``replay`` False: create it) or the one the key made before."""

    key: str
    run_id: str
    replay: bool


class Idempotency:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def reserve(self, scope: str, key: str, body: str, run_id: str,
                exists: Callable[[str], bool] = lambda _run_id: False) -> Reservation:
        """``exists``: whether a run was made (a reservation whose request died after
        making its run answers with that run)."""
        # Hashed: the client's key may be long or odd, and is not ours to store verbatim.
        name = idempotency_key(scope, hashlib.sha256(key.encode("utf-8",
                                                                 "surrogateescape")).hexdigest())
        record = json.dumps({"body": body, "run_id": run_id, "done": False})
        for _ in range(3):  # the record may expire between SET NX and GET
            if self.r.set(name, record, nx=True, ex=IN_FLIGHT_S):
                return Reservation(name, run_id, replay=False)
            raw = cast(str | None, self.r.get(name))
            if raw is None:
                continue
            held = json.loads(raw)
            if held["body"] != body:
                raise Conflict("Idempotency-Key: already used with another body; use a new "
                               "key for another request")
            if not held["done"] and not exists(str(held["run_id"])):
                raise InFlight("Idempotency-Key: a request with this key is still being "
                               "handled; retry shortly")
            return Reservation(name, str(held["run_id"]), replay=True)
        raise Conflict("Idempotency-Key: could not be reserved; retry")

    def complete(self, reservation: Reservation, body: str) -> None:
        self.r.set(reservation.key, json.dumps({"body": body, "run_id": reservation.run_id,
                                                "done": True}), ex=TTL_S)

    def release(self, reservation: Reservation) -> None:
        """The create failed: the key may be used again (for a corrected body too)."""
        self.r.delete(reservation.key)
