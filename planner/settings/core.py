"""Settings: one typed object read from ``CHORDAL_*`` environment variables, and from a
``.env`` file in the working directory (the environment wins), grouped by area.

Code reads ``settings.<area>.<field>`` (``settings.store.redis_url``); users set the
flat names they always have (``CHORDAL_REDIS_URL``): a field's variable is the prefix and
its name, whichever area holds it, so no name is set twice and moving a field between
areas renames nothing users see."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any, Self

from pydantic import Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from planner.errors import ConfigError
from planner.settings import envfile
from planner.settings.area import PREFIX, Area, env_name
from planner.settings.llm import BudgetSettings, ModelSettings
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


class Settings(BaseSettings):
    """Everything Chordal reads from the environment, by area. Build it with
    :meth:`from_env`."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    store: StoreSettings = Field(default_factory=StoreSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    tools: ToolsSettings = Field(default_factory=ToolsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    mcp: McpSettings = Field(default_factory=McpSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    remote: RemoteSettings = Field(default_factory=RemoteSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @property
    def broker(self) -> str:
        return self.worker.broker_url or self.store.redis_url

    @model_validator(mode="after")
    def _cluster_needs_broker(self) -> Self:
        # Celery's Redis transport speaks to one node: a cluster cannot carry the messages.
        if self.store.cluster and self.worker.broker_url is None:
            raise ValueError("CHORDAL_REDIS_URL is a Redis Cluster, which cannot be Celery's "
                             "broker: set CHORDAL_BROKER_URL too (e.g. "
                             "amqp://guest:guest@127.0.0.1//)")
        return self

    @classmethod
    def areas(cls) -> dict[str, type[Area]]:
        """Each area's name and model, in order."""
        return {name: f.annotation for name, f in cls.model_fields.items()
                if isinstance(f.annotation, type) and issubclass(f.annotation, Area)}

    @classmethod
    def env_names(cls) -> dict[str, tuple[str, str]]:
        """Every ``CHORDAL_*`` variable -> (area, field)."""
        return {env_name(field): (area, field)
                for area, model in cls.areas().items() for field in model.model_fields}

    @classmethod
    def grouped(cls, environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """The ``CHORDAL_*`` variables of ``environ`` by area and field (others ignored)."""
        values: dict[str, dict[str, str]] = {area: {} for area in cls.areas()}
        for var, (area, field) in cls.env_names().items():
            if var in environ:
                values[area][field] = environ[var]
        return values

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # ``Settings()`` reads the flat names too (pydantic-settings' own nesting would
        # want CHORDAL_STORE__REDIS_URL); :meth:`from_env` is the checked way in.
        return init_settings, _FlatEnvironment(settings_cls)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment (with no ``environ``: ``os.environ`` after loading ``.env``
        from the working directory); an unknown or invalid ``CHORDAL_*`` variable is a
        :class:`ConfigError` naming it. ``overrides`` are fields by their flat names
        (``redis_url=...``)."""
        if environ is None:
            envfile.load_env_file()
        env = os.environ if environ is None else environ
        known = cls.env_names()
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hints.append(f"{name}{envfile.where(name)} (did you mean {close[0]}?)"
                             if close else f"{name}{envfile.where(name)}")
            raise ConfigError(f"unknown setting {', '.join(hints)}; known settings: "
                              f"{', '.join(sorted(known))}")
        values: dict[str, dict[str, Any]] = dict(cls.grouped(env))
        for name, value in overrides.items():
            if env_name(name) not in known:  # as pydantic says it of an unknown field
                raise ConfigError(f"{env_name(name)}: Extra inputs are not permitted")
            area, field = known[env_name(name)]
            values[area][field] = value
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = first["loc"]
            var = env_name(str(loc[1])) if len(loc) > 1 else "CHORDAL_*"
            raise ConfigError(f"{var}{envfile.where(var)}: {first['msg']}") from None


class _FlatEnvironment(PydanticBaseSettingsSource):
    """``os.environ``'s ``CHORDAL_*`` variables, by area."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every area at once

    def __call__(self) -> dict[str, Any]:
        return {area: fields for area, fields in Settings.grouped(os.environ).items()
                if fields}
