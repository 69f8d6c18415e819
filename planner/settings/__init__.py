"""Chordal's settings, by area (``settings.store.redis_url``), from the flat
``CHORDAL_*`` variables users set (``CHORDAL_REDIS_URL``) and a ``.env`` file."""

from planner.settings.area import DAY, PREFIX, Area, env_name
from planner.settings.core import Settings
from planner.settings.envfile import ENV_FILE, load_env_file
from planner.settings.llm import (
    DEFAULT_PRICES,
    FAST_MODEL,
    STRONG_MODEL,
    BudgetSettings,
    ModelSettings,
)
from planner.settings.running import (
    EngineSettings,
    LimitsSettings,
    MetricsSettings,
    StoreSettings,
    TracingSettings,
    WorkerSettings,
)
from planner.settings.service import ApiSettings, CallbackSettings, RemoteSettings
from planner.settings.tools import HttpSettings, McpSettings, ToolsSettings
from planner.settings.values import HttpSecret, allow_entry, parse_api_keys

__all__ = [
    "DAY", "DEFAULT_PRICES", "ENV_FILE", "FAST_MODEL", "PREFIX", "STRONG_MODEL", "ApiSettings",
    "Area", "BudgetSettings", "CallbackSettings", "EngineSettings", "HttpSecret",
    "HttpSettings", "LimitsSettings", "McpSettings", "MetricsSettings", "ModelSettings",
    "RemoteSettings", "Settings", "StoreSettings", "ToolsSettings", "TracingSettings",
    "WorkerSettings", "allow_entry", "env_name", "load_env_file", "parse_api_keys",
]
