"""CHORDAL_REDIS_URL as a Redis Cluster's: what it accepts, and the one line it stops a
process with when it cannot be used."""

from __future__ import annotations

import pytest

from planner.errors import ConfigError
from planner.settings import Settings
from planner.settings.redis_url import ClusterURL, parse_cluster
from planner.settings.report import mask_url

AMQP = "amqp://guest:guest@127.0.0.1//"


def settings(url: str, broker: str | None = AMQP) -> Settings:
    env = {"CHORDAL_REDIS_URL": url}
    if broker:
        env["CHORDAL_BROKER_URL"] = broker
    return Settings.from_env(env)


def test_a_cluster_url_names_its_startup_nodes_and_credentials() -> None:
    assert parse_cluster("redis+cluster://10.0.0.1:6379,10.0.0.2:7000") == ClusterURL(
        (("10.0.0.1", 6379), ("10.0.0.2", 7000)))
    assert parse_cluster("rediss+cluster://app:p%40ss@h:1,[::1]:2/0") == ClusterURL(
        (("h", 1), ("::1", 2)), username="app", password="p@ss", tls=True)
    store = settings("redis+cluster://h:1").store
    assert store.cluster and store.result_backend is None
    plain = settings("redis://h:1/3", broker=None).store
    assert not plain.cluster and plain.result_backend == "redis://h:1/3"


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster://h", "'h' is not a host:port of a cluster node"),
    ("redis+cluster://h:1,", "'(empty)' is not a host:port"),
    ("redis+cluster://h:99999", "'h:99999' is not a host:port"),
    ("redis+cluster://h:1/2", "a Redis Cluster has only database 0, not /2"),
    ("redis+cluster://h:1?ssl=true", "takes no ?options"),
    ("cluster://h:1", "must be a redis://, rediss:// or unix:// URL"),
])
def test_a_bad_cluster_url_stops_with_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="CHORDAL_REDIS_URL") as err:
        settings(url)
    assert says in str(err.value)


def test_a_cluster_cannot_be_the_broker() -> None:
    with pytest.raises(ConfigError, match="set CHORDAL_BROKER_URL too"):
        settings("redis+cluster://h:1", broker=None)


def test_a_cluster_urls_password_is_masked() -> None:
    assert "pw" not in mask_url("redis+cluster://app:pw@h:1,g:2")


def test_a_cluster_that_does_not_answer_is_one_clear_line() -> None:
    from planner.cli.embedded import require_reachable
    from planner.errors import Unavailable
    from tests.redis_server import free_port

    with pytest.raises(Unavailable, match="no startup node of the Redis Cluster answered"):
        require_reachable(settings(f"redis+cluster://127.0.0.1:{free_port()}"))
