"""A plan that starts while it is written, against plan-then-run (issue #20 item 5).

    .venv/bin/python bench/stream.py [--runs N]   # adds its section to docs/benchmarks.md

The planner model is the fake Messages API server (through the real SDK) writing its answer
at TOKENS_PER_S (about 4 characters a token, as the real service streams); a 10-step goal
(a fan-out: 8 lookups then 2 steps reading them; a pipeline: each step reads the one
before). The
same goal runs on one worker of 8 processes with CHORDAL_STREAM_PLANS=1, then =0. Times are
the Redis clock's, from the run's own events: time-to-first-step is `run.created` to the
first `step.started`; total is `run.created` to `run.finished` (the synthesizer included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.agents import start_model_fleet  # noqa: E402
from bench.doc import table, write_section  # noqa: E402
from planner.client import Client  # noqa: E402
from tests.fake_anthropic import FakeAnthropic, text, tool_use  # noqa: E402

TOKENS_PER_S = 60.0
LATENCY_S = 0.3     # every model call's time to its first token
LOOKUP_S = 1.5
COMBINE_S = 0.3
STAGE_S = 0.8
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379") + "/14"
START, END = "<!-- stream:start -->", "<!-- stream:end -->"
CITIES = ("lisbon", "berlin", "madrid", "rome", "paris", "vienna", "prague", "athens")


def lookup(city: str) -> dict[str, Any]:
    return {"id": city, "description": f"Average monthly rent of a one-bedroom flat in "
                                       f"the centre of {city.title()}, in euros",
            "tool": "sleep", "args": {"seconds": LOOKUP_S, "value": {"city": city}}}


def stage(i: int) -> dict[str, Any]:
    ref = {"$ref": f"stage{i - 1}"} if i > 1 else {"start": "brief"}
    return {"id": f"stage{i}", "description": f"Stage {i} of the report: refine the "
                                              "previous stage's findings with one more source",
            "tool": "sleep", "args": {"seconds": STAGE_S, "value": {"from": ref, "stage": i}}}


#: Each shape of 10 steps, by its goal.
FAN_OUT: dict[str, Any] = {"goal": "g", "steps": [
    *[lookup(c) for c in CITIES],
    {"id": "cheapest", "description": "The cheapest of the eight cities by rent",
     "tool": "sleep", "args": {"seconds": COMBINE_S, "value": [{"$ref": c} for c in CITIES]}},
    {"id": "report", "description": "A short comparison of the eight cities, cheapest first",
     "tool": "sleep", "args": {"seconds": COMBINE_S, "value": {"$ref": "cheapest"}}},
]}
PIPELINE: dict[str, Any] = {"goal": "g", "steps": [stage(i) for i in range(1, 11)]}
SHAPES = {"fan-out: 8 lookups, then 2 steps reading them": FAN_OUT,
          "pipeline: each step reads the one before": PIPELINE}


def responder(role: str, body: dict[str, Any]) -> dict[str, Any]:
    if role == "planner":
        shown = str(body["messages"][0]["content"])
        return tool_use("submit_plan", next(p for g, p in SHAPES.items() if g in shown))
    return text("Lisbon is the cheapest.")


def fleet(fake_url: str, stream: bool) -> tuple[Client, subprocess.Popen[bytes]]:
    return start_model_fleet(fake_url, REDIS_URL, CHORDAL_STREAM_PLANS="1" if stream else "0")


def measure(client: Client, goal: str, runs: int
            ) -> tuple[list[float], list[float], list[float]]:
    """(time-to-first-step, total on the Redis clock, total on the client's) per run."""
    first, total, wall = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        run_id = client.submit_goal(goal)
        report = client.wait(run_id, 120)
        wall.append(time.perf_counter() - t0)
        assert report.status == "succeeded", report.error
        events = client.store.events(run_id, count=100_000)
        created = next(e.at for e in events if e.type == "run.created")
        started = next(e.at for e in events if e.type == "step.started")
        finished = next(e.at for e in events if e.type == "run.finished")
        assert created and started and finished
        first.append((started - created).total_seconds())
        total.append((finished - created).total_seconds())
    return first, total, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per side (median)")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args()
    fake = FakeAnthropic(responder, latency_s=LATENCY_S, tokens_per_s=TOKENS_PER_S)
    results: dict[tuple[str, bool], list[float]] = {}
    try:
        for stream in (False, True):
            client, worker = fleet(fake.url, stream)
            try:
                client.wait(client.submit_goal(next(iter(SHAPES))), 120)  # warm up
                for goal in SHAPES:
                    results[goal, stream] = [statistics.median(xs)
                                             for xs in measure(client, goal, args.runs)]
            finally:
                os.killpg(worker.pid, 15)
                worker.wait(timeout=30)
    finally:
        fake.close()
    load = os.getloadavg()
    rows = []
    for goal in SHAPES:
        (sf, st, sw), (wf, wt, ww) = results[goal, True], results[goal, False]
        rows += [(goal, "streamed (CHORDAL_STREAM_PLANS=1)", f"{sf:.2f} s", f"{st:.2f} s",
                  f"{sw:.2f} s"),
                 ("", "plan, then run (=0)", f"{wf:.2f} s", f"{wt:.2f} s", f"{ww:.2f} s"),
                 ("", "streamed / plan-then-run", f"{sf / wf:.2f}", f"{st / wt:.2f}",
                  f"{sw / ww:.2f}")]
    header = ("10-step goal", "", "time to first step", "total (Redis clock)",
              "total (client)")
    lines = table(header, rows)
    print("\n".join(lines))
    plan_chars = max(len(json.dumps(p)) for p in SHAPES.values())
    section = "\n".join([
        START,
        "## A plan that starts while it is written (streamed planning)",
        "",
        "Reproduce: `.venv/bin/python bench/stream.py`. The planner is the fake Messages API "
        f"through the real SDK, writing its `submit_plan` answer (up to {plan_chars} "
        f"characters, about {plan_chars // 4} tokens) at {TOKENS_PER_S:.0f} tokens/s after "
        f"{LATENCY_S} s to its first token, streamed or whole (then it comes when its last "
        f"token is written). Two 10-step goals: a fan-out (8 lookups, `sleep` {LOOKUP_S} s "
        f"reading nothing, then 2 steps of {COMBINE_S} s reading them) and a pipeline (10 "
        f"steps of {STAGE_S} s, each reading the one before); the synthesizer writes the "
        "answer. One worker of 8 processes, Redis broker and store; "
        f"median of {args.runs} runs after a warm-up. Times from the run's events (Redis "
        "clock): first step = `run.created` to the first `step.started`; total = "
        "`run.created` to `run.finished`; client = submit to report, on the client's clock.",
        "",
        *lines,
        "",
        "Goal (issue #20: the first step starts before the plan's last step is written, and "
        "total wall time at least 20% lower on a 10-step goal): the first holds on both "
        "shapes (the first step starts once its own JSON closes, about a tenth of the "
        "answer in). The total is "
        + ", ".join(f"{(1 - results[g, True][1] / results[g, False][1]) * 100:.0f}% lower on "
                    f"the {g.split(':')[0]}" for g in SHAPES)
        + ". What streaming saves is the execution that overlaps the writing. In the "
        "pipeline each step runs while the next ones are written. In the fan-out the two "
        "last steps read all 8 lookups, so the run cannot end before the last lookup "
        "(written about four fifths into the answer) has run, so only the writing after it "
        "is saved: that shape stays under the 20% goal for a reason the engine cannot "
        "change.",
        "",
        f"Machine: {os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f} (1/5/15 min) when it ended, shared with other work (noisy).",
        END,
    ])
    if not args.no_doc:
        write_section(START, END, section)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # the fake server's threads need no teardown
