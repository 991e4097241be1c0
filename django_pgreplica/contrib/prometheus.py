"""Prometheus metrics, served by django-prometheus's ``/metrics`` (needs prometheus_client).

One custom collector computes everything at scrape time in the process that serves
``/metrics``: routing counters from :mod:`django_pgreplica.routing.stats`, circuit states from
:mod:`django_pgreplica.health`, and
replication state from :func:`~django_pgreplica.monitoring.check_replication`, cached for
``PGREPLICA["METRICS_CACHE_SECONDS"]`` so several scrapers cost one check. Nothing is set
from a Celery worker, whose registry no web scrape would see.

With ``PGREPLICA["CACHE"]`` set, the counters are the whole fleet's (every process that
publishes through that cache, see :mod:`django_pgreplica.routing.fleet`), whichever worker
serves the scrape, and the circuit and weight gauges are this process's view, which shared
health keeps the same in every process within a HEALTH_CHECK_INTERVAL. Without CACHE they
are this process's, like django-prometheus's own. With ``PROMETHEUS_MULTIPROC_DIR`` set,
django-prometheus's view exports a fresh multiprocess registry instead of ``REGISTRY``, so
this collector is not on its page; expose it from a view of your own with
``generate_latest(registry)`` after ``register(registry)``.

Series (labels in braces):

- ``django_pgreplica_replica_lag_seconds{replica}``: replay delay, 0 when caught up
- ``django_pgreplica_replica_lag_bytes{replica}``: primary WAL position - replica replay
- ``django_pgreplica_replica_up{replica}``: 1 when the replica answered
- ``django_pgreplica_replica_in_recovery{replica}``: 0 once promoted
- ``django_pgreplica_replica_streaming{replica}``: 1 when its WAL receiver streams
- ``django_pgreplica_replica_healthy{replica}``: 1 when the router would send it reads
- ``django_pgreplica_replica_status{replica}``: 0 OK, 1 WARNING, 2 CRITICAL
- ``django_pgreplica_circuit_state{replica}``: 0 closed, 1 open, 2 half-open (ramping up)
- ``django_pgreplica_replica_weight{replica}``: its current share of reads, 0..1
- ``django_pgreplica_fallback_total{replica}``: reads that fell back to the primary
- ``django_pgreplica_reads_total{database,reason}``: routed reads, by why they went there
- ``django_pgreplica_replay_wait_seconds{outcome}``: histogram of waits for a replica to
  replay a client's token (outcome ``replayed`` or ``timeout``)
- ``django_pgreplica_slot_retained_bytes{slot}``, ``django_pgreplica_slot_active{slot}``,
  ``django_pgreplica_slot_safe_wal_size_bytes{slot}``: replication slots on the primary
- ``django_pgreplica_routing_processes``: processes the counters sum (1 without CACHE)
- ``django_pgreplica_primary_up``: 1 when the primary answered
- ``django_pgreplica_replication_status``: worst of all, 0-2, 3 UNKNOWN (primary down)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from django.core.signals import setting_changed
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from .. import clock as clockmod
from ..conf import get_settings
from ..health import circuit_state, replica_weight
from ..monitoring import Report, check_replication, routing_view
from ..routing import stats
from ..routing.stats import RoutingCounts

logger = logging.getLogger("django_pgreplica.metrics")

PREFIX = "django_pgreplica_"
Clock = Callable[[], float]


class ReplicationCollector(Collector):
    def __init__(
        self, check: Callable[[], Report] = check_replication, clock: Clock | None = None
    ) -> None:
        self._check = check
        self._clock: Clock = clock or (lambda: clockmod.monotonic())
        self._cached: tuple[float, Report] | None = None
        self._lock = threading.Lock()
        self._fleet_failing = False

    def describe(self) -> Iterable[Metric]:
        # Names only: without describe() the registry would call collect() at registration.
        return _Families().all()

    def collect(self) -> Iterable[Metric]:
        families = _Families()
        families.add_routing(self.routing_counts())
        report = self.report()
        if report is not None:
            families.add_report(report)
        return families.all()

    def report(self) -> Report | None:
        """The cached report, refreshed when older than METRICS_CACHE_SECONDS."""
        max_age = get_settings().metrics_cache_seconds
        cached = self._cached
        if cached is not None and self._clock() - cached[0] < max_age:
            return cached[1]
        with self._lock:  # one check at a time; the others then use its result
            cached = self._cached
            if cached is not None and self._clock() - cached[0] < max_age:
                return cached[1]
            try:
                report = self._check()
            except Exception:
                logger.exception("replication metrics: the replication check failed")
                return None
            self._cached = (self._clock(), report)
            return report

    def routing_counts(self) -> RoutingCounts:
        """Every process's counts with CACHE (one ``get_many``), else this process's."""
        view = routing_view(get_settings())
        if view.counts is not None:
            if self._fleet_failing:
                logger.warning("replication metrics: routing counts of every process again")
            self._fleet_failing = False
            return view.counts
        if not self._fleet_failing:
            logger.warning("replication metrics: %s; exporting this process's counts", view.note)
        self._fleet_failing = True
        return stats.snapshot()

    def clear_cache(self) -> None:
        self._cached = None


class _Families:
    def __init__(self) -> None:
        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, doc, labels=labels)

        replica = ["replica"]
        slot = ["slot"]
        self.lag_seconds = gauge(
            "replica_lag_seconds", "Replay delay of the replica, 0 when caught up.", replica
        )
        self.lag_bytes = gauge(
            "replica_lag_bytes", "Bytes of WAL the replica has not replayed yet.", replica
        )
        self.up = gauge("replica_up", "1 when the replica answered the check.", replica)
        self.in_recovery = gauge(
            "replica_in_recovery", "1 while the replica is a standby, 0 once promoted.", replica
        )
        self.streaming = gauge(
            "replica_streaming", "1 when the replica's WAL receiver is streaming.", replica
        )
        self.healthy = gauge(
            "replica_healthy", "1 when the router would send the replica reads.", replica
        )
        self.status = gauge(
            "replica_status", "Replica status: 0 OK, 1 WARNING, 2 CRITICAL.", replica
        )
        self.circuit = gauge(
            "circuit_state", "Circuit breaker: 0 closed, 1 open, 2 half-open.", replica
        )
        self.weight = gauge(
            "replica_weight",
            "Share of the reads meant for the replica that it takes: 0 while its circuit is "
            "open, ramping up to 1 over RAMP_SECONDS after it comes back.",
            replica,
        )
        self.fallback = CounterMetricFamily(
            PREFIX + "fallback_total",
            "Reads that fell back from a replica to the primary.",
            labels=replica,
        )
        self.reads = CounterMetricFamily(
            PREFIX + "reads_total",
            "Routed reads by database alias and reason.",
            labels=["database", "reason"],
        )
        self.replay_wait = HistogramMetricFamily(
            PREFIX + "replay_wait_seconds",
            "Time reads waited for a replica to replay the client's token (REPLAY_WAIT_SECONDS),"
            " by outcome: replayed (read from the replica) or timeout (read from the primary).",
            labels=["outcome"],
        )
        self.slot_retained = gauge(
            "slot_retained_bytes", "WAL the primary keeps for the replication slot.", slot
        )
        self.slot_active = gauge("slot_active", "1 when a standby uses the slot.", slot)
        self.slot_safe = gauge(
            "slot_safe_wal_size_bytes",
            "WAL that may still be written before the slot is invalidated.",
            slot,
        )
        self.processes = gauge(
            "routing_processes",
            "Processes whose routing counts the counters sum: those publishing through CACHE "
            "(the counters also keep stopped processes' counts), else 1 (this process).",
            [],
        )
        self.primary_up = gauge("primary_up", "1 when the primary answered the check.", [])
        self.overall = gauge(
            "replication_status",
            "Worst status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (primary unreachable).",
            [],
        )

    def all(self) -> list[Metric]:
        return [value for value in vars(self).values() if isinstance(value, Metric)]

    def add_routing(self, counts: RoutingCounts) -> None:
        settings = get_settings()
        fallbacks = dict.fromkeys(settings.replicas, 0) | counts.fallbacks
        for alias, count in sorted(fallbacks.items()):
            self.fallback.add_metric([alias], count)
            self.circuit.add_metric([alias], int(circuit_state(alias)))
            self.weight.add_metric([alias], replica_weight(alias))
        self.processes.add_metric([], counts.processes)
        reads = dict(counts.reads)
        for database in (settings.primary, *settings.replicas):
            for reason in stats.READ_REASONS:
                reads.setdefault((database, reason), 0)
        for (database, reason), count in sorted(reads.items()):
            self.reads.add_metric([database, reason], count)
        for outcome, histogram in sorted(counts.waits.items()):
            buckets = [
                ("+Inf" if bound == float("inf") else repr(bound), count)
                for bound, count in histogram.cumulative()
            ]
            self.replay_wait.add_metric([outcome], buckets, histogram.total)

    def add_report(self, report: Report) -> None:
        for item in report.replicas:
            labels = [item.alias]
            if item.lag_seconds is not None:
                self.lag_seconds.add_metric(labels, item.lag_seconds)
            if item.lag_bytes is not None:
                self.lag_bytes.add_metric(labels, item.lag_bytes)
            self.up.add_metric(labels, _flag(item.reachable))
            if item.in_recovery is not None:
                self.in_recovery.add_metric(labels, _flag(item.in_recovery))
            self.streaming.add_metric(labels, _flag(item.reachable and item.streaming))
            self.healthy.add_metric(labels, _flag(item.healthy))
            self.status.add_metric(labels, int(item.status))
        for slot in report.slots:
            labels = [slot.slot_name]
            if slot.retained_bytes is not None:
                self.slot_retained.add_metric(labels, slot.retained_bytes)
            self.slot_active.add_metric(labels, _flag(slot.active))
            if slot.safe_wal_size is not None:
                self.slot_safe.add_metric(labels, slot.safe_wal_size)
        self.primary_up.add_metric([], _flag(report.primary.reachable))
        self.overall.add_metric([], int(report.status))


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


_registered: dict[int, ReplicationCollector] = {}
_register_lock = threading.Lock()


def register(registry: CollectorRegistry | None = None) -> ReplicationCollector:
    """Add the collector to ``registry`` (prometheus_client's default one) once.

    Idempotent: later calls return the collector already registered there.
    """
    target = REGISTRY if registry is None else registry
    with _register_lock:
        collector = _registered.get(id(target))
        if collector is None:
            collector = ReplicationCollector()
            target.register(collector)
            _registered[id(target)] = collector
        return collector


def unregister(registry: CollectorRegistry | None = None) -> None:
    target = REGISTRY if registry is None else registry
    with _register_lock:
        collector = _registered.pop(id(target), None)
        if collector is not None:
            target.unregister(collector)


def clear_cache(**kwargs: Any) -> None:
    """Forget cached reports (settings changed, or a test wants fresh numbers)."""
    for collector in list(_registered.values()):
        collector.clear_cache()


def _clear_on_change(**kwargs: Any) -> None:
    if kwargs.get("setting") in ("PGREPLICA", "DATABASES"):
        clear_cache()


setting_changed.connect(_clear_on_change, dispatch_uid="django_pgreplica.metrics.clear")
