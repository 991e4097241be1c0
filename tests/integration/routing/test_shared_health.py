"""Replica health shared through PGREPLICA["CACHE"] (Redis): what one process learns about
a replica, the others use. The other process is played by the test writing its verdicts
into the cache; benchmarks/shared_health.py runs real worker processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches

from django_pgreplica.consistency import scope
from django_pgreplica.health import get_health
from django_pgreplica.health.shared import PREFIX, verdict_of
from django_pgreplica.routers import ReplicaRouter
from django_pgreplica.testing.plugin import wait_for_replay
from testproject.shop.models import Product
from tests.support import pgreplica_settings

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__"), pytest.mark.redis]

SHARED = {"REPLICAS": ["replica"], "CACHE": "shared", "HEALTH_CHECK_INTERVAL": 0.1}
OTHER = "another-host:4242"


@pytest.fixture
def shared_cache() -> Iterator[Any]:
    cache = caches["shared"]
    try:
        cache.delete_many([PREFIX + "replica", PREFIX + "lead:replica"])
    except Exception as exc:
        pytest.fail(
            f"Redis is not answering ({exc}). Install and start it: apt-get install "
            "redis-server && redis-server --daemonize yes (scripts/test starts one)."
        )
    with scope():
        Product.objects.create(name="Lamp", slug="lamp", price=10)
    wait_for_replay()
    yield cache
    cache.delete_many([PREFIX + "replica", PREFIX + "lead:replica"])


def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def read() -> str:
    with scope():
        return ReplicaRouter().db_for_read(Product)


def test_a_replica_another_process_found_down_is_skipped_here_without_a_failure(
    shared_cache: Any,
) -> None:
    with pgreplica_settings(**SHARED):
        assert read() == "replica"
        health = get_health("replica")
        # The other process's prober leads, so this one never probes the replica itself.
        shared_cache.set(PREFIX + "lead:replica", OTHER, timeout=60)
        verdict = {**verdict_of(health), "ok": False, "error": "timeout expired", "by": OTHER}
        shared_cache.set(PREFIX + "replica", {**verdict, "at": time.time()}, timeout=60)
        until(lambda: health.suspect)
        assert read() == "default"
        assert health.last is not None and "seen by another-host:4242" in str(health.last.error)
        # ...and its recovery, seen by the other process, reaches this one too.
        verdict = {**verdict, "ok": True, "error": None, "in_recovery": True, "lag_seconds": 0.0}
        shared_cache.set(PREFIX + "replica", {**verdict, "at": time.time()}, timeout=60)
        until(lambda: not health.suspect)
        assert read() == "replica"


def test_a_failure_seen_here_is_published_for_the_others(
    shared_cache: Any, pgreplica_cluster: Any
) -> None:
    with pgreplica_settings(**SHARED):
        assert read() == "replica"
        pgreplica_cluster.stop("replica1")
        try:
            assert read() == "default"
            until(lambda: isinstance(shared_cache.get(PREFIX + "replica"), dict))
            published = shared_cache.get(PREFIX + "replica")
            assert published["ok"] is False and published["error"]
        finally:
            pgreplica_cluster.start("replica1")
        # This process leads the probing (nobody else does): it finds the replica back and
        # says so.
        until(lambda: (shared_cache.get(PREFIX + "replica") or {}).get("ok") is True)
        until(lambda: read() == "replica")


def test_a_cache_outage_leaves_each_process_its_own_view(
    caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "shared": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # nothing listens there
        },
    }
    with scope():
        Product.objects.create(name="Lamp", slug="lamp", price=10)
    wait_for_replay()
    with pgreplica_settings(**SHARED):
        for _ in range(5):
            assert read() == "replica"  # routing never touches the cache
        get_health("replica").record_failure("refused")  # something to publish
        until(lambda: "shared replica health unavailable" in caplog.text)
        until(lambda: read() == "replica")  # its own prober brings it back
