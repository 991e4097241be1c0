"""Fleet routing counts: summed over processes, never going down when one stops or stalls.

Processes are simulated: each :class:`Publisher` publishes under its own host:pid with its
own counts, into a local-memory cache, on a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import caches
from django.test import override_settings

from django_pgreplica.clock import FakeClock
from django_pgreplica.routing import fleet
from django_pgreplica.routing.stats import RoutingCounts

CACHE = "fleet-unit"
INTERVAL = 1.0


@pytest.fixture(autouse=True)
def cache() -> Iterator[None]:
    backend = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": CACHE}
    with override_settings(CACHES={"default": backend, CACHE: backend}):
        caches[CACHE].clear()
        yield


class Process:
    def __init__(self, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name = name
        self.reads = 0
        self.publisher = fleet.Publisher()
        self._mp = monkeypatch

    def read(self, n: int) -> None:
        self.reads += n

    def publish(self) -> None:
        counts = RoutingCounts(reads={("replica", "replica"): self.reads})
        self._mp.setattr(fleet, "_me", lambda: self.name)
        self._mp.setattr(fleet.stats, "snapshot", lambda: counts)
        self.publisher.publish(CACHE, INTERVAL)


def total() -> tuple[int, int]:
    counts = fleet.fleet_counts(CACHE, INTERVAL)
    return counts.reads.get(("replica", "replica"), 0), counts.processes


def test_counts_of_every_process_are_summed(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeClock():
        a, b = Process("host:1", monkeypatch), Process("host:2", monkeypatch)
        a.read(5)
        b.read(7)
        a.publish()
        b.publish()
        assert total() == (12, 2)
        a.read(1)
        a.publish()
        assert total() == (13, 2)
        assert a.publisher.slot != b.publisher.slot


def test_a_stopped_process_keeps_its_counts_and_the_next_one_inherits_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeClock() as clock:
        a, b = Process("host:1", monkeypatch), Process("host:2", monkeypatch)
        a.read(5)
        b.read(7)
        a.publish()
        b.publish()
        clock.advance(fleet.MIN_STALE + 1)  # a stops; b goes on
        b.publish()
        assert total() == (12, 1)  # a no longer publishes, its reads still count
        c = Process("host:3", monkeypatch)  # a's replacement
        c.read(2)
        c.publish()
        assert c.publisher.slot == a.publisher.slot
        assert total() == (14, 2)
        d = Process("host:4", monkeypatch)  # the inherited slot is c's now, not d's too
        d.publish()
        assert d.publisher.slot not in (a.publisher.slot, b.publisher.slot)
        assert total() == (14, 3)


def test_a_stalled_process_that_lost_its_slot_is_not_counted_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeClock() as clock:
        a = Process("host:1", monkeypatch)
        a.read(5)
        a.publish()
        clock.advance(fleet.MIN_STALE + 1)  # a stalls (SIGSTOP, a long GC) ...
        b = Process("host:2", monkeypatch)
        b.read(1)
        b.publish()  # ... and b takes a's slot over, with a's 5 reads
        assert b.publisher.slot == a.publisher.slot
        a.read(3)  # a resumes: 8 in all, 5 of them already in b's slot
        a.publish()
        assert a.publisher.slot != b.publisher.slot
        assert total() == (9, 2)
        a.read(1)
        a.publish()
        assert total() == (10, 2)


def test_the_sum_never_goes_down_through_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeClock() as clock:
        seen = []
        for generation in range(5):  # each worker replaced by a fresh one, again and again
            workers = [Process(f"host:{generation}{i}", monkeypatch) for i in range(3)]
            for step in range(3):
                for worker in workers:
                    worker.read(step + 1)
                    worker.publish()
                seen.append(total()[0])
                clock.advance(INTERVAL)
            clock.advance(fleet.MIN_STALE + 1)
        assert seen == sorted(seen)
        assert seen[-1] == 5 * 3 * (1 + 2 + 3)
        assert len(caches[CACHE].get_many([fleet.slot_key(i) for i in range(9)])) == 3
