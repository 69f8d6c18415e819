"""A server span for every HTTP request, as ASGI middleware (the HTTP semantic conventions):
``<METHOD> <route>``, a child of the caller's span when the request carries its context
(W3C ``traceparent``), and current while the request is served, so a run it creates joins
that trace (planner/tracing.py). Spans are exported as the workers' are: only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``CHORDAL_TRACE_EXPORTER`` says where.

The query string is not recorded: it may hold what a client should not have put there.
"""

from __future__ import annotations

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from planner import tracing


class ServerSpans:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        method = scope["method"]
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with tracing.tracer().start_as_current_span(
                method, context=propagate.extract(carrier), kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope["path"],
                            "url.scheme": scope.get("scheme", "http")}) as span:
            try:
                await self.app(scope, receive, sending)
            finally:
                # The route is known once the router matched (FastAPI puts it in scope).
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                if status:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
