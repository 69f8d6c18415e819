"""Spans in one process, read with the SDK's in-memory exporter: a model call follows the
GenAI conventions under the task's span; a message carries the span that published it;
without an exporter configured, nothing is installed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from opentelemetry import trace

from planner import tracing
from planner.engine.metering import MeteredModel
from planner.language.plan import Plan
from planner.llm.roles import executor_request
from planner.llm.scripted import ScriptedModel
from planner.settings import Settings
from planner.store.runs import RunStore
from tests.integration.conftest import ROOT
from tests.ops.conftest import TRACING_DB
from tests.ops.spans import memory


def test_a_model_call_is_a_genai_span_under_its_task(redis_base: str):
    assert tracing.configure("tests.ops.spans:memory")
    url = f"{redis_base}/{TRACING_DB}"
    settings = Settings.from_env({"CHORDAL_REDIS_URL": url})
    store = RunStore.from_url(url)
    run = store.create_run("g", Plan.model_validate(
        {"goal": "g", "steps": [{"id": "a", "tool": "echo", "args": {"value": 1}}]}))
    model = ScriptedModel([{"role": "executor", "content": [{"type": "text", "text": "hi"}],
                            "usage": {"input_tokens": 11, "output_tokens": 3},
                            "stop_reason": "max_tokens"}])
    metered = MeteredModel(model, store, settings, run, "a")
    outside = tracing.headers(run)
    with tracing.tracer().start_as_current_span(
            "chordal.step a", context=tracing.task_context(run, outside)) as task:
        inside = tracing.headers(run)
        metered.complete(executor_request(settings, ["say hi"], None))
    tracing.flush()

    trace_id, run_span = tracing.run_ids(run)
    # A message published outside any span of the run hangs under the run's span; one
    # published by a task, under the task's.
    assert outside["traceparent"] == f"00-{trace_id:032x}-{run_span:016x}-01"
    task_ctx = task.get_span_context()
    assert inside["traceparent"] == f"00-{trace_id:032x}-{task_ctx.span_id:016x}-01"
    assert float(inside[tracing.SENT_HEADER]) > 0

    (call,) = [s for s in memory().get_finished_spans()
               if s.name == "chat claude-haiku-5-5" and s.context.trace_id == trace_id]
    assert call.kind is trace.SpanKind.CLIENT
    assert call.parent is not None and call.parent.span_id == task_ctx.span_id
    attrs = dict(call.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "scripted"
    assert attrs["gen_ai.request.model"] == "claude-haiku-5-5"
    assert attrs["gen_ai.request.max_tokens"] == settings.model.executor_max_tokens
    assert attrs["gen_ai.response.model"] == "scripted:claude-haiku-5-5"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (11, 3)
    assert attrs["gen_ai.response.finish_reasons"] == ("max_tokens",)


def test_the_run_span_takes_the_ids_its_children_point_at(redis_base: str):
    assert tracing.configure("tests.ops.spans:memory")
    end = datetime.now(UTC)
    tracing.write_run_span("r-1", "succeeded", "a goal", end - timedelta(seconds=2), end)
    tracing.flush()
    (span,) = [s for s in memory().get_finished_spans() if s.name == "chordal.run"
               and s.attributes and s.attributes["chordal.run_id"] == "r-1"]
    assert (span.context.trace_id, span.context.span_id) == tracing.run_ids("r-1")
    assert span.parent is None
    assert span.end_time is not None and span.start_time is not None
    assert abs((span.end_time - span.start_time) / 1e9 - 2.0) < 0.01


def run_python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHORDAL_"))}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_no_exporter_no_sdk_and_an_otlp_endpoint_exports_over_http():
    code = ("import sys; from planner import tracing; ok = tracing.configure(); "
            "print(ok, tracing.enabled(), 'opentelemetry.sdk.trace' in sys.modules)")
    assert run_python(code) == "False False False"
    code = ("from planner import tracing; from opentelemetry import trace; "
            "print(tracing.configure(), "
            "type(trace.get_tracer_provider()._active_span_processor"
            "._span_processors[0]._batch_processor._exporter).__name__)")
    assert run_python(code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9") == \
        "True OTLPSpanExporter"
