"""Routing counts of every process, through the ``CACHE`` alias.

Counters live in each process (:mod:`.stats`); ``replication_status``, the admin page and
``/metrics`` are served by one of them, or by another process. So each process publishes
its counts every HEALTH_CHECK_INTERVAL from the health-sync thread (one ``get`` and one
``set``, never on a request) into a slot of its own: ``pgreplica:routing:<n>`` for n below
:data:`SLOTS`, claimed with ``add`` (atomic in Redis, Memcached and the database cache). A
reader sums all slots with one ``get_many``.

The sums never go down, so Prometheus can take them as counters: a slot outlives its
process (a week, :data:`SLOT_TTL`) with its last counts, and the next process to start takes
over a slot whose owner stopped refreshing it, keeping those counts as the slot's ``base``
and adding its own. Only one process inherits a given slot (a second ``add``, on a key
naming the old owner). A process that was merely slow and lost its slot to an heir claims
another and publishes there only what it counted since (the heir has the rest).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from django.core.cache import caches

from .. import clock
from ..health.shared import sync
from . import stats
from .stats import RoutingCounts

logger = logging.getLogger("django_pgreplica.router")

PREFIX = "pgreplica:routing:"
SLOTS = 256  # processes that can publish at once; more are left out (logged)
SLOT_TTL = 7 * 24 * 3600.0  # a stopped process's counts stay in the sums this long
# A process whose slot was not refreshed for this long (or 5 intervals) counts as stopped.
MIN_STALE = 10.0


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def slot_key(index: int) -> str:
    return f"{PREFIX}{index}"


def _stale_after(interval: float) -> float:
    return max(MIN_STALE, 5 * interval)


def _counts(value: Any, field: str) -> RoutingCounts:
    try:
        return RoutingCounts.from_json(value[field])
    except (KeyError, TypeError, ValueError):
        return RoutingCounts(processes=0)  # absent, or another version's record


def _total(value: Any) -> RoutingCounts:
    """A slot's counts: what it inherited plus its owner's own."""
    total = _counts(value, "base")
    total.add(_counts(value, "counts"))
    return total


class Publisher:
    """This process's slot: claimed once, refreshed each interval, re-claimed if lost."""

    def __init__(self) -> None:
        self.slot: int | None = None
        self.owner = ""  # the process the slot was claimed for (a forked child re-claims)
        self.base: dict[str, Any] | None = None  # counts inherited with the slot
        self.offset = RoutingCounts(processes=0)  # counted here, published in a lost slot
        self.published = RoutingCounts(processes=0)  # this process's counts last published
        self._full_logged = False

    def _value(self, me: str, mine: RoutingCounts) -> dict[str, Any]:
        own = RoutingCounts(processes=0)
        own.add(mine)
        own.add(self.offset, sign=-1)
        return {"by": me, "seen": clock.wall(), "base": self.base, "counts": own.to_json()}

    def publish(self, alias: str, interval: float) -> None:
        cache = caches[alias]
        me = _me()
        mine = stats.snapshot()
        if self.slot is not None and self.owner == me:
            key = slot_key(self.slot)
            held = cache.get(key)
            if held is None or held.get("by") == me:
                cache.set(key, self._value(me, mine), timeout=SLOT_TTL)
                self.published = mine
                return
            # Taken over while this process looked stopped: the heir has what was there.
            self.offset = self.published
        if self.owner != me:  # a forked child: nothing of the parent's slot is its own
            self.offset = RoutingCounts(processes=0)
        self.slot, self.base = None, None
        index = self._claim(cache, me, interval)
        if index is not None:
            self.slot, self.owner = index, me
            cache.set(slot_key(index), self._value(me, mine), timeout=SLOT_TTL)
            self.published = mine
        elif not self._full_logged:
            self._full_logged = True
            logger.warning("cache %s: all %d routing-count slots taken", alias, SLOTS)

    def _claim(self, cache: Any, me: str, interval: float) -> int | None:
        """A free slot, or one whose owner stopped (its counts become ``base``)."""
        found: dict[str, Any] = cache.get_many([slot_key(i) for i in range(SLOTS)])
        now = clock.wall()
        for index in range(SLOTS):
            key = slot_key(index)
            held = found.get(key)
            if held is None:
                if cache.add(key, {"by": me, "seen": now}, timeout=SLOT_TTL):
                    return index
                continue
            seen = held.get("seen", 0) if isinstance(held, dict) else 0
            if now - float(seen) <= _stale_after(interval):
                continue
            owner = held.get("by") if isinstance(held, dict) else None
            heir_key = f"{key}:heir:{owner}:{seen}"
            if cache.add(heir_key, me, timeout=max(60.0, _stale_after(interval))):
                self.base = _total(held).to_json()
                return index
        return None


publisher = Publisher()


def install() -> None:
    """Publish from the health-sync thread (it runs only when CACHE is set)."""
    if publisher.publish not in sync.jobs:
        sync.jobs.append(publisher.publish)


def fleet_counts(alias: str, interval: float | None = None) -> RoutingCounts:
    """The counts of every process that published to ``alias``, stopped ones included,
    summed; ``processes`` says how many publish still (refreshed within 5 intervals of
    HEALTH_CHECK_INTERVAL). Raises what the cache raises."""
    if interval is None:
        from ..conf import get_settings

        interval = get_settings().health_check_interval
    found: dict[str, Any] = caches[alias].get_many([slot_key(i) for i in range(SLOTS)])
    total = RoutingCounts(processes=0)
    now = clock.wall()
    for value in found.values():
        if not isinstance(value, dict):
            continue
        counts = _total(value)
        fresh = now - float(value.get("seen", 0)) <= _stale_after(interval)
        counts.processes = 1 if fresh and "counts" in value else 0
        total.add(counts)
    return total
