"""Faults: a dead, stopped, blackholed or promoted replica, and a dead primary.

Every read here must succeed: a replica failure costs a fallback to the primary, never an
error. The cluster is restored after each test.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError, connections

from django_pgreplica import consistency
from django_pgreplica.clock import FakeClock
from django_pgreplica.consistency import scope
from django_pgreplica.health import circuit_state, get_health
from django_pgreplica.health.breaker import CircuitState
from django_pgreplica.routers import ReplicaRouter
from django_pgreplica.routing import connect, stats
from django_pgreplica.testing.plugin import wait_for_replay
from testproject.shop.models import Product
from tests.integration.routing.reads import timed_read
from tests.support import BlackholeProxy, pgreplica_settings

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture
def cluster(pgreplica_cluster: Any) -> Iterator[Any]:
    yield pgreplica_cluster
    for node in pgreplica_cluster.status():
        if node.role == "replica" and node.running and not node.in_recovery:
            pgreplica_cluster.rebuild(node.name)
        elif not node.running:
            pgreplica_cluster.start(node.name)
    pgreplica_cluster.wait_streaming(timeout=30)


def read_once() -> str:
    """One request's worth of reading; returns the alias that served it."""
    with scope():
        alias = ReplicaRouter().db_for_read(Product)
        names = list(Product.objects.values_list("name", flat=True))
        assert names == ["Lamp"]
        return alias


@pytest.fixture
def product() -> Product:
    with scope():  # as a request would: no write outside a scope for the router to chase
        product = Product.objects.create(name="Lamp", slug="lamp", price=10)
    wait_for_replay()
    return product


def test_killed_replica_costs_no_failed_read(cluster: Any, product: Product) -> None:
    with pgreplica_settings(REPLICAS=["replica"], HEALTH_CHECK_INTERVAL=60):
        assert read_once() == "replica"  # healthy, connection known good
        fallbacks_before = stats.fallbacks().get("replica", 0)
        # Hold a connection open across the kill: the next query on it hits a dead socket.
        with scope() as state:
            state.chosen = get_health("replica")
            connections["replica"].ensure_connection()
            killed_at = time.monotonic()
            cluster.kill("replica1")
            assert list(Product.objects.values_list("name", flat=True)) == ["Lamp"]
            first_fallback = time.monotonic() - killed_at
        for _ in range(10):
            assert read_once() == "default"
        assert stats.fallbacks().get("replica", 0) > fallbacks_before
    assert first_fallback < 1.0, first_fallback


def until(predicate: Any, timeout: float) -> float:
    """Seconds until ``predicate()`` holds (real time: a background probe must run)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - started


RECOVERY = {
    "REPLICAS": ["replica"],
    "FAILURE_THRESHOLD": 3,
    "RESET_TIMEOUT": 60.0,  # only damps flapping: a steady replica is back long before
    "HEALTH_CHECK_INTERVAL": 0.1,
    "RAMP_SECONDS": 0,
}


def test_a_stopped_replica_serves_again_within_a_few_probes_of_coming_back(
    cluster: Any, product: Product
) -> None:
    with pgreplica_settings(**RECOVERY):
        assert read_once() == "replica"
        cluster.stop("replica1")
        reads = [timed_read() for _ in range(10)]
        assert {alias for alias, _ in reads} == {"default"}
        until(lambda: circuit_state("replica") is CircuitState.OPEN, 5)  # probes count too
        cluster.start("replica1")
        back = until(lambda: read_once() == "replica", 5)
        assert back < 1.0, f"back after {back:.2f}s, RESET_TIMEOUT is 60s"
        assert circuit_state("replica") is CircuitState.CLOSED


def test_a_hung_replica_holds_one_read_for_connect_timeout_and_no_other(
    cluster: Any, product: Product, settings: Any
) -> None:
    """SIGSTOP: the host accepts TCP but never answers. The first read pays connect_timeout
    (2 s here); from then on the background prober pays it, not users."""
    pid = cluster.pid("replica1")
    assert pid is not None
    connections["replica"].close()
    with pgreplica_settings(**RECOVERY):
        os.kill(pid, signal.SIGSTOP)
        try:
            reads = [timed_read() for _ in range(20)]
        finally:
            os.kill(pid, signal.SIGCONT)
        timeout = float(settings.DATABASES["replica"]["OPTIONS"]["connect_timeout"])
        first, rest = reads[0], reads[1:]
        assert first[0] == "default" and first[1] < timeout + 1.0, first
        assert all(alias == "default" and took < 0.5 for alias, took in rest), rest
        until(lambda: read_once() == "replica", 10)


def test_other_replica_takes_over_when_one_dies(cluster: Any, product: Product) -> None:
    cluster.kill("replica2")
    served = {read_once() for _ in range(30)}
    assert served <= {"replica", "default"}
    assert "replica" in served


def test_promoted_replica_gets_no_reads(
    cluster: Any, product: Product, caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    with pgreplica_settings(HEALTH_CHECK_INTERVAL=0.05):
        cluster.promote("replica2")
        clock.advance(0.1)
        served = {read_once() for _ in range(30)}
        assert served == {"replica"}
        reason = get_health("replica2").reason()
        assert reason is not None and reason.startswith("promoted")
    assert any(r.levelname == "ERROR" and "replica2" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("connection", ["new", "kept"])
def test_a_replica_promoted_since_its_last_probe_is_left_when_it_connects(
    cluster: Any, product: Product, connection: str
) -> None:
    """PostgreSQL 14+ reports in_hot_standby when a connection starts, and on a kept one
    after the first query since the change: a replica promoted after its last probe, with
    the next one a minute away, gets no read on a new connection, and at most the one
    read that brings the report on a kept one (CONN_MAX_AGE)."""
    with pgreplica_settings(HEALTH_CHECK_INTERVAL=60):
        assert {read_once() for _ in range(20)} == {"replica", "replica2"}  # both probed
        cluster.promote("replica2")
        if connection == "new":
            connections["replica2"].close()  # a new request connects anew (CONN_MAX_AGE=0)
        served = [read_once() for _ in range(30)]
        reason = get_health("replica2").reason()
    assert served.count("replica2") <= (0 if connection == "new" else 1), served
    assert reason is not None and reason.startswith("promoted")


def test_a_standby_that_reports_primary_costs_one_probe(
    cluster: Any,
    product: Product,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pooler may replay a stale in_hot_standby=off to its clients: the probe it causes
    finds a standby, and the report is not looked at again."""
    monkeypatch.setattr(connect, "reports_primary", lambda raw: True)
    with pgreplica_settings(HEALTH_CHECK_INTERVAL=60):
        served = {read_once() for _ in range(20)}
        trusted = [get_health(alias).trusts_reports for alias in ("replica", "replica2")]
    assert served == {"replica", "replica2"}
    ignored = [r for r in caplog.records if "ignored from now on" in r.getMessage()]
    assert len(ignored) == 2  # once per replica
    assert trusted == [False, False]


def test_primary_down_reads_keep_working_from_replicas(cluster: Any, product: Product) -> None:
    assert read_once() in ("replica", "replica2")
    cluster.stop("primary")
    try:
        connections["default"].close()
        for _ in range(20):
            assert read_once() in ("replica", "replica2")
        assert connections["default"].connection is None  # never even connected
    finally:
        cluster.start("primary")


def test_primary_down_right_after_a_write_outside_any_request(
    cluster: Any, product: Product
) -> None:
    """The fixture's write is still to be checked (its position not yet read) when the
    primary goes: reading that position fails fast, and reads go on from the replicas."""
    cluster.stop("primary")
    try:
        for _ in range(5):
            assert read_once() in ("replica", "replica2")
    finally:
        cluster.start("primary")


def read_counted() -> set[str]:
    """Read in the current scope; the ``alias/reason`` counts it added (a read rerun
    elsewhere counts the router's decision and then the rerun)."""
    before = stats.reads()
    assert list(Product.objects.values_list("name", flat=True)) == ["Lamp"]
    return {"/".join(key) for key, n in stats.reads().items() if n > before.get(key, 0)}


LAGGING_ONE_REPLICA = {
    "REPLICAS": ["replica"],
    "MAX_LAG_SECONDS": 0.5,
    "HEALTH_CHECK_INTERVAL": 0.1,
}


def make_replica_lag(cluster: Any) -> None:
    """Pause replay on replica1, write, and let the replay delay pass MAX_LAG_SECONDS."""
    cluster.pause_replay("replica1")
    cluster.execute("primary", "CREATE TABLE IF NOT EXISTS lag_t (id int)", dbname=database_name())
    cluster.execute("primary", "INSERT INTO lag_t VALUES (1)", dbname=database_name())
    time.sleep(1.0)  # PostgreSQL's own replay delay: a real sleep


def test_primary_down_a_lagging_replica_serves_readers_that_never_wrote(
    cluster: Any, product: Product, caplog: pytest.LogCaptureFixture
) -> None:
    with pgreplica_settings(**LAGGING_ONE_REPLICA):
        make_replica_lag(cluster)
        with scope():
            assert ReplicaRouter().db_for_read(Product) == "default"  # lagging: primary
        cluster.stop("primary")
        connections["default"].close()
        try:
            for _ in range(10):
                with scope():
                    assert read_counted() == {"replica/last-resort"}
        finally:
            cluster.start("primary")
            cluster.resume_replay("replica1")
    assert any("as a last resort" in r.getMessage() for r in caplog.records)


def test_primary_down_a_client_whose_write_is_not_replayed_gets_an_error_not_stale_data(
    cluster: Any, product: Product
) -> None:
    with pgreplica_settings(**LAGGING_ONE_REPLICA):
        cluster.pause_replay("replica1")
        with scope() as writer:
            Product.objects.create(name="Fresh", slug="fresh", price=1)
            token = consistency.outgoing_token(writer)
        cluster.stop("primary")
        connections["default"].close()
        try:
            with scope(token), pytest.raises(OperationalError):
                list(Product.objects.values_list("name", flat=True))
        finally:
            cluster.start("primary")
            cluster.resume_replay("replica1")


def test_primary_killed_under_an_open_connection_a_read_is_rerun_on_a_replica(
    cluster: Any, product: Product
) -> None:
    with pgreplica_settings(**LAGGING_ONE_REPLICA):
        make_replica_lag(cluster)
        try:
            with scope():
                assert ReplicaRouter().db_for_read(Product) == "default"
                connections["default"].ensure_connection()  # a persistent connection
                cluster.kill("primary")
                # the router chose the primary; its dead connection made it a last resort
                assert read_counted() == {"default/no-replica", "replica/last-resort"}
        finally:
            cluster.start("primary")
            cluster.resume_replay("replica1")


@pytest.fixture
def proxied_replica(settings: Any) -> Iterator[BlackholeProxy]:
    """Point the ``replica`` alias through a proxy that can be told to drop everything."""
    config = settings.DATABASES["replica"]
    proxy = BlackholeProxy(int(config["PORT"]))
    original = config["PORT"]
    connections["replica"].close()
    config["PORT"] = connections["replica"].settings_dict["PORT"] = str(proxy.port)
    try:
        yield proxy
    finally:
        connections["replica"].close()
        config["PORT"] = connections["replica"].settings_dict["PORT"] = original
        proxy.close()


def test_blackholed_replica_holds_a_request_no_longer_than_connect_timeout(
    proxied_replica: BlackholeProxy, product: Product
) -> None:
    timeout = float(connections["replica"].settings_dict["OPTIONS"]["connect_timeout"])
    with pgreplica_settings(REPLICAS=["replica"], HEALTH_CHECK_INTERVAL=0.05):
        assert read_once() == "replica"
        connections["replica"].close()
        with proxied_replica.blackhole():
            results: list[tuple[str, float]] = []

            def one() -> None:
                started = time.monotonic()
                try:
                    results.append((read_once(), time.monotonic() - started))
                finally:
                    connections.close_all()  # this thread's own connections

            worker = threading.Thread(target=one)
            worker.start()
            worker.join(timeout * 3)
            assert not worker.is_alive(), "request hung past the connect timeout"
        alias, took = results[0]
        assert alias == "default"
        assert took < timeout + 1.0, took


@pytest.fixture
def impatient_replica(cluster: Any) -> Iterator[None]:
    """replica1 cancels conflicting queries at once instead of after 30 s."""
    cluster.execute("replica1", "ALTER SYSTEM SET max_standby_streaming_delay = 0")
    cluster.execute("replica1", "SELECT pg_reload_conf()")
    try:
        yield
    finally:
        cluster.execute("replica1", "ALTER SYSTEM RESET max_standby_streaming_delay")
        cluster.execute("replica1", "SELECT pg_reload_conf()")


def test_a_read_cancelled_by_a_recovery_conflict_is_served_by_the_primary(
    cluster: Any, impatient_replica: None, product: Product
) -> None:
    cluster.execute("primary", "CREATE TABLE conflict_t (id int)", dbname=database_name())
    cluster.execute("primary", "INSERT INTO conflict_t VALUES (1)", dbname=database_name())
    wait_for_replay()
    fallbacks_before = stats.fallbacks().get("replica", 0)
    truncate = threading.Timer(
        0.5, cluster.execute, ("primary", "TRUNCATE conflict_t"), {"dbname": database_name()}
    )
    truncate.start()
    try:
        with connections["replica"].cursor() as cursor:
            # Holds a lock on conflict_t for 3 s; replaying the TRUNCATE cancels it.
            cursor.execute("SELECT pg_sleep(3), count(*) FROM conflict_t")
            rows = cursor.fetchall()
    finally:
        truncate.join()
        cluster.execute("primary", "DROP TABLE conflict_t", dbname=database_name())
    assert [count for _, count in rows] == [0]  # the primary's answer, after the TRUNCATE
    assert stats.fallbacks().get("replica", 0) == fallbacks_before + 1
    assert get_health("replica").breaker.failures == 0  # the replica itself is fine


def database_name() -> str:
    return str(connections["default"].settings_dict["NAME"])


def test_persistent_connection_with_health_checks_to_a_killed_replica(
    cluster: Any, product: Product
) -> None:
    """CONN_MAX_AGE + CONN_HEALTH_CHECKS: Django re-checks the kept connection at its first
    use in a request, and reconnecting would fail outside the router: the router checks it."""
    config = connections["replica"].settings_dict
    saved = config["CONN_MAX_AGE"], config["CONN_HEALTH_CHECKS"]
    config["CONN_MAX_AGE"], config["CONN_HEALTH_CHECKS"] = 60, True
    try:
        with pgreplica_settings(REPLICAS=["replica"], HEALTH_CHECK_INTERVAL=60):
            connections["replica"].close()
            assert read_once() == "replica"
            connections["replica"].close_if_unusable_or_obsolete()  # what request end does
            assert connections["replica"].connection is not None  # kept for the next request
            cluster.kill("replica1")
            assert read_once() == "default"
    finally:
        connections["replica"].close()
        config["CONN_MAX_AGE"], config["CONN_HEALTH_CHECKS"] = saved
