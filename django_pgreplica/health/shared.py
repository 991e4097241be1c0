"""Replica health shared by every process and host, through the ``CACHE`` alias.

What one process learns, the others use: a replica found down is skipped fleet-wide
without each worker paying its own failed connection (a hung host costs ``connect_timeout``
once, not once per worker), one process probes a down replica for the fleet, and its
recovery reaches every process at their next sync.

All cache traffic happens on one daemon thread per process, never on a user's request:
every HEALTH_CHECK_INTERVAL it publishes what changed here (one write per replica that
failed or came back) and reads every replica's verdict (one ``get_many``). The background
prober of a down replica asks :func:`lead` before probing. A cache outage degrades to
per-process health with a WARNING, never an error.

A verdict is a small dict: ``ok`` (answered its last probe), ``opened`` (its circuit is
open: republished when it opens, so every process opens its own and ramps the replica up
when it is back, not only the one that probes), ``at`` (wall time of that observation),
``by`` (host:pid), ``error``, and what the probe saw (``in_recovery``, ``lag_seconds``,
``replay_lsn``, ``receive_lsn``, and on which ``server``, ``timeline``, ``started_at``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.cache import caches

from .. import clock
from ..conf import get_settings
from ..db import one_line
from .breaker import CircuitState
from .verdict import ProbeResult

if TYPE_CHECKING:
    from .replica import HealthRegistry, ReplicaHealth

logger = logging.getLogger("django_pgreplica.health")

PREFIX = "pgreplica:health:"


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"  # per call: a forked child has its own


def verdict_of(health: ReplicaHealth) -> dict[str, Any]:
    last = health.last
    return {
        "ok": not health.suspect,
        "opened": health.breaker.state(clock.monotonic()) is CircuitState.OPEN,
        "at": health.changed_at,
        "by": _me(),
        "error": None if last is None else last.error,
        "in_recovery": None if last is None else last.in_recovery,
        "lag_seconds": None if last is None else last.lag_seconds,
        "replay_lsn": None if last is None else last.replay_lsn,
        "receive_lsn": None if last is None else last.receive_lsn,
        "server": None if last is None else last.server,
        "timeline": None if last is None else last.timeline,
        "started_at": None if last is None else last.started_at,
    }


def apply(health: ReplicaHealth, verdict: dict[str, Any]) -> bool:
    """Take another process's newer verdict on ``health``; True when it changed ours."""
    if verdict.get("by") == _me() or float(verdict.get("at", 0)) <= health.changed_at:
        return False
    if verdict.get("ok") and health.suspect:
        health.record_probe(
            ProbeResult(
                ok=True,
                checked_at=clock.monotonic(),
                in_recovery=verdict.get("in_recovery"),
                receive_lsn=verdict.get("receive_lsn"),
                replay_lsn=verdict.get("replay_lsn"),
                lag_seconds=verdict.get("lag_seconds"),
                server=verdict.get("server"),
                timeline=verdict.get("timeline"),
                started_at=verdict.get("started_at"),
            ),
            shared=False,
        )
        return True
    if verdict.get("ok"):
        return False
    changed = False
    if not health.suspect:
        error = verdict.get("error") or "no answer"
        health.record_failure(f"{error} (seen by {verdict.get('by')})", shared=False)
        changed = True
    if verdict.get("opened") and health.breaker.trip(clock.monotonic()):
        sync._told_open.add(health.alias)  # the fleet knows: nothing to republish
        logger.warning(
            "replica %s: circuit opened (seen by %s); reads go elsewhere until it answers",
            health.alias,
            verdict.get("by"),
        )
        changed = True
    return changed


class Sync:
    """The per-process sync thread and the queue of verdicts it has to publish."""

    def __init__(self) -> None:
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: tuple[int, threading.Thread] | None = None
        self._failing = False
        self._told_open: set[str] = set()  # replicas whose open circuit was published
        # More work for each round, given (CACHE alias, interval): the layers above add
        # theirs (routing counts), so health needs to know nothing of them.
        self.jobs: list[Callable[[str, float], None]] = []

    def publish(self, health: ReplicaHealth) -> None:
        """Queue this process's new verdict on ``health`` (sent within moments)."""
        with self._lock:
            self._pending[health.alias] = verdict_of(health)
        self._wake.set()
        self.ensure_running()

    def ensure_running(self) -> None:
        pid = os.getpid()
        current = self._thread
        if current is not None and current[0] == pid and current[1].is_alive():
            return
        with self._lock:
            current = self._thread
            if current is not None and current[0] == pid and current[1].is_alive():
                return
            thread = threading.Thread(target=self._run, name="pgreplica-health-sync", daemon=True)
            self._thread = (pid, thread)
            thread.start()

    def _run(self) -> None:
        from .replica import registry

        while True:
            settings = get_settings()
            if settings.cache is None:
                return
            try:
                self.sync_once(registry)
                for job in self.jobs:
                    job(settings.cache, settings.health_check_interval)
                if self._failing:
                    logger.warning("shared replica health (CACHE %r) works again", settings.cache)
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    logger.warning(
                        "shared replica health unavailable (CACHE %r: %s); each process "
                        "keeps its own view until it is back",
                        settings.cache,
                        one_line(exc),
                    )
                self._failing = True
            self._wake.wait(settings.health_check_interval)
            self._wake.clear()

    def sync_once(self, registry: HealthRegistry) -> None:
        settings = get_settings()
        assert settings.cache is not None
        cache = caches[settings.cache]
        ttl = max(60.0, 10 * settings.health_check_interval)
        now = clock.monotonic()
        for alias, health in registry.snapshot().items():
            # A circuit that opened here after the first failure was published (the
            # background probes failed FAILURE_THRESHOLD times): say so, with a newer time.
            if health.breaker.state(now) is not CircuitState.OPEN:
                self._told_open.discard(alias)
            elif alias not in self._told_open:
                self._told_open.add(alias)
                with self._lock:
                    self._pending[alias] = {**verdict_of(health), "at": clock.wall()}
        with self._lock:
            pending, self._pending = self._pending, {}
        try:
            if pending:
                cache.set_many({PREFIX + alias: v for alias, v in pending.items()}, timeout=ttl)
        except Exception:
            with self._lock:  # send them next time, unless newer ones came meanwhile
                self._pending = {**pending, **self._pending}
            raise
        found = cache.get_many([PREFIX + alias for alias in settings.replicas])
        for alias in settings.replicas:
            verdict = found.get(PREFIX + alias)
            if isinstance(verdict, dict):
                apply(registry.get(alias), verdict)


sync = Sync()


def lead(alias: str) -> bool:
    """May this process probe ``alias`` for the fleet this interval? True without CACHE,
    and when the cache cannot be asked (each process then probes for itself)."""
    settings = get_settings()
    if settings.cache is None:
        return True
    key, me = f"{PREFIX}lead:{alias}", _me()
    try:
        cache = caches[settings.cache]
        timeout = max(1.0, 3 * settings.health_check_interval)
        if cache.add(key, me, timeout=timeout):
            return True
        if cache.get(key) == me:
            cache.touch(key, timeout=timeout)
            return True
        return False
    except Exception:
        return True


def _after_fork_in_child() -> None:
    sync._lock = threading.Lock()
    sync._thread = None


os.register_at_fork(after_in_child=_after_fork_in_child)
