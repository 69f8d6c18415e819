import json
import os
import subprocess
import sys

import pytest

from planner.errors import ConfigError
from planner.settings import Settings, envfile
from planner.settings.report import effective

SECRET = "s3cret-value-0123456789"


def test_defaults():
    s = Settings.from_env({})
    assert s.store.redis_url == "redis://127.0.0.1:6379/0"
    assert s.broker == s.store.redis_url
    assert s.tools.tool_modules == []
    assert (s.limits.max_steps, s.limits.max_args_bytes) == (200, 65536)
    assert s.store.retention_s == 7 * 86400
    assert s.model.agent_result_chars == 16_000


def test_reads_prefixed_environment():
    s = Settings.from_env({"CHORDAL_TOOL_MODULES": "a.b, c ,", "CHORDAL_MAX_STEPS": "10",
                           "CHORDAL_BROKER_URL": "amqp://guest:guest@127.0.0.1//",
                           "OTHER": "ignored"})
    assert s.tools.tool_modules == ["a.b", "c"]
    assert s.limits.max_steps == 10
    assert s.broker.startswith("amqp://")


def test_unknown_variable_is_reported_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"CHORDAL_REDIS_ULR \(did you mean CHORDAL_REDIS_URL"):
        Settings.from_env({"CHORDAL_REDIS_ULR": "redis://x"})


def test_invalid_value_names_the_variable():
    with pytest.raises(ConfigError, match=r"CHORDAL_MAX_STEPS: .*integer"):
        Settings.from_env({"CHORDAL_MAX_STEPS": "lots"})


@pytest.mark.parametrize(
    ("var", "value"),
    [("CHORDAL_REDIS_URL", "localhost:6379"), ("CHORDAL_BROKER_URL", "kafka://x")],
)
def test_urls_must_have_a_scheme(var, value):
    with pytest.raises(ConfigError, match=f"{var}: .*must be a"):
        Settings.from_env({var: value})


def test_areas_hold_the_fields_under_their_flat_names():
    s = Settings.from_env({"CHORDAL_REDIS_URL": "redis://h:1/0", "CHORDAL_STEP_LEASE_S": "9",
                           "CHORDAL_PLANNER_MODEL": "m", "CHORDAL_CALLBACK_ATTEMPTS": "4",
                           "CHORDAL_API_URL": "http://x", "CHORDAL_METRICS_PORT": "9808"})
    assert s.store.redis_url == "redis://h:1/0" and s.broker == "redis://h:1/0"
    assert (s.engine.step_lease_s, s.model.planner_model) == (9.0, "m")
    assert (s.callbacks.callback_attempts, s.remote.api_url) == (4, "http://x")
    assert s.metrics.metrics_port == 9808
    # Only what was set counts as set (the Redis hint tells "unset" from "the default").
    assert s.store.model_fields_set == {"redis_url"} and not s.worker.model_fields_set


def test_every_variable_keeps_its_flat_name():
    names = Settings.env_names()
    assert len(names) == 70 == sum(len(m.model_fields) for m in Settings.areas().values())
    assert names["CHORDAL_REDIS_URL"] == ("store", "redis_url")
    assert names["CHORDAL_LLM"] == ("model", "llm")
    assert all(var == "CHORDAL_" + field.upper() for var, (_, field) in names.items())
    assert not any("__" in var for var in names)  # no CHORDAL_STORE__REDIS_URL


def test_settings_constructed_directly_read_the_flat_environment(monkeypatch):
    monkeypatch.setenv("CHORDAL_MAX_STEPS", "12")
    monkeypatch.setenv("CHORDAL_TOOL_MODULES", "a,b")
    s = Settings()
    assert (s.limits.max_steps, s.tools.tool_modules) == (12, ["a", "b"])


def test_overrides_are_flat_names():
    s = Settings.from_env({"CHORDAL_MAX_STEPS": "5"}, max_steps=7, llm="scripted:x.json")
    assert (s.limits.max_steps, s.model.llm) == (7, "scripted:x.json")
    with pytest.raises(ConfigError, match="CHORDAL_NONSENSE: Extra inputs"):
        Settings.from_env({}, nonsense=1)


@pytest.mark.parametrize(("var", "value", "message"), [
    ("CHORDAL_MAX_JSON_DEPTH", "2", "greater than or equal to 4"),
    ("CHORDAL_AGENT_RESULT_CHARS", "199", "greater than or equal to 200"),
    ("CHORDAL_CALLBACK_SECRETS", '{"a": "short"}', "at least 16 characters"),
    ("CHORDAL_HTTP_ALLOW", "ok.example.com,h:99999", "port must be a number"),
    ("CHORDAL_LOG_FORMAT", "xml", "'text' or 'json'"),
    ("CHORDAL_PRICES", "{", "not JSON"),
    ("CHORDAL_API_KEYS", "alice=short", "shorter than 16"),
])
def test_checks_stay_with_their_areas(var, value, message):
    with pytest.raises(ConfigError, match=f"{var}: .*{message}"):
        Settings.from_env({var: value})


def test_dotenv_values_are_read_and_named_in_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(envfile, "_FROM_FILE", {})
    (tmp_path / ".env").write_text("CHORDAL_RETENTION_S=120\nCHORDAL_MAX_STEP=3\n")
    for var in ("CHORDAL_RETENTION_S", "CHORDAL_MAX_STEP"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    with pytest.raises(ConfigError, match=r"CHORDAL_MAX_STEP \(from \.env\) \(did you mean "
                                          r"CHORDAL_MAX_STEPS"):
        Settings.from_env()
    (tmp_path / ".env").write_text("CHORDAL_RETENTION_S=120\n")
    monkeypatch.delenv("CHORDAL_MAX_STEP")
    assert Settings.from_env().store.retention_s == 120


def test_secrets_are_masked():
    s = Settings.from_env({
        "CHORDAL_REDIS_URL": "redis://user:hunter2hunter2@h:1/0",
        "CHORDAL_BROKER_URL": "amqp://guest:pass-word@mq//",
        "CHORDAL_API_KEYS": f"alice={SECRET}",
        "CHORDAL_API_KEY": SECRET, "CHORDAL_CALLBACK_SECRET": SECRET,
        "CHORDAL_CALLBACK_SECRETS": json.dumps({"bob": SECRET}),
        "CHORDAL_HTTP_SECRETS": json.dumps({"w": {"value": SECRET, "hosts": ["a.com"]}}),
        "CHORDAL_MCP_SERVERS": json.dumps({"fs": {"command": "npx", "env": {"T": SECRET}}}),
    })
    shown = {e.env: e.value for e in effective(s, {})}
    assert SECRET not in json.dumps(shown)
    assert "hunter2" not in json.dumps(shown) and "pass-word" not in json.dumps(shown)
    assert shown["CHORDAL_REDIS_URL"] == "redis://user:***@h:1/0"
    assert shown["CHORDAL_API_KEYS"] == {"alice": "***"}
    assert shown["CHORDAL_HTTP_SECRETS"] == {"w": {"value": "***", "hosts": ["a.com"]}}
    assert shown["CHORDAL_MCP_SERVERS"] == {"fs": {"command": "***", "env": {"T": "***"}}}
    assert (shown["CHORDAL_API_KEY"], shown["CHORDAL_CALLBACK_SECRETS"]) == ("***",
                                                                             {"bob": "***"})


def test_credentials_in_a_urls_query_are_masked_too():
    s = Settings.from_env({
        "CHORDAL_REDIS_URL": "rediss://h:6380/2?password=hunter2hunter2&ssl_cert_reqs=none",
        "CHORDAL_BROKER_URL": "redis://h:6379/1?db=1&token=pass-word#x"})
    shown = {e.env: e.value for e in effective(s, {})}
    assert shown["CHORDAL_REDIS_URL"] == "rediss://h:6380/2?password=***&ssl_cert_reqs=none"
    assert shown["CHORDAL_BROKER_URL"] == "redis://h:6379/1?db=1&token=***#x"


def _chordal_config(tmp_path, *args, env=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHORDAL_")}
    return subprocess.run([sys.executable, "-m", "planner.cli", "config", *args],
                          cwd=tmp_path, env={**environ, **(env or {})}, capture_output=True,
                          text=True, timeout=60, check=False)


def test_chordal_config_says_where_each_value_came_from(tmp_path):
    (tmp_path / ".env").write_text(f"CHORDAL_MAX_STEPS=9\nCHORDAL_CALLBACK_SECRET={SECRET}\n")
    done = _chordal_config(tmp_path, env={"CHORDAL_REDIS_URL": "redis://:pw@h:1/0"})
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if "CHORDAL_" in line}
    assert len(lines) == len(Settings.env_names())
    assert lines["CHORDAL_REDIS_URL"].endswith("redis://:***@h:1/0  (env)")
    assert lines["CHORDAL_MAX_STEPS"].split()[1:] == ["9", "(.env)"]
    assert lines["CHORDAL_CALLBACK_SECRET"].split()[1:] == ["***", "(.env)"]
    assert lines["CHORDAL_RETENTION_S"].split()[1:] == ["604800", "(default)"]
    assert "[store]" in done.stdout and "[tracing]" in done.stdout and SECRET not in done.stdout

    as_json = json.loads(_chordal_config(tmp_path, "--json").stdout)
    assert list(as_json) == list(Settings.areas())
    steps = next(e for e in as_json["limits"] if e["env"] == "CHORDAL_MAX_STEPS")
    assert steps | {"value": 9, "source": ".env", "file": ".env", "field": "max_steps"} == steps


def test_chordal_config_names_a_bad_variable(tmp_path):
    done = _chordal_config(tmp_path, env={"CHORDAL_MAX_STEPS": "lots"})
    assert done.returncode == 2 and "CHORDAL_MAX_STEPS" in done.stderr
    assert "Traceback" not in done.stderr

