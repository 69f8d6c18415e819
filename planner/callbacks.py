"""Run callbacks: when a run with a ``callback_url`` ends, its final report is POSTed there,
signed, at least once.

The outcome comes first, the delivery after: the run store ends the run (one script), then
queues its callback in Redis (``chordal:{callbacks}:due``, before the run leaves the
reconciler's watch list, so a process that dies in between leaves the reconciler to queue
it). Every worker's housekeeping delivers due callbacks (:class:`CallbackSender`): a
worker claims one atomically by moving its due time a lease ahead, so two workers never
send it at once, and a worker that dies mid-delivery leaves it to another when the lease
lapses. A failed delivery (no answer, or not a 2xx) is retried with exponential backoff
(``CHORDAL_CALLBACK_BACKOFF_S``, doubling, at most 15 minutes apart) up to
``CHORDAL_CALLBACK_ATTEMPTS``; the run's events say how it went: ``run.callback_sent`` or
``run.callback_failed``. At least once means a receiver may see a report twice:
``X-Chordal-Delivery`` is the same on every attempt for one ending of a run.

The request: ``POST callback_url`` with the report's JSON (as ``GET /v1/runs/{id}``) and

- ``X-Chordal-Timestamp``: Unix seconds when it was signed;
- ``X-Chordal-Signature: sha256=<hex>``: HMAC-SHA256 with ``CHORDAL_CALLBACK_SECRET`` of
  ``<timestamp>.<body>``. The timestamp is signed too, so a receiver that refuses old
  timestamps (5 minutes) refuses a replayed request (:func:`verify`).

Where it may go is checked again at delivery, not only when the run was submitted: the
host must be in ``CHORDAL_CALLBACK_ALLOW``, and every address it resolves to must be public
unless the allow-list names that host exactly (a wildcard never lets a request into a
private network: loopback, RFC 1918, link-local such as cloud metadata). The request goes
to the address that was checked (no second lookup to rebind), follows no redirect, and
ignores proxy variables.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx
import redis

from planner.errors import InvalidInput, RunNotFound
from planner.net import check_callback_url, first_private, resolve, shown
from planner.settings import Settings
from planner.store import scripts
from planner.store.keys import CALLBACK_ATTEMPTS, CALLBACKS_DUE, RunKeys
from planner.store.runs import EVENTS_MAXLEN, RunStore
from planner.usage import summarize
from planner.vocabulary import EventType

log = logging.getLogger("chordal.callbacks")

SIGNATURE_HEADER = "X-Chordal-Signature"
TIMESTAMP_HEADER = "X-Chordal-Timestamp"
DELIVERY_HEADER = "X-Chordal-Delivery"
#: How old a signed request a receiver should accept (:func:`verify`).
TOLERANCE_S = 300
#: The longest wait between two attempts.
MAX_BACKOFF_S = 900.0
#: Seconds one POST may take (connecting, sending, the answer's headers).
POST_TIMEOUT_S = 10.0
#: Seconds a claim lasts: past it, another worker delivers (above a POST and a lookup).
LEASE_S = 60.0
USER_AGENT = "chordal-callbacks/0.1"

Resolver = Callable[[str, int], Sequence[str]]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Chordal-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(secret: str, body: bytes, signature: str | None, timestamp: str | None, *,
           tolerance_s: float = TOLERANCE_S, now: float | None = None) -> bool:
    """Whether a callback request is genuine and fresh (for receivers written in Python;
    docs/api.md shows the same check in a few lines)."""
    if not signature or not timestamp or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature, sign(secret, timestamp, body))




def refusal(url: str, allow: Sequence[str], addresses: Sequence[str]) -> str | None:
    """Why a callback may not go to ``url`` whose host resolved to ``addresses`` (None:
    it may). The allow-list as at submission; then no private, loopback, link-local or
    reserved address unless the allow-list names the host exactly."""
    try:
        check_callback_url(url, allow)
    except InvalidInput as exc:
        return str(exc)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not addresses:
        return f"callback_url: host {host!r} has no address"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    private = first_private(host, port, addresses, allow)
    if private is not None:
        log.warning("callback_url host %r resolves to non-public %s; refused", host,
                    private)
        return (f"callback_url: host {host!r} resolves to a non-public address; only a "
                "host named exactly in CHORDAL_CALLBACK_ALLOW may be reached on a private "
                "network")
    return None



@dataclass(frozen=True)
class Claim:
    """A due callback this worker holds until ``lease`` (epoch ms, Redis clock)."""

    run_id: str
    lease: str
    attempt: int


Outcome = Literal["sent", "retry", "failed", "dropped", "lost"]


class CallbackSender:
    """Delivers due callbacks; one per worker (its housekeeping thread calls
    :meth:`deliver_due`)."""

    def __init__(self, store: RunStore, settings: Settings, *, lease_s: float = LEASE_S,
                 timeout_s: float = POST_TIMEOUT_S,
                 resolver: Resolver = resolve) -> None:
        self.store, self.settings = store, settings
        self.lease_ms = int(lease_s * 1000)
        # Well inside the claim's lease, so no other worker claims it while this one waits.
        self.deadline_s = min(2 * timeout_s, lease_s / 2)
        self.resolver = resolver
        r = store.r
        self._claim = scripts.register(r, "claim_callback")
        self._settle = scripts.register(r, "settle_callback")
        self._event = scripts.register(r, "callback_event")
        # No proxy from the environment (it would make its own lookup), no redirects (one
        # could lead anywhere), no cookies kept between receivers.
        self.http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
                                 follow_redirects=False, trust_env=False)

    def close(self) -> None:
        self.http.close()

    # -- the queue -----------------------------------------------------------------------
    def claim(self) -> Claim | None:
        reply = cast(list[Any] | None, self._claim(keys=[CALLBACKS_DUE, CALLBACK_ATTEMPTS],
                                                   args=[self.lease_ms]))
        if not reply:
            return None
        return Claim(str(reply[0]), str(reply[1]), int(reply[2]))

    def settle(self, claim: Claim, again_in_s: float | None = None) -> bool:
        """Done with ``claim`` (or due again in ``again_in_s``); False if it was no longer
        ours (the lease lapsed, or the run ended again and was queued afresh)."""
        delay = "" if again_in_s is None else str(int(again_in_s * 1000))
        return bool(self._settle(keys=[CALLBACKS_DUE, CALLBACK_ATTEMPTS],
                                 args=[claim.run_id, claim.lease, delay]))

    def backoff_s(self, attempt: int) -> float:
        """Seconds before the attempt after ``attempt`` (1-based)."""
        first = self.settings.callbacks.callback_backoff_s
        return float(min(MAX_BACKOFF_S, first * 2 ** (attempt - 1)))

    def record(self, run_id: str, kind: EventType, data: dict[str, Any]) -> None:
        k = RunKeys(run_id)
        self._event(keys=[k.run, k.events], args=[EVENTS_MAXLEN, kind, json.dumps(data)])

    # -- delivery ------------------------------------------------------------------------
    def deliver_due(self, limit: int = 50) -> list[tuple[str, Outcome]]:
        """Deliver callbacks that are due, one claim at a time, at most ``limit``."""
        done: list[tuple[str, Outcome]] = []
        for _ in range(limit):
            claim = self.claim()
            if claim is None:
                break
            done.append((claim.run_id, self.deliver(claim)))
        return done

    def deliver(self, claim: Claim) -> Outcome:
        """Send one claimed callback and settle the claim; what came of it."""
        try:
            return self._deliver(claim)
        except redis.RedisError:
            raise  # the claim stays; its lease lapses and it is delivered again
        except Exception as exc:  # a bug or a record it cannot read: an attempt spent
            log.exception("run %s: callback", claim.run_id)
            return self._failed(claim, "callback_url", f"{type(exc).__name__}: {exc}")

    def _deliver(self, claim: Claim) -> Outcome:
        run_id = claim.run_id
        try:
            report = self.store.report(run_id)
            options = self.store.options(run_id)
        except RunNotFound:
            self.settle(claim)  # expired before it could be delivered
            log.warning("run %s: callback dropped: the run's record expired", run_id)
            return "dropped"
        url, owner = options.callback_url, options.owner
        if not report.ended or not url:
            self.settle(claim)  # retried since: its next ending queues it again
            return "dropped"
        report.usage = summarize(self.store.usage_fields(run_id), self.settings.budget.prices)
        where = shown(url)
        secret = self.settings.callbacks.callback_key(owner)
        if not secret:
            return self._give_up(claim, where, "this worker has no CHORDAL_CALLBACK_SECRET "
                                              f"(nor one for {owner!r} in "
                                              "CHORDAL_CALLBACK_SECRETS) to sign callbacks "
                                              "with")
        try:  # the allow-list first: no lookup of a host that is refused anyway
            check_callback_url(url, self.settings.callbacks.callback_allow)
        except InvalidInput as exc:
            return self._give_up(claim, where, str(exc))
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https"
                                                          else 80)
        try:
            addresses = self.resolver(host, port)
        except OSError as exc:
            return self._failed(claim, where, f"cannot resolve {host!r}: {exc}")
        why = refusal(url, self.settings.callbacks.callback_allow, addresses)
        if why is not None:
            return self._give_up(claim, where, why)
        body = json.dumps(report.model_dump(mode="json"), ensure_ascii=False,
                          separators=(",", ":")).encode()
        stamp = str(int(time.time()))
        finished = report.finished_at.timestamp() if report.finished_at else 0.0
        headers = {
            "Content-Type": "application/json", "User-Agent": USER_AGENT,
            "Host": parts.netloc.rpartition("@")[2],
            TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body),
            DELIVERY_HEADER: f"{run_id}.{int(finished * 1_000_000)}",
            "X-Chordal-Event": EventType.RUN_FINISHED,
        }
        target = _pinned(parts, addresses[0], port)
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        def post() -> int:
            with self.http.stream("POST", target, content=body, headers=headers,
                                  extensions=extensions) as response:
                return response.status_code  # the body is never read

        # httpx's timeout bounds each read, not the request: a receiver that trickles its
        # answer could hold this worker's callbacks (and, after the lease, the next
        # worker's) forever. The whole delivery gets one deadline.
        pool = ThreadPoolExecutor(1, thread_name_prefix="chordal-callback")
        try:
            status = pool.submit(post).result(timeout=self.deadline_s)
        except FutureTimeout:
            return self._failed(claim, where, f"no answer within {self.deadline_s:.0f} s")
        except httpx.HTTPError as exc:
            return self._failed(claim, where, f"{type(exc).__name__}: {exc}")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        if 200 <= status < 300:
            self.record(run_id, EventType.RUN_CALLBACK_SENT, {
                "url": where, "status": status, "attempts": claim.attempt,
                "delivery": headers[DELIVERY_HEADER]})
            self.settle(claim)
            log.info("run %s: callback sent to %s (%d, attempt %d)", run_id, where, status,
                     claim.attempt)
            return "sent"
        if status == 410:  # Gone: the receiver says never again
            return self._give_up(claim, where, "the receiver answered 410 Gone")
        return self._failed(claim, where, f"the receiver answered {status}")

    def _failed(self, claim: Claim, where: str, why: str) -> Outcome:
        if claim.attempt >= self.settings.callbacks.callback_attempts:
            return self._give_up(claim, where, why)
        delay = self.backoff_s(claim.attempt)
        log.warning("run %s: callback to %s failed (attempt %d of %d): %s; again in %.1f s",
                    claim.run_id, where, claim.attempt,
                    self.settings.callbacks.callback_attempts, why, delay)
        return "retry" if self.settle(claim, delay) else "lost"

    def _give_up(self, claim: Claim, where: str, why: str) -> Outcome:
        self.record(claim.run_id, EventType.RUN_CALLBACK_FAILED, {
            "url": where, "attempts": claim.attempt, "error": why})
        self.settle(claim)
        log.warning("run %s: callback to %s given up after %d attempt(s): %s",
                    claim.run_id, where, claim.attempt, why)
        return "failed"

    def pending(self) -> dict[str, float]:
        """Queued callbacks: run id -> due time (epoch ms), for tests and operators."""
        rows = cast(list[tuple[str, float]],
                    self.store.r.zrange(CALLBACKS_DUE, 0, -1, withscores=True))
        return dict(rows)


def _pinned(parts: SplitResult, address: str, port: int) -> str:
    """The callback URL with its host replaced by the address that was checked."""
    host = f"[{address}]" if ":" in address else address
    return urlunsplit((parts.scheme, f"{host}:{port}", parts.path or "/", parts.query, ""))


__all__ = ["CallbackSender", "Claim", "refusal", "resolve", "shown", "sign", "verify"]
