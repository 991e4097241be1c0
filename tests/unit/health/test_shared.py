"""Shared health verdicts without a real cache: a circuit opened in one process opens it in
the others, so every process ramps the replica up when it is back."""

from __future__ import annotations

from typing import Any

from django_pgreplica.clock import FakeClock
from django_pgreplica.health import ReplicaHealth
from django_pgreplica.health.breaker import RAMP_START, CircuitState
from django_pgreplica.health.shared import PREFIX, Sync, apply
from tests.support import pgreplica_settings

OTHER = "another-host:4242"


def health(**overrides: object) -> ReplicaHealth:
    from django_pgreplica.conf import get_settings

    with pgreplica_settings(**overrides):
        settings = get_settings()
    return ReplicaHealth("replica", settings, on_suspect=lambda item: None)


def verdict(clock: FakeClock, *, ok: bool, opened: bool = False) -> dict[str, Any]:
    return {"ok": ok, "opened": opened, "at": clock.wall(), "by": OTHER, "error": "timeout"}


def test_an_open_circuit_elsewhere_opens_it_here_and_recovery_ramps(clock: FakeClock) -> None:
    item = health(FAILURE_THRESHOLD=3, RAMP_SECONDS=10.0)
    clock.advance(1)
    assert apply(item, verdict(clock, ok=False)) is True  # the first failure, elsewhere
    assert item.suspect and item.breaker.state(clock.monotonic()) is CircuitState.CLOSED
    clock.advance(5)  # the prober elsewhere failed FAILURE_THRESHOLD times
    assert apply(item, verdict(clock, ok=False, opened=True)) is True
    assert item.breaker.state(clock.monotonic()) is CircuitState.OPEN
    assert apply(item, verdict(clock, ok=False, opened=True)) is False  # once is enough
    clock.advance(30)
    assert apply(item, verdict(clock, ok=True)) is True
    now = clock.monotonic()
    assert not item.suspect and item.breaker.state(now) is CircuitState.HALF_OPEN
    assert item.weight(now) == RAMP_START


def test_a_failure_verdict_without_an_open_circuit_does_not_open_it(clock: FakeClock) -> None:
    item = health(FAILURE_THRESHOLD=3, RAMP_SECONDS=10.0)
    clock.advance(1)
    apply(item, verdict(clock, ok=False))
    clock.advance(1)
    apply(item, verdict(clock, ok=True))
    assert not item.suspect and item.weight(clock.monotonic()) == 1.0  # a blip: no ramp


class Registry:
    def __init__(self, item: ReplicaHealth) -> None:
        self.item = item

    def snapshot(self) -> dict[str, ReplicaHealth]:
        return {self.item.alias: self.item}

    def get(self, alias: str) -> ReplicaHealth:
        return self.item


def test_a_circuit_that_opens_here_later_is_published_once(clock: FakeClock) -> None:
    from django.core.cache import caches

    item = health(FAILURE_THRESHOLD=2)
    registry: Any = Registry(item)
    sync = Sync()
    cache = caches["local"]
    cache.clear()
    with pgreplica_settings(REPLICAS=["replica"], CACHE="local"):
        item.record_failure("timeout", shared=False)
        sync.sync_once(registry)
        assert cache.get(PREFIX + "replica") is None  # not open yet; nothing new to tell
        clock.advance(1)
        item.record_failure("timeout", shared=False)  # the second: the circuit opens
        sync.sync_once(registry)
        published = cache.get(PREFIX + "replica")
        assert published["ok"] is False and published["opened"] is True
        cache.clear()
        sync.sync_once(registry)
        assert cache.get(PREFIX + "replica") is None  # said once per outage
