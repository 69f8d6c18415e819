import pytest

from planner.errors import ConfigError
from planner.settings import Settings


def test_defaults():
    s = Settings.from_env({})
    assert s.store.redis_url == "redis://127.0.0.1:6379/0"
    assert s.broker == s.store.redis_url
    assert s.tools.tool_modules == []
    assert (s.limits.max_steps, s.limits.max_args_bytes) == (200, 65536)
    assert s.store.retention_s == 7 * 86400


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
