"""Chordal over HTTP: clients of ``chordal serve`` for apps that have neither Redis access
nor the tool modules (``Client.from_url``, ``AsyncClient``).

The methods are :class:`~planner.client.Client`'s (``submit``, ``submit_goal``,
``report``, ``wait``, ``events``, ``runs``, ``cancel``, ``approve``, ``reject``,
``resume``, ``retry``) and return the same typed records; a run's options are one
:class:`~planner.options.RunOptions`. The server validates plans (with its tool modules),
so an invalid plan raises ``PlanInvalid`` with every problem, as the Redis client does;
every error of the API's ``{"error": {...}}`` shape comes back as the :mod:`planner.errors`
class it names. ``wait`` and ``events`` follow the run's event stream (server-sent events)
and reconnect where they stopped (``Last-Event-ID``), so a server restart or a dropped
connection loses no event.

The API key goes in the ``Authorization`` header, never in a URL, and is never logged.

Inside, httpx's way: ``_wire`` (URLs, bodies, answers), ``_sse`` (the event stream's
format), ``_core`` (the retry and follow decisions, sans I/O), ``_operations`` (each method
as effects), and two thin shells that perform them, ``_sync`` and ``_async``.
"""

from planner.options import RunOptions
from planner.remote._async import AsyncClient
from planner.remote._sync import RemoteClient
from planner.remote._wire import base_url, error_from

__all__ = ["AsyncClient", "RemoteClient", "RunOptions", "base_url", "error_from"]
