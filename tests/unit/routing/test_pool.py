"""Pooled replicas wait at most their connect_timeout; checks W011 and W012."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from django_pgreplica.checks import check_replica_waits
from django_pgreplica.db import pool_refused
from django_pgreplica.health.probe import PROBE_CONNECT_TIMEOUT
from django_pgreplica.routing.pool import (
    bound_replica_pools,
    bounded_pool,
    bounded_timeout,
    busy_wait,
    connect_timeout,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(2, 2), ("3", 3), (2.9, 2), (1, 2), (0, None), (-1, None), (None, None), ("soon", None)],
)
def test_connect_timeout_as_libpq_applies_it(value: Any, seconds: int | None) -> None:
    # libpq: at least 2 s; zero, negative or unset waits indefinitely
    assert connect_timeout({"connect_timeout": value}) == seconds


def test_pool_timeout_follows_connect_timeout() -> None:
    assert bounded_pool({"connect_timeout": 3, "pool": True}) == {
        "timeout": 3.0,
        "reconnect_timeout": 3.0,
    }
    assert bounded_pool({"connect_timeout": 2, "pool": {"max_size": 8}}) == {
        "max_size": 8,
        "timeout": 2.0,
        "reconnect_timeout": 2.0,
    }
    # without connect_timeout (W004), the background prober's fallback
    assert bounded_timeout({}) == PROBE_CONNECT_TIMEOUT


def test_an_explicit_pool_timeout_is_kept() -> None:
    options = {"connect_timeout": 2, "pool": {"timeout": 7, "reconnect_timeout": 60}}
    assert bounded_pool(options) is None
    assert bounded_pool({"connect_timeout": 2}) is None
    assert bounded_pool({"connect_timeout": 2, "pool": False}) is None


def test_a_busy_pool_is_waited_for_up_to_psycopg_pools_own_timeout() -> None:
    # the router's bound (2 s) was waited; psycopg_pool alone would have waited 30 s
    bounded = {"connect_timeout": 2, "pool": bounded_pool({"connect_timeout": 2, "pool": True})}
    assert busy_wait(bounded, bounded_by_router=True) == 28.0
    # the project's, even one equal to the router's bound
    assert busy_wait(bounded, bounded_by_router=False) == 0.0
    assert busy_wait({"connect_timeout": 2}, bounded_by_router=True) == 0.0  # not pooled


def test_pool_refusals_are_told_from_server_errors() -> None:
    from django.db import OperationalError
    from psycopg_pool import PoolClosed, PoolTimeout

    for refusal in (PoolTimeout("couldn't get a connection after 2.00 sec"), PoolClosed("closed")):
        wrapped = OperationalError(str(refusal))
        wrapped.__cause__ = refusal  # as Django's wrap_database_errors raises it
        assert pool_refused(refusal) and pool_refused(wrapped)
    assert not pool_refused(OperationalError("connection refused"))


def test_only_replica_pools_change_and_shared_dicts_stay_untouched() -> None:
    shared_pool = {"max_size": 4}
    shared_options = {"connect_timeout": 2, "pool": shared_pool}
    databases: dict[str, Any] = {
        "default": {"OPTIONS": shared_options},
        "replica": {"OPTIONS": shared_options},
        "direct": {"OPTIONS": {"connect_timeout": 2}},
    }
    assert bound_replica_pools(databases, ["replica", "direct", "ghost"]) == ["replica"]
    assert databases["replica"]["OPTIONS"]["pool"] == {
        "max_size": 4,
        "timeout": 2.0,
        "reconnect_timeout": 2.0,
    }
    assert databases["default"]["OPTIONS"] is shared_options
    assert shared_pool == {"max_size": 4}  # the primary's pool keeps psycopg_pool's 30 s
    assert bound_replica_pools(databases, ["replica"]) == []  # once is enough


def replica_with(**changes: Any) -> override_settings:
    databases = {alias: dict(config) for alias, config in settings.DATABASES.items()}
    options = dict(databases["replica"].get("OPTIONS") or {})
    options.update(changes.pop("OPTIONS", {}))
    databases["replica"].update(changes, OPTIONS=options)
    return override_settings(DATABASES=databases)


def ids() -> list[str]:
    return [str(m.id) for m in check_replica_waits() if "'replica'" in m.msg and m.hint]


@pytest.mark.parametrize(
    ("timeout", "warned"), [(30, True), (2, False), (2.0, False), (1, False), ("x", True)]
)
def test_w011_a_pool_timeout_longer_than_connect_timeout(timeout: Any, warned: bool) -> None:
    pool = {"timeout": timeout}
    options = {"connect_timeout": 2, "pool": pool, "tcp_user_timeout": 10000}
    with replica_with(OPTIONS=options):
        assert ("django_pgreplica.W011" in ids()) is warned


def test_w011_not_for_a_pool_without_timeout() -> None:
    with replica_with(OPTIONS={"connect_timeout": 2, "pool": True, "tcp_user_timeout": 5000}):
        assert ids() == []


@pytest.mark.parametrize(
    ("changes", "warned"),
    [
        ({"CONN_MAX_AGE": 60}, True),
        ({"CONN_MAX_AGE": None}, True),
        ({"CONN_MAX_AGE": 60, "OPTIONS": {"tcp_user_timeout": 10000}}, False),
        ({"CONN_MAX_AGE": 60, "OPTIONS": {"tcp_user_timeout": 0}}, True),
        ({"CONN_MAX_AGE": 60, "OPTIONS": {"tcp_user_timeout": 600000}}, True),
        ({"CONN_MAX_AGE": 60, "OPTIONS": {"tcp_user_timeout": "soon"}}, True),
        ({"OPTIONS": {"pool": True}}, True),
        ({"OPTIONS": {"pool": {"min_size": 2}, "tcp_user_timeout": "5000"}}, False),
        ({"CONN_MAX_AGE": 0}, False),  # a connection per request: connect_timeout bounds it
    ],
)
def test_w012_persistent_connections_without_tcp_user_timeout(
    changes: dict[str, Any], warned: bool
) -> None:
    with replica_with(**changes):
        assert ("django_pgreplica.W012" in ids()) is warned
