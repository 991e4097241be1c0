"""Routing counts of every process, through the ``CACHE`` alias.

Counters live in each process (:mod:`.stats`); ``replication_status`` and the admin page
run in another one. So each process publishes its counts every HEALTH_CHECK_INTERVAL from
the health-sync thread (one ``get`` and one ``set``, never on a request) into a slot of its
own: ``pgreplica:routing:<n>`` for n below :data:`SLOTS`, claimed with ``add`` (atomic in
Redis, Memcached and the database cache) and expiring when the process stops refreshing
it. A reader sums all slots with one ``get_many``. The counts are since each process
started: a process that stops takes its counts with it when its slot expires.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from django.core.cache import caches

from ..health.shared import sync
from . import stats
from .stats import RoutingCounts

logger = logging.getLogger("django_pgreplica.router")

PREFIX = "pgreplica:routing:"
SLOTS = 256  # processes that can publish at once; more are left out (logged)
# A slot outlives a few missed refreshes (a busy process), not a stopped process by long.
MIN_TTL = 10.0


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def slot_key(index: int) -> str:
    return f"{PREFIX}{index}"


class Publisher:
    """This process's slot: claimed once, refreshed each interval, re-claimed if lost."""

    def __init__(self) -> None:
        self.slot: int | None = None
        self.owner = ""  # the process the slot was claimed for (a forked child re-claims)
        self._full_logged = False

    def publish(self, alias: str, interval: float) -> None:
        cache = caches[alias]
        me = _me()
        ttl = max(MIN_TTL, 5 * interval)
        value = {"by": me, "counts": stats.snapshot().to_json()}
        if self.slot is not None and self.owner == me:
            held = cache.get(slot_key(self.slot))
            if held is None or held.get("by") == me:
                cache.set(slot_key(self.slot), value, timeout=ttl)
                return
        self.slot = None
        for index in range(SLOTS):
            if cache.add(slot_key(index), value, timeout=ttl):
                self.slot, self.owner = index, me
                return
        if not self._full_logged:
            self._full_logged = True
            logger.warning("cache %s: all %d routing-count slots taken", alias, SLOTS)


publisher = Publisher()


def install() -> None:
    """Publish from the health-sync thread (it runs only when CACHE is set)."""
    if publisher.publish not in sync.jobs:
        sync.jobs.append(publisher.publish)


def fleet_counts(alias: str) -> RoutingCounts:
    """The counts of every process publishing to ``alias``, summed (``processes`` says how
    many). Raises what the cache raises."""
    found: dict[str, Any] = caches[alias].get_many([slot_key(i) for i in range(SLOTS)])
    total = RoutingCounts(processes=0)
    for value in found.values():
        try:
            total.add(RoutingCounts.from_json(value["counts"]))
        except (KeyError, TypeError, ValueError):
            continue  # another version's record
    return total
