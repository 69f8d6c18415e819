"""Which door a command goes through: the server at ``CHORDAL_API_URL`` (with
``CHORDAL_API_KEY``) when it is set, else Redis: the same commands, the same output, no Redis
access or tool modules needed on a machine that talks to a server."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from typing_extensions import TypeIs

from planner.cli.app import err, registry, settings
from planner.errors import NoWorkerError

if TYPE_CHECKING:
    from planner.cli.follow import AnyClient
    from planner.client import Client
    from planner.remote import RemoteClient


def connect() -> AnyClient:
    """The server at CHORDAL_API_URL when it is set, else Redis (CHORDAL_REDIS_URL)."""
    # Imported here: `chordal --help`, `validate` and `schema` need neither client.
    s = settings()
    if s.remote.api_url:
        from planner.remote import RemoteClient

        return RemoteClient.from_settings(s)
    from planner.client import Client

    return Client(s, registry(s))


def connected() -> AnyClient:
    """:func:`connect`, and fail at once with one line when nothing answers there."""
    client = connect()
    client.ping()
    return client


def over_http(client: AnyClient) -> TypeIs[RemoteClient]:
    """Whether ``client`` talks to a Chordal server (it was loaded if so: no import)."""
    remote = sys.modules.get("planner.remote")
    return remote is not None and isinstance(client, remote.RemoteClient)


def warn_missing_workers(client: Client, queues: set[str]) -> None:
    """Say so, instead of waiting in silence; the run is queued all the same."""
    try:
        client.require_queues(queues)
    except NoWorkerError as exc:
        err.print(f"warning: {exc}; the run waits until one does.", highlight=False,
                  markup=False)


def warn_unready(client: RemoteClient) -> None:
    """Over HTTP: the server's /readyz says what is missing (no worker, no Redis)."""
    why = client.ready()
    if why:
        err.print(f"warning: the server is not ready: {why}; the run waits until it is.",
                  highlight=False, markup=False)
