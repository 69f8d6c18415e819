"""A span exporter that drops every span, for bench/run.py's "tracing on" worker
(CHORDAL_TRACE_EXPORTER=bench.telemetry:discard): spans are made and batched as in
production, only not sent anywhere, so the figure is Chordal's cost, not a collector's."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def discard() -> SpanExporter:
    return Discard()
