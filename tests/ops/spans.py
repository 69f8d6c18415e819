"""Span exporters for tests, named by CHORDAL_TRACE_EXPORTER=tests.ops.spans:<factory>.

Worker processes cannot hand spans to the test's memory, so :func:`to_redis` pushes each
finished span as JSON to a Redis list (TEST_SPANS_REDIS_URL); :func:`memory` is the SDK's
in-memory exporter, for spans made in the test's own process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cache
from typing import Any

import redis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SPANS_KEY = "test:spans"


def as_dict(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {"name": span.name, "trace_id": ctx.trace_id, "span_id": ctx.span_id,
            "parent_id": span.parent.span_id if span.parent else None,
            "kind": span.kind.name, "status": span.status.status_code.name,
            "attributes": dict(span.attributes or {}), "pid": os.getpid(),
            "events": [e.name for e in span.events],
            "start": span.start_time, "end": span.end_time}


class RedisExporter(SpanExporter):
    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if spans:
            self.r.rpush(SPANS_KEY, *[json.dumps(as_dict(s), default=str) for s in spans])
        return SpanExportResult.SUCCESS


def to_redis() -> SpanExporter:
    return RedisExporter(os.environ["TEST_SPANS_REDIS_URL"])


@cache
def memory() -> InMemorySpanExporter:
    return InMemorySpanExporter()
