"""Django's native pool: a dead or hung replica costs connect_timeout, once, and pools on
both aliases route, fall back and recover without probes adding pools or connections.

psycopg_pool's getconn() would wait its own 30 s; django-pgreplica gives a replica's pool
its connect_timeout (at app ready; here the fixture runs the same function after turning
the pool on) and drops a pool that failed, so a replica that comes back serves at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connections

from django_pgreplica.consistency import scope
from django_pgreplica.health import CircuitState, circuit_state, get_health
from django_pgreplica.routers import ReplicaRouter
from django_pgreplica.routing.pool import bound_configured_pools
from django_pgreplica.testing.plugin import wait_for_replay
from testproject.shop.models import Product
from tests.integration.routing.reads import timed_read
from tests.support import pgreplica_settings

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

SETTINGS = {
    "REPLICAS": ["replica"],
    "HEALTH_CHECK_INTERVAL": 0.1,
    "FAILURE_THRESHOLD": 3,
    "RAMP_SECONDS": 0,
}


@contextmanager
def replica_pool(pool: Any) -> Iterator[dict[str, Any]]:
    """The replica alias on a pool of its own (``pool``: its OPTIONS value), with a product
    "Lamp" replayed; yields the alias's OPTIONS as the router bounded them."""
    try:
        import psycopg_pool  # noqa: F401
    except ImportError:
        pytest.fail("needs psycopg_pool: pip install 'psycopg[pool]'", pytrace=False)
    with scope():
        Product.objects.create(name="Lamp", slug="lamp", price=10)
    wait_for_replay()
    conn = connections["replica"]
    conn.close()
    options = conn.settings_dict["OPTIONS"]
    conn.settings_dict["OPTIONS"] = {**options, "pool": pool}
    with pgreplica_settings(REPLICAS=["replica"]):
        assert bound_configured_pools() == ["replica"]
    try:
        yield conn.settings_dict["OPTIONS"]
    finally:
        conn.close()
        conn.close_pool()
        conn.settings_dict["OPTIONS"] = options


@pytest.fixture
def pooled(pgreplica_cluster: Any) -> Iterator[float]:
    """The replica alias on a pool of its own; yields its connect_timeout."""
    try:
        with replica_pool(True) as options:
            yield float(options["connect_timeout"])
    finally:
        if not pgreplica_cluster.is_running("replica1"):
            pgreplica_cluster.start("replica1")


@pytest.mark.parametrize("fault", ["kill", "sigstop"])
def test_a_dead_or_hung_replica_holds_a_fresh_pools_first_read_for_connect_timeout(
    pgreplica_cluster: Any, pooled: float, fault: str
) -> None:
    """A process whose pool is not open yet (just started, or its pool was dropped) meets
    a replica that refuses (killed) or never answers (SIGSTOP): without the bound, the
    first read waited psycopg_pool's 30 s."""
    pid = pgreplica_cluster.pid("replica1")
    assert pid is not None
    with pgreplica_settings(**SETTINGS):
        if fault == "kill":
            pgreplica_cluster.kill("replica1")
        else:
            os.kill(pid, signal.SIGSTOP)
        try:
            reads = [timed_read() for _ in range(10)]
        finally:
            if fault == "sigstop":
                os.kill(pid, signal.SIGCONT)
    (first, took), rest = reads[0], reads[1:]
    assert first == "default" and took < pooled + 1.0, reads[0]
    assert all(alias == "default" and t < 0.5 for alias, t in rest), rest


def test_a_pooled_replica_serves_at_once_when_it_comes_back(
    pgreplica_cluster: Any, pooled: float
) -> None:
    """psycopg_pool retries a lost server with a growing backoff (1, 2, 4, 8 s ...): left
    alone, the pool would make the first reads after recovery wait for its next attempt."""
    with pgreplica_settings(**SETTINGS):
        pgreplica_cluster.kill("replica1")
        assert timed_read()[0] == "default"
        time.sleep(8)  # the backoff's next attempt is now some 7 s away
        pgreplica_cluster.start("replica1")  # returns once it streams
        started = time.monotonic()
        reads = []
        while time.monotonic() - started < 3 and not any(a == "replica" for a, _ in reads):
            reads.append(timed_read())
            time.sleep(0.02)
    assert any(alias == "replica" for alias, _ in reads), reads
    assert all(took < 0.5 for _, took in reads), reads


APP_NAME = "pgreplica-pool-test"
POOL = {"min_size": 2, "max_size": 4}


@pytest.fixture
def pooled_everywhere(pgreplica_cluster: Any) -> Iterator[None]:
    """The primary and the replica alias each on a pool, as a 5.2 site turns it on; every
    connection of this process to them (probes included) carries APP_NAME."""
    with scope():
        Product.objects.create(name="Lamp", slug="lamp", price=10)
    wait_for_replay()
    saved = {}
    for alias in ("default", "replica"):
        conn = connections[alias]
        conn.close()
        saved[alias] = conn.settings_dict["OPTIONS"]
        conn.settings_dict["OPTIONS"] = {**saved[alias], "pool": POOL, "application_name": APP_NAME}
    with pgreplica_settings(REPLICAS=["replica"]):
        bound_configured_pools()
    try:
        yield
    finally:
        for alias, options in saved.items():
            conn = connections[alias]
            conn.close()
            conn.close_pool()
            conn.settings_dict["OPTIONS"] = options
        if not pgreplica_cluster.is_running("replica1"):
            pgreplica_cluster.start("replica1")


def backends(port: int) -> int:
    """Connections of this process's aliases open on the server at ``port``."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres") as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def read_and_write_from_threads(seconds: float) -> list[str]:
    """Four request threads, each a scope per read and a write now and then; returns the
    aliases that served the tokenless reads."""
    served: list[str] = []
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                served.append(timed_read()[0])
                if n == 0:
                    with scope():
                        Product.objects.filter(slug="lamp").update(stock=n)
                time.sleep(0.005)
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)
        finally:
            connections.close_all()  # a request thread gives its connections back

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return served


def test_pools_on_both_aliases_route_and_probes_open_no_pool_or_connection_of_their_own(
    pgreplica_cluster: Any, pooled_everywhere: None
) -> None:
    """One pool per alias per process whatever the probes do: the background health checks
    (every 0.1 s here) borrow from it or, for a failed replica, open one short-lived
    connection; a killed replica costs no read and its pool is rebuilt, not added to."""
    primary_port = pgreplica_cluster.primary.port
    replica_port = pgreplica_cluster.node("replica1").port
    pools = type(connections["default"])._connection_pools
    with pgreplica_settings(**SETTINGS):
        served = read_and_write_from_threads(2.0)
        assert served.count("replica") > len(served) * 0.9, served
        assert set(pools) == {"default", "replica"}
        assert 1 <= backends(replica_port) <= POOL["max_size"] + 1
        assert 1 <= backends(primary_port) <= POOL["max_size"] + 1

        pgreplica_cluster.kill("replica1")
        # Every read answered (timed_read checks the rows): the first ones chose the
        # replica and were rerun on the primary, the rest went there at once.
        served = read_and_write_from_threads(1.5)
        assert served[-20:] == ["default"] * 20, served
        pgreplica_cluster.start("replica1")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and timed_read()[0] != "replica":
            time.sleep(0.05)
        served = read_and_write_from_threads(2.0)
        assert served.count("replica") > len(served) * 0.9, served
        assert set(pools) == {"default", "replica"}
        time.sleep(0.5)  # the discarded pool closes in the background
        assert 1 <= backends(replica_port) <= POOL["max_size"] + 1
        assert 1 <= backends(primary_port) <= POOL["max_size"] + 1


@pytest.fixture
def one_connection_pool(pgreplica_cluster: Any) -> Iterator[float]:
    """The replica alias on a pool of one connection; yields the pool's (bounded) timeout."""
    with replica_pool({"min_size": 1, "max_size": 1}) as options:
        yield float(options["pool"]["timeout"])


@pytest.mark.parametrize("probe_due", [False, True], ids=["probed", "probe-due"])
def test_a_busy_pool_is_waited_for_and_its_replica_keeps_serving(
    one_connection_pool: float, probe_due: bool
) -> None:
    """Every pooled connection is in use (say, by requests that read, then wait on a slow
    write): getconn() times out although the replica answers. The read waits for a
    connection as psycopg_pool would, instead of counting the replica failed, opening its
    circuit and sending every read to the primary (which may be the server in trouble).
    Also when the replica's health check is due: the check's own getconn() times out too,
    and that says nothing of the server either."""
    timeout = one_connection_pool
    hold = timeout + 1.5
    holding = threading.Event()

    def request_holding_the_connection() -> None:
        try:
            with scope():
                assert ReplicaRouter().db_for_read(Product) == "replica"
                assert Product.objects.count() == 1
                holding.set()
                time.sleep(hold)
        finally:
            connections.close_all()  # the end of its request: back to the pool

    pools = type(connections["default"])._connection_pools
    with pgreplica_settings(**SETTINGS):
        holder = threading.Thread(target=request_holding_the_connection)
        holder.start()
        assert holding.wait(10)
        pool = pools["replica"]
        if probe_due:
            time.sleep(2 * SETTINGS["HEALTH_CHECK_INTERVAL"])
        alias, took = timed_read()
        holder.join()
        health = get_health("replica")
        assert alias == "replica", (alias, took)
        assert timeout < took < hold + 1.0, took
        assert not health.suspect and health.breaker.failures == 0
        assert circuit_state("replica") is CircuitState.CLOSED
        assert pools.get("replica") is pool  # kept, not discarded
