"""The areas of the HTTP side: the service (``chordal serve``), the callbacks a run's
report goes out by, and the server a CLI talks to."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from planner.settings.area import Area, unset_means
from planner.settings.values import ApiKeys, CommaList, HostList, JsonText


class ApiSettings(Area):
    """The HTTP service (`chordal serve`): its keys and what one key may do."""

    api_keys: ApiKeys = Field(
        default_factory=dict, repr=False,
        description="API keys of `chordal serve`: comma-separated name=secret pairs.")
    api_keys_file: str | None = Field(None, description="A file of name=secret lines (instead "
                                                        "of CHORDAL_API_KEYS).")
    max_request_bytes: int = Field(1_048_576, ge=1_024, description="Most bytes of an HTTP "
                                                                    "request body.")
    api_admins: CommaList = Field(
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


class CallbackSettings(Area):
    """Callbacks: where a run's report may be POSTed, and how it is signed and retried."""

    callback_allow: HostList = Field(
        default_factory=list, description="Hosts a run's callback_url may name "
                                          "(comma-separated; `*.example.com` patterns; "
                                          "`host:port` or `[v6]:port` for one port, a host "
                                          "alone is any port); on the API and the workers.",
        json_schema_extra=unset_means("no host: no callbacks"))
    callback_secret: str | None = Field(None, repr=False,
                                        description="HMAC-SHA256 key of callback signatures; "
                                                    "on the workers.")
    callback_secrets: Annotated[dict[str, Annotated[str, Field(min_length=16)]], JsonText] = Field(
        default_factory=dict, repr=False,
        description='HMAC-SHA256 keys per tenant (API key name), JSON {"name": "secret"}: '
                    "a tenant's runs are signed with its own, others with "
                    "CHORDAL_CALLBACK_SECRET. With several tenants give each one: a receiver "
                    "that trusts a shared key trusts every tenant's reports. Once set, "
                    "tenants not in it get no callbacks; on the workers.")
    callback_attempts: int = Field(10, ge=1, le=100, description="Deliveries of a run's "
                                                                 "callback before it is "
                                                                 "given up.")
    callback_backoff_s: float = Field(
        5.0, gt=0, description="Seconds before a failed callback's second attempt; doubles "
                               "each attempt, up to 15 minutes.")

    def callback_key(self, owner: str | None) -> str | None:
        """The key a run's callbacks are signed with: its tenant's own. Once tenants have
        keys of their own, one without is not signed with the shared key (it could pass
        another tenant's check): None. Runs with no tenant (CLI, Client), and every run
        when no tenant has a key, use CHORDAL_CALLBACK_SECRET."""
        if owner is not None and self.callback_secrets:
            return self.callback_secrets.get(owner)
        return self.callback_secret


class RemoteSettings(Area):
    """A Chordal server the CLI talks to instead of Redis."""

    api_url: str | None = Field(None, description="A Chordal server: the CLI talks to it "
                                                  "instead of Redis.")
    api_key: str | None = Field(None, repr=False, description="The secret the CLI sends to "
                                                              "CHORDAL_API_URL.")
