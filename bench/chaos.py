"""The chaos suite's long form, measured: runs ``pytest -m chaos`` with CHAOS_LONG=1 and
writes its figures into docs/benchmarks.md and docs/reliability.md.

    python -m bench.chaos            # about 3 minutes on 2 cores
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.agents import ROOT, write_section

START, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "chaos.json"
        env = dict(os.environ, CHAOS_LONG="1", CHAOS_REPORT=str(report))
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "chaos", "tests/chaos",
                        "-p", "no:cacheprovider"], cwd=ROOT, env=env, check=True)
        return dict(json.loads(report.read_text()))


def repairs(found: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(found.items())) or "none"


def table(data: dict[str, Any]) -> str:
    kill, drain = data["kill_workers"], data["drain"]
    rows = [
        "| fault | result |",
        "|---|---|",
        f"| {kill['runs']} runs of random DAGs ({kill['steps']} steps) on 3 workers, "
        f"{kill['kills']} SIGKILLs of a whole worker over {kill['chaos_s']} s | "
        f"{kill['succeeded']}/{kill['runs']} succeeded, all ended {kill['ended_after_s']} s "
        f"after the first submit; {kill['attempts']} attempts; no succeeded step ran again; "
        f"repairs: {repairs(kill['repairs'])} |",
    ]
    for how, label in (("shutdown", "Redis `SHUTDOWN` (AOF, fsync always) for 3 s"),
                       ("kill9", "Redis `kill -9` (AOF everysec) for 3 s")):
        found = next((v for k, v in data.items() if k.startswith("redis_restart_")
                      and how in k), None)
        if found:
            statuses = ", ".join(f"{n} {s}" for s, n in sorted(found["statuses"].items()))
            rows.append(f"| {label}, {found['runs']} runs in flight | {statuses}; all ended "
                        f"{found['settled_after_redis_back_s']} s after Redis came back; "
                        f"repairs: {repairs(found['repairs'])} |")
    if "lost_before_delivery" in data:
        rows.append(f"| a step's message removed from the broker | the run succeeded "
                    f"{data['lost_before_delivery']['ended_after_loss_s']} s after the loss "
                    "(a `message_lost` repair) |")
    if "lost_in_flight" in data:
        rows.append(f"| a dependent's message removed while its upstream ran | the run "
                    f"succeeded {data['lost_in_flight']['ended_after_loss_s']} s after the "
                    "loss |")
    if "lost_at_defaults" in data:
        rows.append("| as above, at the default settings (lease 30 s, reconciler every 5 s, "
                    "grace 60 s, lost grace 10 s) | the run succeeded "
                    f"{data['lost_at_defaults']['ended_after_loss_s']} s after the loss |")
    if "lost_behind_backlog" in data:
        found = data["lost_behind_backlog"]
        rows.append("| 200 steps queued behind one worker process (0.1 s each), one message "
                    f"removed | {found['repairs']} repair (the lost message), re-sent while "
                    f"{found['steps_started_after_repair']} steps still waited; no waiting "
                    "message taken for lost, no run whose join waited behind them taken for "
                    "stalled |")
    rows.append(f"| {drain['runs']} concurrent runs x {drain['steps_per_run']} steps on "
                f"{drain['workers']} workers | all succeeded; drained in {drain['drain_s']} s "
                f"({drain['steps_per_s']} steps/s); Redis {drain['redis_keys_bytes_per_run']:,}"
                " bytes of keys per run |")
    return "\n".join(rows)


def main() -> None:
    data = measure()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    body = (f"{START}\nMeasured by `python -m bench.chaos` (the chaos suite's long form; "
            f"lease 2 s, reconciler every 0.5 s, grace 2 s; {machine}):\n\n"
            f"{table(data)}\n{END}")
    for path in (ROOT / "docs" / "reliability.md",):
        doc = path.read_text()
        path.write_text(doc.split(START)[0] + body + doc.split(END, 1)[1])
        print(f"wrote {path.relative_to(ROOT)}")
    write_section("## Chaos", END, f"## Chaos\n\n{body}")


if __name__ == "__main__":
    main()
