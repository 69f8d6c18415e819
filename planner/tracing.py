"""OpenTelemetry spans: one per run, per task (a step's with its tool, attempt and queue
wait) and per model call (GenAI semantic conventions).

- **One trace per run.** Its trace id and the run span's id are derived from the run id,
  so every process (a client publishing the roots, the reconciler re-sending a message, a
  worker ending the run) can parent a span on the run without asking anyone. The run span
  itself is written once, when the run has ended, from its recorded start and end.
- **Linked across workers.** A published message carries the publishing span's context in
  its headers (W3C ``traceparent``); the task's span is its child, so a step's span hangs
  under the step that unlocked it, and a replan under the step that failed.
- **Joined to a caller's trace.** A run created inside a span (a Client's caller's, or an
  HTTP request's, child of its W3C ``traceparent``), in a process that records spans, gets
  an id that carries the caller's trace id (``<20 hex>-<32 hex trace id>``), so its spans,
  in every process, are in the caller's trace; its run span hangs under the span of its
  creation, whose id is also derived from the run id (:func:`creating`).
- **Exported only when asked.** :func:`configure` installs the SDK when
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set, exporting over OTLP
  HTTP with the standard ``OTEL_*`` variables, or when ``CHORDAL_TRACE_EXPORTER`` names
  an exporter factory; otherwise the API stays a no-op and a span costs next to nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import time
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Protocol, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from planner.vocabulary import RunStatus

TRACER = "chordal"
#: Header with the publishing time (epoch seconds): a task's queue wait starts there.
SENT_HEADER = "chordal_sent"

#: (trace id, span id) the next span must take: the run span's, derived from its run.
_forced_ids: ContextVar[tuple[int, int] | None] = ContextVar("chordal_forced_ids",
                                                              default=None)
_provider: Any = None


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER)


def enabled() -> bool:
    """Whether spans are recorded in this process (configured here, or by the host app)."""
    return _provider is not None or not isinstance(trace.get_tracer_provider(),
                                                   trace.ProxyTracerProvider)


#: The id of a run that joined its caller's trace: a run id, then that trace's id.
_JOINED = re.compile(r"[0-9a-f]{16,20}-([0-9a-f]{32})")


def run_ids(run_id: str) -> tuple[int, int]:
    """The run's trace id and run span id, the same in every process: derived from the run
    id, or, for a run that joined its caller's trace, the trace id its id carries."""
    digest = hashlib.sha256(f"chordal-run:{run_id}".encode()).digest()
    joined = _JOINED.fullmatch(run_id)
    trace_id = int(joined[1], 16) if joined else 0
    return (trace_id or int.from_bytes(digest[:16], "big"),
            int.from_bytes(digest[16:24], "big"))


def _creation_span_id(run_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"chordal-create:{run_id}".encode()).digest()[:8],
                          "big")


def joined_run_id(run_id: str, carrier: Mapping[str, str] | None = None) -> str:
    """``run_id``, joined to the current trace (or the one ``carrier``, W3C headers,
    continues) when there is one and this process records spans: the run's spans then
    carry that trace id. Every door makes run ids here (the API under its request's span,
    a Client under its caller's). With tracing off, a ``traceparent`` changes nothing: a
    run id never says more than it must."""
    if not enabled():
        return run_id
    context = propagate.extract(carrier) if carrier is not None else None
    caller = trace.get_current_span(context).get_span_context()
    return f"{run_id}-{caller.trace_id:032x}" if caller.is_valid else run_id


class _Request(Protocol):
    headers: MutableMapping[str, str]


def inject(request: _Request) -> None:
    """The current span's context into an outgoing request's headers (``traceparent``;
    an httpx request hook): the server's spans, and a run it makes, join this trace.
    Nothing without a span."""
    propagate.inject(request.headers)


async def ainject(request: _Request) -> None:
    inject(request)


@contextmanager
def creating(run_id: str) -> Iterator[None]:
    """Around the creation of a run that joined a trace: a span of it (a child of the
    current span, the request's), with the id its run span names as parent; messages
    published inside hang under the run's span, as a Client's do."""
    if not _JOINED.fullmatch(run_id):
        yield
        return
    token = _forced_ids.set((run_ids(run_id)[0], _creation_span_id(run_id)))
    try:
        span = tracer().start_span("chordal.create_run", kind=SpanKind.INTERNAL,
                                   attributes={"chordal.run_id": run_id})
    finally:
        _forced_ids.reset(token)
    with trace.use_span(span, end_on_exit=True):
        run_token = otel_context.attach(run_context(run_id))
        try:
            yield
        finally:
            otel_context.detach(run_token)


def run_context(run_id: str) -> otel_context.Context:
    """A context whose current span is the run's (remote: it is written at the end)."""
    trace_id, span_id = run_ids(run_id)
    span = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True,
                                        trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    return trace.set_span_in_context(span)


def headers(run_id: str) -> dict[str, str]:
    """Headers for a message of ``run_id``: the current span's context if it belongs to
    the run's trace (a task of that run publishes), else the run's own; and the time."""
    current = trace.get_current_span().get_span_context()
    in_run = current.is_valid and current.trace_id == run_ids(run_id)[0]
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=None if in_run else run_context(run_id))
    carrier[SENT_HEADER] = f"{time.time():.6f}"
    return carrier


def queue_wait_s(carrier: Mapping[str, Any], eta: str | datetime | None) -> float | None:
    """Seconds from when the message was due (published, or its countdown's end) until
    now; None when the message does not say when it was sent."""
    try:
        due = float(carrier[SENT_HEADER])
    except (KeyError, TypeError, ValueError):
        return None
    if eta:
        moment = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        due = max(due, moment.timestamp())
    return max(0.0, time.time() - due)


def task_context(run_id: str, carrier: Mapping[str, Any] | None) -> otel_context.Context:
    """The parent of a task's span: the span that published it, from the message's
    headers, or the run's span when the publisher had none."""
    if carrier and "traceparent" in carrier:
        return propagate.extract({k: str(v) for k, v in carrier.items()})
    return run_context(run_id)


def annotate(**attributes: Any) -> None:
    """Set ``chordal.<name>`` attributes on the current span (no-op without one)."""
    span = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(f"chordal.{key}", value)


def failed(exc: BaseException, error_type: str | None = None) -> None:
    """Mark the current span failed by ``exc`` (a tool's error, caught by the engine)."""
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_attribute("error.type", error_type or type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))


def write_run_span(run_id: str, status: str, goal: str, start: datetime | None,
                   end: datetime | None, error: str | None = None) -> None:
    """Write the run's span, with the ids every other span of the run points at."""
    if start is None:
        return
    end_ns = int((end.timestamp() if end else time.time()) * 1e9)
    trace_id, _ = run_ids(run_id)
    # A run that joined a trace hangs under the span of its creation; others are roots.
    parent = (trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id, _creation_span_id(run_id), is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED))))
        if _JOINED.fullmatch(run_id) else otel_context.Context())
    token = _forced_ids.set(run_ids(run_id))
    try:
        span = tracer().start_span(
            "chordal.run", context=parent, kind=SpanKind.INTERNAL,
            start_time=int(start.timestamp() * 1e9),
            attributes={"chordal.run_id": run_id, "chordal.run.status": status,
                        "chordal.goal": goal[:500]})
    finally:
        _forced_ids.reset(token)
    if status != RunStatus.SUCCEEDED:
        span.set_status(Status(StatusCode.ERROR, (error or status)[:300]))
    span.end(end_time=end_ns)


# What a model call looks like from here (planner.llm's types, frozen: read-only).
class _ModelConfig(Protocol):
    @property
    def model(self) -> str: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def temperature(self) -> float | None: ...


class _Usage(Protocol):
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_input_tokens(self) -> int: ...
    @property
    def cache_creation_input_tokens(self) -> int: ...


class _ModelResponse(Protocol):
    @property
    def model(self) -> str: ...
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def usage(self) -> _Usage: ...


Response = TypeVar("Response", bound=_ModelResponse)


@contextmanager
def model_span(role: str, provider: str, config: _ModelConfig) -> Iterator[Span]:
    """A model call, as the GenAI semantic conventions have it: ``chat <model>``, a
    client span; :func:`model_response` adds what came back. Current inside the block."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
        "gen_ai.request.model": config.model, "gen_ai.request.max_tokens": config.max_tokens,
        "gen_ai.request.temperature": config.temperature, "chordal.role": role}
    with tracer().start_as_current_span(
            f"chat {config.model}", kind=SpanKind.CLIENT,
            attributes={k: v for k, v in attrs.items() if v is not None}) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            raise


def model_response(response: Response) -> Response:
    """Note a model's answer (model, tokens, finish reason) on the current span."""
    span = trace.get_current_span()
    u = response.usage
    span.set_attribute("gen_ai.response.model", response.model)
    span.set_attribute("gen_ai.usage.input_tokens", u.input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", u.output_tokens)
    span.set_attribute("gen_ai.usage.cache_read.input_tokens", u.cache_read_input_tokens)
    span.set_attribute("gen_ai.usage.cache_creation.input_tokens",
                       u.cache_creation_input_tokens)
    if response.stop_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [response.stop_reason])
    return response


def configure(exporter_factory: str | None = None, service: str = "chordal-worker") -> bool:
    """Install the SDK in this process if an exporter is configured (see the module's
    docstring); True if it did. Idempotent; the SDK's batch processor survives a fork."""
    global _provider
    if _provider is not None:
        return True
    endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if not exporter_factory and not endpoint:
        return False
    # Imported only here: a process that exports nothing never loads the SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RunIds(RandomIdGenerator):
        """Random ids, except for a run span, whose ids are its run's."""

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced else super().generate_trace_id()

        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced else super().generate_span_id()

    if exporter_factory:
        module, _, attr = exporter_factory.partition(":")
        exporter = getattr(importlib.import_module(module), attr or "exporter")()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter()  # endpoint, headers, timeout: the OTEL_* variables
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME",
                                                               service)}),
        id_generator=RunIds())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def flush(timeout_s: float = 5.0) -> None:
    """Export what is buffered (a pool process about to exit would lose it)."""
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))
