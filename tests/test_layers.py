"""The layers hold at run time, not only in import-linter's graph: what a process loads
for `import planner`, for a client and for the quick CLI commands. (With Redis and a real
worker: tests/integration/test_client_layers.py.)"""

from __future__ import annotations

import os

import pytest

import planner
from tests.layers import HEAVY, ROOT, loaded_by_cli, loaded_by_code

PLAN = ROOT / "examples" / "cost-of-living.json"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHORDAL_", "ANTHROPIC_"))}
    return {**env, "CHORDAL_TOOL_MODULES": "planner.tools.testing", **extra}


def test_import_planner_loads_no_model_sdk_no_celery_no_web_framework():
    result = loaded_by_code("import planner", _env())
    assert result.loaded == []


def test_public_names_resolve_lazily_and_each_costs_only_what_it_needs():
    # a plan and its validation: no Redis, Celery or model SDK
    result = loaded_by_code(
        "import planner\n"
        "plan = planner.Plan.model_validate({'goal': 'g', 'steps': ["
        "{'id': 'a', 'tool': 'calculate', 'args': {'expression': '1+1'}}]})\n"
        "assert planner.validate(plan, planner.load_registry(['planner.tools.testing']))\n"
        "assert isinstance(planner.ChordalError('x'), Exception)\n", _env())
    assert result.loaded == [], result.stderr
    # a submodule is an attribute, as in any package, imported when first asked for
    assert loaded_by_code("import planner\nassert planner.errors.RunNotFound\n",
                          _env()).loaded == []
    # a name the module does not have is an AttributeError, as for any module
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        planner.Nope  # noqa: B018
    assert set(dir(planner)) >= set(planner.__all__)


def test_the_client_loads_no_worker_code_no_model_sdk_no_web_framework():
    result = loaded_by_code(
        "from planner import Client, RemoteClient, AsyncClient, Settings\n"
        "Client(Settings.from_env())\n"
        "RemoteClient('http://127.0.0.1:9', api_key='k')\n", _env())
    # Celery loads only once a run is submitted (the client publishes its first steps).
    assert result.loaded == [], result.loaded


@pytest.mark.parametrize("args", [
    ("--help",),
    ("schema",),
    ("validate", str(PLAN)),
    ("tools",),
    ("config",),
])
def test_quick_commands_start_without_heavy_imports(args: tuple[str, ...]):
    result = loaded_by_cli(*args, env=_env())
    assert result.code == 0, result.stderr
    assert result.loaded == [], f"chordal {' '.join(args)} imported {result.loaded}"


def test_a_failing_validate_is_still_quick_and_names_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"goal": "g", "steps": [{"id": "a", "tool": "nope", "args": {}}]}')
    result = loaded_by_cli("validate", str(bad), env=_env())
    assert result.code == 2
    assert "unknown tool 'nope'" in result.stderr
    assert result.loaded == []


def test_heavy_list_names_real_packages():
    # The assertions above would pass vacuously if a name were misspelt.
    result = loaded_by_code("import anthropic, celery, kombu, fastapi, uvicorn, workers.app",
                            _env())
    assert result.loaded == sorted(HEAVY)


def test_planner_names_no_module_of_workers_even_as_a_string():
    # `chordal worker` finds the Celery app through the chordal.worker entry point; an
    # importlib call or a `-A workers.app` in planner would be a layer crossed by name.
    import re

    pattern = re.compile(r"""(["'])workers(?:[.:]|\1)|import workers|from workers""")
    crossing = [f"{path.relative_to(ROOT)}:{n}"
                for path in sorted((ROOT / "planner").rglob("*.py"))
                for n, line in enumerate(path.read_text().splitlines(), 1)
                if pattern.search(line.split("#")[0])]
    assert crossing == []


def test_the_worker_command_finds_its_app_by_entry_point():
    from planner.cli.dev import worker_app

    assert worker_app() == "workers.app:app"
