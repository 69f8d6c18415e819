"""A client against a real Redis and a real worker loads no worker code, no model SDK and
no web framework: Client(), submit, wait; and `chordal status`/`runs`, which read the run
store, start without Celery."""

from __future__ import annotations

import json

from tests.integration.conftest import Engine
from tests.layers import loaded_by_cli, loaded_by_code

PLAN = {"goal": "add", "steps": [
    {"id": "a", "tool": "calculate", "args": {"expression": "2+3"}},
    {"id": "b", "tool": "calculate",
     "args": {"expression": "a * 10", "variables": {"a": {"$ref": "a"}}}},
]}


def test_submit_and_wait_load_no_worker_code(engine: Engine):
    result = loaded_by_code(
        "import json, os\n"
        "from planner import Client, Settings\n"
        "client = Client(Settings.from_env())\n"
        f"run_id = client.submit({PLAN!r})\n"
        "report = client.wait(run_id, 60)\n"
        "print(json.dumps({'run_id': run_id, 'status': report.status,"
        " 'b': report.steps['b'].output}))\n", engine.env)
    done = json.loads(result.stdout)
    assert done["status"] == "succeeded", result.stderr
    assert done["b"] == 50
    assert "workers" not in result.loaded and "anthropic" not in result.loaded
    assert "fastapi" not in result.loaded
    # the run store's commands need no Celery either (the engine's probe tool module,
    # which watches Celery's signals, is not theirs to load)
    env = {**engine.env, "CHORDAL_TOOL_MODULES": "planner.tools.testing"}
    status = loaded_by_cli("status", done["run_id"], env=env)
    assert status.code == 0, status.stderr
    assert status.loaded == [], status.loaded
    listing = loaded_by_cli("runs", "--limit", "3", env=env)
    assert listing.code == 0 and done["run_id"] in listing.stdout
    assert listing.loaded == [], listing.loaded
