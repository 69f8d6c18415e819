"""``create_app(settings)``: the HTTP API of ``chordal serve`` (docs/api.md), over the same
run store and broker as the CLI and the Python client.

Assembled here: the routers (runs, events, tools, probes, the run page), the one error
shape, the body cap, and what the process holds (:class:`~planner.service.state.Service`).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from planner import metrics, tracing
from planner.client import Client
from planner.engine.publisher import CeleryPublisher, producer_app
from planner.service import (
    accesslog,
    catalogue,
    docs,
    errors,
    events,
    exposition,
    page,
    probes,
    runs,
)
from planner.service.auth import KeyRing, load_keys
from planner.service.limits import BodyLimit
from planner.service.spans import ServerSpans
from planner.service.state import KEEPALIVE_S, Service
from planner.service.streams import StreamSlots
from planner.settings import Settings

#: Newer FastAPIs trace requests themselves, and record the query string (where a key put
#: in a URL would be) in their spans: off, for ServerSpans, the same on every version.
NO_NATIVE_SPANS: dict[str, Any] = (
    {"telemetry": {"tracing": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})


def create_app(settings: Settings | None = None, *, auth: bool = True,
               keepalive_s: float = KEEPALIVE_S, client: Client | None = None) -> FastAPI:
    """The API. ``auth=False`` (``--no-auth``) lets every request in as one tenant who
    sees every run; ``chordal serve`` allows it only on a loopback address."""
    settings = settings or Settings.from_env()
    client = client or Client(settings)
    keys = KeyRing(load_keys(settings), enabled=auth, admins=settings.api.api_admins)
    streams = StreamSlots.connect(settings.store.redis_url, settings.api.api_max_streams,
                                  settings.api.api_stream_pool, keepalive_s)
    svc = Service(client=client, keys=keys, keepalive_s=keepalive_s, streams=streams,
                  has_model=client.has_model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await svc.streams.close()
        tracing.flush()

    app = FastAPI(title="Chordal", version="1", lifespan=lifespan, **NO_NATIVE_SPANS,
                  docs_url=None, redoc_url=None,
                  description="Plan-and-execute LLM agents that run on Celery: submit, "
                              "follow and steer runs (docs/api.md).")
    app.state.service = svc
    app.state.fleet = metrics.fleet_collector(
        client.store, CeleryPublisher(producer_app(settings)),
        {t.queue for t in client.tools.values()})
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_request_bytes)
    if not auth:
        # Without keys, a web page the user visits could reach this server through a name
        # rebound to 127.0.0.1 (DNS rebinding): only loopback Host names are answered.
        app.add_middleware(TrustedHostMiddleware,
                           allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]"])
    # Outermost: every request gets its span, refused ones too.
    tracing.configure(settings.tracing.trace_exporter, service="chordal-api")
    app.add_middleware(ServerSpans)
    app.include_router(runs.router)
    app.include_router(events.router)
    app.include_router(catalogue.router)
    app.include_router(probes.router)
    app.include_router(exposition.router)
    app.include_router(page.router)
    docs.install(app)  # /docs and /redoc, their files served here (no CDN)
    # Once the routes are in: their query parameters are the only ones logged with values.
    app.state.query_names = accesslog.install(app)
    return app
