"""``GET /v1/runs/{id}/events``: the run's event stream as Server-Sent Events.

Each event goes out as ``id:`` (its Redis stream id), ``event:`` (its type) and ``data:``
(the ``RunEvent`` JSON). A client that reconnects sends ``Last-Event-ID`` (browsers do it
by themselves; or ``?after=``) and gets every event after it: nothing missed, nothing
twice, because the cursor is the stream's own id. A quiet stream gets a ``: keep-alive``
comment every few seconds so proxies keep it open. The stream ends after ``run.finished``,
or at once when the run had ended and every event was sent.

The reads block in Redis (``XREAD BLOCK``) through ``redis.asyncio``: a waiting stream
holds a connection of the streams' own pool, never a thread or the event loop; a stream
takes its slot before anything touches Redis (planner/service/streams.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

import anyio
import redis
from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from planner.errors import InvalidInput
from planner.service.auth import Caller, caller
from planner.service.runs import ON_RUN, RunId
from planner.service.schemas import EVENT_ID, error_responses, event_stream
from planner.service.state import Service, service
from planner.service.streams import StreamSlot
from planner.store.keys import RunKeys
from planner.store.records import TERMINAL_RUN, RunEvent

log = logging.getLogger("chordal.service")
router = APIRouter(prefix="/v1", tags=["runs"])

#: A stream id (``<ms>-<seq>``; ``<ms>`` alone is ``<ms>-0``, as Redis reads it).
STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")
BATCH = 500
#: How far ahead of Redis's clock a cursor may be (replicas' clocks differ a little).
FUTURE_SLACK_MS = 5_000


def frame(event: RunEvent) -> str:
    # The JSON is one line (no raw newlines), so it is one ``data:`` line.
    return f"id: {event.id}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


def cursor_from(last_event_id: str | None, after: str | None) -> str:
    """Where to resume: Last-Event-ID (a reconnect) wins over ?after=; the start if none."""
    for name, value in (("Last-Event-ID", last_event_id), ("after", after)):
        if value is not None:
            if not STREAM_ID.fullmatch(value.strip()):
                raise InvalidInput(f"{name}: not an event id (ids look like "
                                   "1732368432123-0)")
            return value.strip()
    return "0-0"


async def check_cursor(aredis: redis.asyncio.Redis, cursor: str, name: str) -> None:
    """A cursor from the future is no stream's id (made up, or another clock's): waiting
    after it would skip, in silence, every event written until then. One past this run's
    last event is fine: a Redis restart may have lost the stream's tail."""
    ms = int(cursor.split("-", 1)[0])
    seconds, micros = await aredis.time()
    if ms > seconds * 1000 + micros // 1000 + FUTURE_SLACK_MS:
        raise InvalidInput(f"{name}: {cursor} is not an event id of this server yet (it is "
                           "in the future); resume with an id the stream gave")


async def stream(aredis: redis.asyncio.Redis, run_id: str, cursor: str,
                 keepalive_s: float) -> AsyncIterator[str]:
    keys = RunKeys(run_id)
    block_ms = max(1, int(keepalive_s * 1000))
    try:
        while True:
            # The status is read before the events: run.finished is written with the
            # final status in one script, so a run that had ended shows its last event
            # in the read that follows.
            status = cast(str | None, await aredis.hget(keys.run, "status"))
            reply: Any = await aredis.xread({keys.events: cursor}, count=BATCH)
            if not reply:
                if status is None or status in TERMINAL_RUN:
                    return  # ended (or expired) and everything was sent
                reply = await aredis.xread({keys.events: cursor}, count=BATCH,
                                           block=block_ms)
                if not reply:
                    yield ": keep-alive\n\n"
                    continue
            for event_id, fields in reply[0][1]:
                event = RunEvent.from_stream(event_id, fields)
                cursor = event_id
                yield frame(event)
                # No end at a run.finished here: a run retried after it ended has an older
                # one. The stream ends above, once the run is over and all was sent.
    except redis.RedisError as exc:
        # The client reconnects with Last-Event-ID and misses nothing; say why here.
        log.warning("event stream of run %s ended: Redis: %s", run_id, type(exc).__name__)


@router.get("/runs/{run_id}/events", response_class=StreamingResponse,
            responses={**event_stream(), **ON_RUN, **error_responses(429)})
async def run_events(
        run_id: RunId,
        who: Annotated[Caller, Depends(caller)],
        svc: Annotated[Service, Depends(service)],
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64,
                                                    pattern=EVENT_ID,
                                                    description="Resume after this event "
                                                                "(a reconnect).")] = None,
        after: Annotated[str | None, Query(max_length=64, pattern=EVENT_ID,
                                           description="Resume after this "
                                                                      "event id.")] = None,
) -> StreamingResponse:
    """The run's events as they happen (Server-Sent Events)."""
    cursor = cursor_from(last_event_id, after)
    # The slot first: a key flooding streams is refused here, before Redis or a thread.
    slot = svc.streams.take(who.scope)
    aredis = svc.streams.redis
    try:
        await anyio.to_thread.run_sync(svc.owned, run_id, who)
        await check_cursor(aredis, cursor,
                           "Last-Event-ID" if last_event_id is not None else "after")
    except BaseException:
        slot.release()
        raise
    return CountedStream(
        slot, stream(aredis, run_id, cursor, svc.keepalive_s),
        media_type="text/event-stream",
        # No caching, and no buffering by a proxy in front (nginx): events go out now.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class CountedStream(StreamingResponse):
    """An event stream that gives its slot back however the response ends (finished, the
    client gone, even before the first byte), on the event loop, where it was taken."""

    def __init__(self, slot: StreamSlot, content: AsyncIterator[str], **kw: Any) -> None:
        super().__init__(content, **kw)
        self.slot = slot

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
