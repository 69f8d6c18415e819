"""docs/configuration.md is written from the settings' models: it must say what they do."""

from pathlib import Path

from planner.settings import Settings
from planner.settings.reference import markdown

DOC = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_configuration_doc_is_current():
    assert DOC.read_text("utf-8") == markdown(), (
        "docs/configuration.md is stale: python -m planner.settings.reference > "
        "docs/configuration.md")


def test_every_setting_is_documented_with_a_meaning():
    text = DOC.read_text("utf-8")
    for var in Settings.env_names():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{var}` |"))
        assert row.split(" | ")[2].strip(" |"), var
