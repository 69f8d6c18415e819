"""``/metrics`` of ``chordal serve``: behind a key, and the fleet's gauges read at scrape
time (queue depth, runs not ended) next to the counters."""

from __future__ import annotations

from tests.service.conftest import Server


def test_metrics_take_a_key_and_show_the_fleet(api: Server) -> None:
    with api.http(who=None) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
    with api.http() as http:
        answer = http.get("/metrics")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain")
        body = answer.text
        # Gauges read from Redis and the broker at scrape time, for every Chordal queue.
        assert 'chordal_queue_depth{queue="chordal"}' in body
        assert 'chordal_queue_depth{queue="llm"}' in body
        assert "chordal_runs_active" in body
        # The counters are declared even before this process records one.
        assert "# TYPE chordal_runs_total counter" in body
        open_metrics = http.get("/metrics",
                                headers={"Accept": "application/openmetrics-text"})
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.rstrip().endswith("# EOF")
