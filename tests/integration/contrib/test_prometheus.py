"""Prometheus metrics on django-prometheus's /metrics, against the real cluster."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from django_pgreplica.consistency import scope
from django_pgreplica.contrib import prometheus as metrics
from django_pgreplica.health import get_health
from django_pgreplica.monitoring import PrimaryObservation, Report, Status, Thresholds
from django_pgreplica.routing import stats
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from testproject.shop.models import Product
from tests.monitoring_support import primary_unreachable, write_rows
from tests.support import pgreplica_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape() -> Samples:
    response = Client().get("/metrics")
    assert response.status_code == 200
    return parse(response.content.decode())


@pytest.fixture
def live() -> Iterator[None]:
    """The collector registered in prometheus_client's REGISTRY, reports not cached."""
    metrics.register()
    with pgreplica_settings(METRICS_CACHE_SECONDS=0):
        yield


db = pytest.mark.django_db(transaction=True, databases="__all__")


@db
def test_healthy_replication_on_metrics(live: None) -> None:
    wait_for_replay()
    s = scrape()
    for alias in ("replica", "replica2"):
        assert value(s, "django_pgreplica_replica_lag_seconds", replica=alias) == 0.0
        lag_bytes = value(s, "django_pgreplica_replica_lag_bytes", replica=alias)
        assert lag_bytes is not None and lag_bytes < 1024 * 1024
        assert value(s, "django_pgreplica_replica_up", replica=alias) == 1.0
        assert value(s, "django_pgreplica_replica_in_recovery", replica=alias) == 1.0
        assert value(s, "django_pgreplica_replica_streaming", replica=alias) == 1.0
        assert value(s, "django_pgreplica_replica_healthy", replica=alias) == 1.0
        assert value(s, "django_pgreplica_replica_status", replica=alias) == 0.0
        assert value(s, "django_pgreplica_circuit_state", replica=alias) == 0.0
        assert value(s, "django_pgreplica_fallback_total", replica=alias) is not None
    for slot in ("replica1", "replica2"):
        assert value(s, "django_pgreplica_slot_active", slot=slot) == 1.0
        assert value(s, "django_pgreplica_slot_retained_bytes", slot=slot) is not None
        assert value(s, "django_pgreplica_slot_safe_wal_size_bytes", slot=slot) is not None
    assert value(s, "django_pgreplica_primary_up") == 1.0
    assert value(s, "django_pgreplica_replication_status") == 0.0


@db
def test_reads_and_fallbacks_are_counted(live: None) -> None:
    Product.objects.create(name="Lamp", slug="lamp", price=1)
    before = scrape()
    wait_for_replay()  # after the scrape too: a check may record a sample on the primary
    with pgreplica_settings(REPLICAS=["replica"], METRICS_CACHE_SECONDS=0), scope():
        assert list(Product.objects.values_list("name", flat=True)) == ["Lamp"]
    stats.count_fallback("replica2")
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0.0) - (value(before, name, **labels) or 0.0)

    assert delta("django_pgreplica_reads_total", database="replica", reason="replica") == 1
    assert delta("django_pgreplica_fallback_total", replica="replica2") == 1
    assert delta("django_pgreplica_fallback_total", replica="replica") == 0


@db
def test_open_circuit_is_exported_and_warns(live: None) -> None:
    health = get_health("replica")
    health._on_suspect = lambda _: None  # no background probe: the replica is up, it would close
    for _ in range(health.breaker.failure_threshold):
        health.record_failure("connection refused")
    s = scrape()
    assert value(s, "django_pgreplica_circuit_state", replica="replica") == 1.0
    assert value(s, "django_pgreplica_replica_status", replica="replica") == 1.0
    assert value(s, "django_pgreplica_replica_healthy", replica="replica") == 0.0
    assert value(s, "django_pgreplica_circuit_state", replica="replica2") == 0.0


@db
def test_lag_bytes_grow_while_replay_is_paused(live: None) -> None:
    wait_for_replay()
    with replay_paused("replica"):
        write_rows(5)
        s = scrape()
    lag = value(s, "django_pgreplica_replica_lag_bytes", replica="replica")
    assert lag is not None and lag > 0
    assert value(s, "django_pgreplica_replica_status", replica="replica") == 1.0  # paused
    assert value(s, "django_pgreplica_replica_lag_bytes", replica="replica2") is not None


@db
def test_stopped_replica_is_down_on_metrics(live: None, pgreplica: Any) -> None:
    pgreplica.stop("replica2")
    s = scrape()
    assert value(s, "django_pgreplica_replica_up", replica="replica2") == 0.0
    assert value(s, "django_pgreplica_replica_status", replica="replica2") == 2.0
    assert value(s, "django_pgreplica_replica_streaming", replica="replica2") == 0.0
    assert value(s, "django_pgreplica_replica_lag_seconds", replica="replica2") is None
    assert value(s, "django_pgreplica_slot_active", slot="replica2") == 0.0
    assert value(s, "django_pgreplica_replication_status") == 2.0
    assert value(s, "django_pgreplica_replica_up", replica="replica") == 1.0


@db
def test_unreachable_primary_on_metrics(live: None) -> None:
    with primary_unreachable():
        s = scrape()
    assert value(s, "django_pgreplica_primary_up") == 0.0
    assert value(s, "django_pgreplica_replication_status") == 3.0
    assert value(s, "django_pgreplica_replica_up", replica="replica") == 1.0


# --- the collector itself, without a database ------------------------------------------------


def fake_report() -> Report:
    return Report(
        checked_at=datetime.now(timezone.utc),
        status=Status.OK,
        primary=PrimaryObservation("default", reachable=True, in_recovery=False),
        thresholds=Thresholds(5, 30, 100),
        replicas=(),
    )


def test_reports_are_cached_for_metrics_cache_seconds() -> None:
    calls: list[int] = []
    now = [100.0]

    def check() -> Report:
        calls.append(1)
        return fake_report()

    collector = metrics.ReplicationCollector(check=check, clock=lambda: now[0])
    with pgreplica_settings(METRICS_CACHE_SECONDS=5):
        list(collector.collect())
        now[0] += 4.9
        list(collector.collect())
        assert len(calls) == 1
        now[0] += 0.2
        list(collector.collect())
        assert len(calls) == 2


def test_register_is_idempotent() -> None:
    registry = CollectorRegistry()
    first = metrics.register(registry)
    assert metrics.register(registry) is first
    metrics.unregister(registry)
    second = metrics.register(registry)
    assert second is not first
    metrics.unregister(registry)


def test_registration_describes_without_querying() -> None:
    def explode() -> Report:
        raise AssertionError("registration must not run the replication check")

    registry = CollectorRegistry(auto_describe=True)  # like prometheus_client's REGISTRY
    registry.register(metrics.ReplicationCollector(check=explode))
    described = {family.name for family in metrics.ReplicationCollector(check=explode).describe()}
    assert "django_pgreplica_replica_lag_seconds" in described


def test_a_failing_check_still_serves_the_routing_metrics(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Report:
        raise RuntimeError("boom")

    registry = CollectorRegistry()
    registry.register(metrics.ReplicationCollector(check=broken))
    from prometheus_client import generate_latest

    s = parse(generate_latest(registry).decode())
    assert value(s, "django_pgreplica_circuit_state", replica="replica") == 0.0
    assert value(s, "django_pgreplica_replica_up", replica="replica") is None
    assert "replication check failed" in caplog.text
