"""docs/api.md's curl walk-through is run as written, with curl, against the test server;
and `chordal serve` refuses to start open by accident."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests import redis_server
from tests.integration.conftest import ROOT, base_env
from tests.service.conftest import DB, KEYS, Server

API_DOC = (ROOT / "docs" / "api.md").read_text()
FIRST_LINE = "API=http://127.0.0.1:8000 KEY=change-me-to-a-long-secret\n"


def http_api_commands() -> str:
    section = API_DOC.split("## Starting it, and a run with curl", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert block.startswith(FIRST_LINE)
    return block


def test_the_readme_curl_flow_submits_follows_and_cancels(api: Server):
    script = http_api_commands().replace(
        FIRST_LINE, f"API={api.url} KEY={KEYS['alice']}\n", 1)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # The event stream, to its end; then the report and the cancelled goal run, two JSON
    # documents back to back (curl adds no newline).
    stream, _, rest = done.stdout.rpartition("event: run.finished\n")
    assert stream.count("event: ") >= 5
    decoder = json.JSONDecoder()
    tail = rest.split("\n\n", 1)[1].strip()
    report, end = decoder.raw_decode(tail)
    cancelled, _ = decoder.raw_decode(tail[end:].strip())
    assert report["status"] == "succeeded"
    assert report["steps"]["compare"]["output"] > 0
    assert cancelled["status"] == "cancelled"
    assert api.client.store.options(cancelled["run_id"]).owner == "alice"


def serve(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "planner.cli", "serve", *args],
                            env=base_env(redis_server.url(DB), **env), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_serve_refuses_to_start_open_by_accident():
    started = {  # in parallel: each is a Python start-up
        "no keys": (serve(), "CHORDAL_API_KEYS"),
        "exposed": (serve("--no-auth", "--host", "0.0.0.0"), "loopback"),
        "both": (serve("--no-auth", CHORDAL_API_KEYS="a=0123456789abcdef"), "--no-auth"),
        "short": (serve(CHORDAL_API_KEYS="a=short"), "16 characters"),
    }
    for name, (process, says) in started.items():
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 2, (name, stderr)
        assert says in stderr, (name, stderr)
