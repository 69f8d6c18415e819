"""Settings: one typed object read from ``CHORDAL_*`` environment variables."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from planner.errors import ConfigError

PREFIX = "CHORDAL_"
DAY = 86_400


class Settings(BaseSettings):
    """Everything Chordal reads from the environment. Build it with :meth:`from_env`."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid", frozen=True)

    redis_url: str = Field("redis://127.0.0.1:6379/0",
                           description="Run store and Celery results (and the broker by "
                                       "default).")
    broker_url: str | None = Field(None, description="Celery broker if not the Redis above, "
                                                     "e.g. amqp://guest:guest@127.0.0.1//")
    tool_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated modules whose tools to load.")
    max_steps: int = Field(200, ge=1, description="Most steps a plan may have.")
    max_args_bytes: int = Field(65_536, ge=64, description="Most bytes of JSON args a step "
                                                           "may have.")
    retention_s: int = Field(7 * DAY, ge=60, description="How long a run's record is kept.")
    retry_backoff_s: float = Field(1.0, ge=0, description="First retry delay of a transient "
                                                          "error; doubles each attempt.")
    retry_backoff_max_s: float = Field(60.0, ge=0, description="Longest retry delay.")
    visibility_timeout_s: int = Field(
        4 * 3_600, ge=10,
        description="Seconds before Redis redelivers an unacknowledged step; must exceed the "
                    "longest step plus its retry delays.")
    worker_prefetch: int = Field(1, ge=1, description="Messages a worker process reserves.")

    @field_validator("tool_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment; an unknown or invalid ``CHORDAL_*`` variable is a
        :class:`ConfigError` naming it."""
        env = os.environ if environ is None else environ
        known = {PREFIX + name.upper() for name in cls.model_fields}
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
            raise ConfigError(f"unknown setting {', '.join(hints)}; known settings: "
                              f"{', '.join(sorted(known))}")
        values: dict[str, Any] = {
            name: env[PREFIX + name.upper()] for name in cls.model_fields
            if PREFIX + name.upper() in env
        }
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            var = PREFIX + str(first["loc"][0]).upper() if first["loc"] else "CHORDAL_*"
            raise ConfigError(f"{var}: {first['msg']}") from None
