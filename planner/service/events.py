"""``GET /v1/runs/{id}/events``: the run's event stream as Server-Sent Events.

Each event goes out as ``id:`` (its Redis stream id), ``event:`` (its type) and ``data:``
(the ``RunEvent`` JSON). A client that reconnects sends ``Last-Event-ID`` (browsers do it
by themselves; or ``?after=``) and gets every event after it: nothing missed, nothing
twice, because the cursor is the stream's own id. A quiet stream gets a ``: keep-alive``
comment every few seconds so proxies keep it open. The stream ends after ``run.finished``,
or at once when the run had ended and every event was sent.

The reads block in Redis (``XREAD BLOCK``) through ``redis.asyncio``: a waiting stream
holds a connection, never a thread or the event loop.
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
from starlette.background import BackgroundTask

from planner.errors import InvalidInput
from planner.service.auth import Caller, caller
from planner.service.runs import ON_RUN, RunId
from planner.service.schemas import error_responses
from planner.service.state import Service, service
from planner.store.keys import RunKeys
from planner.store.records import TERMINAL_RUN, RunEvent

log = logging.getLogger("chordal.service")
router = APIRouter(prefix="/v1", tags=["runs"])

#: A stream id (``<ms>-<seq>``, or ``<ms>`` for "after everything at that ms").
STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")
BATCH = 500


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


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


async def check_cursor(aredis: redis.asyncio.Redis, run_id: str, cursor: str,
                       name: str) -> None:
    """A cursor past this run's last event is not one of its ids (another run's, or made
    up): waiting after it would silently skip the events written before that time."""
    if cursor == "0-0":
        return
    last: Any = await aredis.xrevrange(RunKeys(run_id).events, count=1)
    last_id = str(last[0][0]) if last else "0-0"
    if _order(cursor) > _order(last_id):
        raise InvalidInput(f"{name}: {cursor} is after this run's last event ({last_id}); "
                           "resume with an id this run's stream gave")


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
            responses={200: {"content": {"text/event-stream": {"schema": {
                "type": "string"}}}, "description": "Server-Sent Events"}, **ON_RUN,
                **error_responses(429)})
async def run_events(
        run_id: RunId,
        who: Annotated[Caller, Depends(caller)],
        svc: Annotated[Service, Depends(service)],
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64,
                                                    description="Resume after this event "
                                                                "(a reconnect).")] = None,
        after: Annotated[str | None, Query(max_length=64, description="Resume after this "
                                                                      "event id.")] = None,
) -> StreamingResponse:
    """The run's events as they happen (Server-Sent Events)."""
    cursor = cursor_from(last_event_id, after)
    await anyio.to_thread.run_sync(svc.owned, run_id, who)
    await check_cursor(svc.aredis, run_id, cursor,
                       "Last-Event-ID" if last_event_id is not None else "after")
    slot = svc.open_stream(who)

    async def counted() -> AsyncIterator[str]:
        try:
            async for chunk in stream(svc.aredis, run_id, cursor, svc.keepalive_s):
                yield chunk
        finally:
            slot.release()

    return StreamingResponse(
        counted(), media_type="text/event-stream",
        # No caching, and no buffering by a proxy in front (nginx): events go out now.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # Also after the response, in case the stream never started (a client gone at once).
        background=BackgroundTask(slot.release))
