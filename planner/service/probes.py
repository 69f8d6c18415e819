"""``/healthz`` (the process answers) and ``/readyz`` (it can do its job: Redis answers and
a live worker consumes every queue a run may need). No key needed: load balancers and
orchestrators call them."""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from planner.service.schemas import Health, Readiness
from planner.service.state import Service, service
from planner.wire import DEFAULT_QUEUE, LLM_QUEUE

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Not ready: what is "
                                                               "missing"}})
def readyz(svc: Annotated[Service, Depends(service)]) -> JSONResponse:
    """Redis answers and live workers consume every queue runs need."""
    client = svc.client
    needed = client.tools.queues | {DEFAULT_QUEUE} | ({LLM_QUEUE} if svc.has_model
                                                      else set())
    try:
        client.store.r.ping()
        # Each worker refreshes its record (queues, tools) every few seconds, with a TTL:
        # a worker that died drops out on its own, and no broadcast waits on the broker.
        consumed = {q for w in client.workers() for q in w.queues}
    except redis.RedisError:
        body = Readiness(status="unready", redis=False, missing_queues=sorted(needed),
                         message="Redis (CHORDAL_REDIS_URL) does not answer")
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    missing = sorted(needed - consumed)
    if missing:
        body = Readiness(status="unready", redis=True, missing_queues=missing,
                         message=f"no live worker consumes {', '.join(missing)}; start "
                                 "`chordal worker`")
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    return JSONResponse(Readiness(status="ready", redis=True, missing_queues=[])
                        .model_dump(mode="json"))
