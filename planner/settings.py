"""Settings: one typed object read from ``CHORDAL_*`` environment variables, and from a
``.env`` file in the working directory (the environment wins)."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from planner.errors import ConfigError

PREFIX = "CHORDAL_"
#: The file of settings read from the working directory (``KEY=value`` lines).
ENV_FILE = ".env"
DAY = 86_400
# Defaults from the anthropic SDK's model list: a strong model plans, a fast one executes.
STRONG_MODEL = "claude-opus-5-5"
FAST_MODEL = "claude-haiku-5-5"
# USD per million tokens by model-id prefix, an estimate to override with CHORDAL_PRICES.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "claude-opus": {"input": 5.0, "output": 25.0, "cache_read": 0.5, "cache_write": 6.25},
    "claude-sonnet": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
    "claude-haiku": {"input": 1.0, "output": 5.0, "cache_read": 0.1, "cache_write": 1.25},
}


#: Variables that came from a ``.env`` file, and which one: errors about them say so.
_FROM_FILE: dict[str, str] = {}


def load_env_file(path: str | Path = ENV_FILE) -> dict[str, str]:
    """Put the variables of a ``.env`` file into ``os.environ``, except those already set
    there (the environment wins); return the ones it set.

    Into ``os.environ``, not only into :class:`Settings`: the model's key
    (``ANTHROPIC_API_KEY``) is read from the environment, and processes started from here
    (``chordal dev``'s worker) inherit it. Setting a variable only where it is missing
    makes a repeated load a no-op, so every entry point may call it."""
    p = Path(path)
    if not p.is_file():
        return {}
    loaded: dict[str, str] = {}
    for key, value in dotenv_values(p).items():
        if value is not None and key not in os.environ:
            os.environ[key] = loaded[key] = value
    _FROM_FILE.update({k: str(p) for k in loaded})
    return loaded


def _where(var: str) -> str:
    return f" (from {_FROM_FILE[var]})" if var in _FROM_FILE else ""


def parse_api_keys(text: str, source: str = "") -> dict[str, str]:
    """``name=secret`` pairs (comma- or newline-separated; ``#`` comments) -> {secret:
    name}. Names are the tenants; a secret must be unique and at least 16 characters."""
    where = f"{source}: " if source else ""
    keys: dict[str, str] = {}
    for raw in text.replace("\n", ",").split(","):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        name, sep, secret = item.partition("=")
        name, secret = name.strip(), secret.strip()
        if not sep or not name or not secret:
            raise ValueError(f"{where}each key is name=secret (an item has no name or no "
                             "secret; its text is not shown: it may be a secret)")
        if len(secret) < 16:
            raise ValueError(f"{where}the secret of {name!r} is shorter than 16 characters")
        if secret in keys:
            raise ValueError(f"{where}{name!r} and {keys[secret]!r} share a secret")
        keys[secret] = name
    return keys


def allow_entry(entry: str) -> tuple[str, int | None]:
    """One allow-list entry as (host pattern, port); port None: any port. ``host``,
    ``*.example.com``, ``*``, ``host:port``, ``[v6]`` and ``[v6]:port`` (a bare IPv6
    address, ``::1``, is a host with no port). ValueError says what is wrong."""
    text = entry.strip().lower()
    host, port = text, None
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or ":" not in inside:
            raise ValueError(f"{entry!r}: write an IPv6 address as [address] or "
                             "[address]:port")
        host, port = inside, (rest[1:] if rest else None)
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"{entry!r}: names no host")
    if port is None:
        return host, None
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65_535:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return host, int(port)


class HttpSecret(BaseModel):
    """A secret http_request may send in a header, and the hosts it may go to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str = Field(min_length=1, repr=False)
    # Scoped to hosts: a plan (written by a model, perhaps steered by what it read) must
    # not be able to send the secret anywhere else.
    hosts: list[str] = Field(min_length=1)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            allow_entry(entry)
        return value


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
    max_goal_bytes: int = Field(16_384, ge=64, description="Most bytes of a goal.")
    max_description_bytes: int = Field(4_096, ge=64, description="Most bytes of a step's "
                                                                 "description.")
    max_json_depth: int = Field(64, ge=4, le=1_000, description="Deepest nesting of a step's "
                                                                "args or output.")
    max_output_bytes: int = Field(1_048_576, ge=64, description="Most bytes of a step's "
                                                                "output (JSON); a bigger one "
                                                                "fails the step.")
    retention_s: int = Field(7 * DAY, ge=60, description="How long a run's record is kept.")
    retry_backoff_s: float = Field(1.0, ge=0, description="First retry delay of a transient "
                                                          "error; doubles each attempt.")
    retry_backoff_max_s: float = Field(60.0, ge=0, description="Longest retry delay.")
    visibility_timeout_s: int = Field(
        4 * 3_600, ge=10,
        description="Seconds before Redis redelivers an unacknowledged step; must exceed the "
                    "longest step plus its retry delays.")
    worker_prefetch: int = Field(1, ge=1, description="Messages a worker process reserves.")
    step_lease_s: float = Field(
        30.0, ge=1, description="Seconds a running step's lease lasts; its worker renews it "
                                "every third of that. A step whose worker died is re-driven "
                                "this long after its last renewal.")
    reconcile_interval_s: float = Field(
        5.0, ge=0, description="Seconds between the reconciler's passes (one worker's "
                               "reconciler is active at a time); 0 turns it off in this "
                               "worker.")
    dispatch_grace_s: float = Field(
        60.0, ge=1, description="Seconds past its due time a ready step may wait (with its "
                                "queue empty) before its message counts as lost, and a run "
                                "may stay quiet before it counts as stalled.")
    lost_grace_s: float = Field(
        10.0, ge=1, description="Seconds past its due time a ready step may go unstarted while "
                                "the broker holds no message for it (in no queue, reserved by "
                                "no worker: Redis broker only) before its message counts as "
                                "lost; never longer than CHORDAL_DISPATCH_GRACE_S.")
    metrics_port: int | None = Field(
        None, ge=1, le=65_535,
        description="Port of a worker's Prometheus /metrics (its main process merges its "
                    "pool processes' values); unset: no metrics server.")
    hard_limit_grace_s: float = Field(
        30.0, gt=0, description="Seconds after a step's soft time limit before its process "
                                "is killed (a tool that ignores the soft limit).")
    log_format: Literal["text", "json"] = Field(
        "text", description="Worker log lines: 'text', or 'json' (one object per line, "
                            "each line of a task carrying run_id, step_id and attempt).")
    trace_exporter: str | None = Field(
        None, description="module:function returning an OpenTelemetry SpanExporter; "
                          "without it, spans go over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT "
                          "is set, and nowhere otherwise.")

    # -- the HTTP service (chordal serve) and its clients --------------------------------
    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, repr=False,
        description="API keys of `chordal serve`: comma-separated name=secret pairs.")
    api_keys_file: str | None = Field(None, description="A file of name=secret lines (instead "
                                                        "of CHORDAL_API_KEYS).")
    max_request_bytes: int = Field(1_048_576, ge=1_024, description="Most bytes of an HTTP "
                                                                    "request body.")
    api_admins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="API key names (comma-separated) that see every "
                                          "run: other keys' and those made without one (CLI, "
                                          "Client).")
    api_max_streams: int = Field(
        20, ge=1, le=10_000, description="Event streams one API key may hold open at once on "
                                         "one server (each holds a Redis connection).")
    api_stream_pool: int = Field(
        200, ge=1, le=10_000, description="Event streams one server holds open at once, every "
                                          "key's together: the size of their own Redis "
                                          "connection pool (apart from ordinary requests'); "
                                          "a stream over it is a 503.")
    api_rate_limit_per_min: int | None = Field(
        60, ge=1, description="Runs one API key may create per minute (shared by every API "
                              "replica, in Redis); unset for no limit.")
    callback_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts a run's callback_url may name "
                                          "(comma-separated; `*.example.com` patterns; "
                                          "`host:port` for one port, else any port).")
    callback_secret: str | None = Field(None, repr=False,
                                        description="HMAC-SHA256 key of callback signatures.")
    callback_secrets: Annotated[dict[str, Annotated[str, Field(min_length=16)]], NoDecode] = Field(
        default_factory=dict, repr=False,
        description='HMAC-SHA256 keys per tenant (API key name), JSON {"name": "secret"}: '
                    "a tenant's runs are signed with its own, others with "
                    "CHORDAL_CALLBACK_SECRET. With several tenants give each one: a receiver "
                    "that trusts a shared key trusts every tenant's reports.")
    callback_attempts: int = Field(10, ge=1, le=100, description="Deliveries of a run's "
                                                                 "callback before it is "
                                                                 "given up.")
    callback_backoff_s: float = Field(
        5.0, gt=0, description="Seconds before a failed callback's second attempt; doubles "
                               "each attempt, up to 15 minutes.")
    api_url: str | None = Field(None, description="A Chordal server: the CLI talks to it "
                                                  "instead of Redis.")
    api_key: str | None = Field(None, repr=False, description="The secret the CLI sends to "
                                                              "CHORDAL_API_URL.")

    # -- built-in http_request, and tools from MCP servers -------------------------------
    http_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts http_request may call (comma-separated; `*.example.com` patterns, "
                    "`*` for any public host; `host:port` or `[v6]:port` for one port, a "
                    "host alone is every port); none by default. A host that resolves to a "
                    "private, loopback or link-local address only when named exactly.")
    http_secrets: Annotated[dict[str, HttpSecret], NoDecode] = Field(
        default_factory=dict, repr=False,
        description='Secrets http_request may put in headers (JSON): {"name": {"value": '
                    '"...", "hosts": ["api.example.com"]}}; a plan names them, never holds '
                    "them.")
    http_timeout_s: float = Field(30.0, gt=0, le=3_600, description="Most seconds an "
                                                                    "http_request call may "
                                                                    "take, redirects "
                                                                    "included.")
    http_max_bytes: int = Field(1_048_576, ge=1_024, description="Most bytes of a response "
                                                                 "body http_request reads.")
    mcp_servers: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict, repr=False,
        description='MCP servers whose tools to load (JSON, the mcpServers shape): {"name": '
                    '{"command": ..., "args": [...], "env": {...}}} or {"name": {"url": '
                    '"http://..."}}.')
    mcp_config: str | None = Field(None, description="A JSON file of MCP servers: an MCP "
                                                     "client's own (Claude Desktop, Cline, "
                                                     "VS Code...; docs/mcp.md); its relative "
                                                     "paths are from its folder.")

    # -- the model ---------------------------------------------------------------------
    llm: str | None = Field(None, description="'anthropic' (the default when ANTHROPIC_API_KEY "
                                              "is set) or 'scripted:PATH'.")
    # Temperatures are sent only when set: current models pick their own sampling, and the
    # SDK no longer takes the parameter (it goes as an extra body field).
    planner_model: str = Field(STRONG_MODEL, description="Model that plans.")
    planner_max_tokens: int = Field(8_192, ge=1)
    planner_temperature: float | None = Field(None, ge=0, le=1)
    replanner_model: str = Field(STRONG_MODEL, description="Model that replans.")
    replanner_max_tokens: int = Field(8_192, ge=1)
    replanner_temperature: float | None = Field(None, ge=0, le=1)
    executor_model: str = Field(FAST_MODEL, description="Model of `llm` steps.")
    executor_max_tokens: int = Field(2_048, ge=1)
    executor_temperature: float | None = Field(None, ge=0, le=1)
    synthesizer_model: str = Field(FAST_MODEL, description="Model that writes the answer.")
    synthesizer_max_tokens: int = Field(2_048, ge=1)
    synthesizer_temperature: float | None = Field(None, ge=0, le=1)
    plan_repairs: int = Field(2, ge=0, le=10, description="Times an invalid plan goes back "
                                                          "to the model for repair.")
    max_replans: int = Field(3, ge=0, le=100, description="Most replans of a run (a plan's "
                                                          "max_replans or a run option "
                                                          "overrides it).")
    llm_timeout_s: float = Field(120.0, gt=0, description="Seconds per model request.")
    llm_max_retries: int = Field(3, ge=0, description="SDK retries of 429/529/5xx/timeouts "
                                                      "(honouring retry-after) per attempt.")
    llm_rate_limit_per_min: int | None = Field(
        None, ge=1, description="Model calls per minute, shared by every worker.")
    budget_tokens: int | None = Field(None, ge=1, description="Per-run token budget.")
    budget_usd: float | None = Field(None, gt=0, description="Per-run budget in USD.")
    prices: Annotated[dict[str, dict[str, float]], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per million tokens by model-id prefix (JSON): input, output, "
                    "cache_read, cache_write.")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL, e.g. "
                             "redis://127.0.0.1:6379/0")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        schemes = ("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://")
        if value is not None and not value.startswith(schemes):
            raise ValueError("must be a redis://, rediss:// or amqp:// URL, e.g. "
                             "amqp://guest:guest@127.0.0.1//")
        return value

    @field_validator("prices", "http_secrets", "mcp_servers", "callback_secrets",
                     mode="before")
    @classmethod
    def _parse_prices(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc.msg}") from None
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_api_keys(value)
        return value

    @field_validator("callback_allow", "http_allow", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [h.strip().lower() for h in value.split(",") if h.strip()]
        for entry in value if isinstance(value, list) else []:
            allow_entry(str(entry))  # a bad entry stops the process at start, named
        return value

    @field_validator("tool_modules", "api_admins", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    def callback_key(self, owner: str | None) -> str | None:
        """The key a run's callbacks are signed with: its tenant's own. Once tenants have
        keys of their own, one without is not signed with the shared key (it could pass
        another tenant's check): None. Runs with no tenant (CLI, Client), and every run
        when no tenant has a key, use CHORDAL_CALLBACK_SECRET."""
        if owner is not None and self.callback_secrets:
            return self.callback_secrets.get(owner)
        return self.callback_secret

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment (with no ``environ``: ``os.environ`` after loading ``.env``
        from the working directory); an unknown or invalid ``CHORDAL_*`` variable is a
        :class:`ConfigError` naming it."""
        if environ is None:
            load_env_file()
        env = os.environ if environ is None else environ
        known = {PREFIX + name.upper() for name in cls.model_fields}
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hints.append(f"{name}{_where(name)} (did you mean {close[0]}?)" if close
                             else f"{name}{_where(name)}")
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
            raise ConfigError(f"{var}{_where(var)}: {first['msg']}") from None
