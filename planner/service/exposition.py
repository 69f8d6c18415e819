"""``/metrics`` of the HTTP service: the counters this process recorded and the fleet's
gauges (runs not ended, queue depth), read at scrape time (:mod:`planner.metrics`).

Behind an API key like every ``/v1`` operation: the metrics name tools, models and queues.
Give Prometheus a key of its own (``prometheus=<secret>`` in CHORDAL_API_KEYS)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from planner import metrics
from planner.service.auth import Caller, caller
from planner.service.schemas import error_responses

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}},
                             "description": "Prometheus exposition format"},
                       **error_responses(401, 503)})
def scrape(request: Request, _who: Annotated[Caller, Depends(caller)]) -> Response:
    """Prometheus metrics (text exposition, or OpenMetrics when asked for)."""
    fleet = request.app.state.fleet
    body, content_type = metrics.metrics_response(request.headers.get("accept"), fleet)
    return Response(body, media_type=content_type)
