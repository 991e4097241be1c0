"""One monitoring run, as the ``monitor_replication`` Celery task does it every minute.

Check, log problems (logger ``django_pgreplica.monitoring``, the alias and the numbers in
each line), send :data:`~django_pgreplica.signals.replication_alert`, store a
:class:`~.samples.ReplicationSample` per replica and delete samples older than
SAMPLE_RETENTION_HOURS (0 or less keeps them forever). Celery-free: a cron job or a test
can call :func:`run_cycle` directly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError

from ..conf import get_settings
from ..db import one_line
from ..units import format_bytes, format_seconds
from .queries import QueryRunner, django_runner
from .render import report_to_dict
from .types import ReplicaReport, Report, SlotReport, Status

logger = logging.getLogger("django_pgreplica.monitoring")

_LOG_LEVELS = {
    Status.OK: logging.INFO,
    Status.WARNING: logging.WARNING,
    Status.CRITICAL: logging.ERROR,
    Status.UNKNOWN: logging.ERROR,
}


def replica_message(item: ReplicaReport) -> str:
    """``replica replica CRITICAL: replay lag 42.0s > 30s (lag 42.0s, 1.2 MiB behind)``."""
    why = "; ".join(item.reasons) or "ok"
    numbers = (
        f"lag {format_seconds(item.lag_seconds)}, {format_bytes(item.lag_bytes)} behind, "
        f"circuit {item.circuit_state.label}"
    )
    return f"replica {item.alias} {item.status.name}: {why} ({numbers})"


def slot_message(item: SlotReport) -> str:
    owner = f" (replica {item.replica})" if item.replica else ""
    return f"slot {item.slot_name}{owner} {item.status.name}: {'; '.join(item.reasons)}"


def primary_message(report: Report) -> str:
    primary = report.primary
    return f"primary {primary.alias} unreachable: {primary.error}; replication status UNKNOWN"


def log_report(report: Report, previous: dict[str, Status]) -> None:
    if not report.primary.reachable:
        logger.error(primary_message(report))
    else:
        for message in report.messages:  # the primary alias is a standby
            logger.error(message)
    for item in report.replicas:
        before = previous.get(item.alias)
        if item.status is not Status.OK:
            logger.log(_LOG_LEVELS[item.status], replica_message(item))
        elif before is not None and before is not Status.OK:
            logger.info("replica %s recovered (was %s)", item.alias, before.name)
    for slot in report.slots:
        if slot.status is not Status.OK:
            logger.log(_LOG_LEVELS[slot.status], slot_message(slot))


def _alert(
    level: Status,
    message: str,
    *,
    replica: str | None = None,
    replica_report: ReplicaReport | None = None,
    slot: str | None = None,
    previous: Status | None = None,
) -> dict[str, Any]:
    return {
        "replica": replica,
        "replica_report": replica_report,
        "slot": slot,
        "level": level,
        "previous": previous,
        "message": message,
    }


def send_alerts(report: Report, previous: dict[str, Status]) -> int:
    """Send replication_alert for every problem and every recovery; returns how many."""
    from ..signals import replication_alert

    sent: list[dict[str, Any]] = []
    if not report.primary.reachable:
        sent.append(_alert(Status.UNKNOWN, primary_message(report)))
    for item in report.replicas:
        before = previous.get(item.alias)
        if item.status is Status.OK and (before is None or before is Status.OK):
            continue
        message = replica_message(item)
        sent.append(
            _alert(item.status, message, replica=item.alias, replica_report=item, previous=before)
        )
    for slot in report.slots:
        if slot.status is not Status.OK:
            message = slot_message(slot)
            sent.append(_alert(slot.status, message, replica=slot.replica, slot=slot.slot_name))
    for kwargs in sent:
        for receiver, result in replication_alert.send_robust(
            sender=Report, report=report, **kwargs
        ):
            if isinstance(result, Exception):
                logger.error("replication_alert receiver %r failed: %s", receiver, one_line(result))
    return len(sent)


def previous_statuses(primary: str, aliases: Sequence[str]) -> dict[str, Status]:
    """Each alias's status in its newest stored sample (read on the primary: exact)."""
    from .samples import ReplicationSample

    rows = (
        ReplicationSample.objects.using(primary)
        .filter(replica__in=list(aliases))
        .order_by("replica", "-taken_at")
        .distinct("replica")
        .values_list("replica", "status")
    )
    return {alias: Status(status) for alias, status in rows}


def store_samples(report: Report, primary: str) -> int:
    from .samples import ReplicationSample

    samples = [
        ReplicationSample(
            taken_at=report.checked_at,
            replica=item.alias,
            status=int(item.status),
            reachable=item.reachable,
            in_recovery=item.in_recovery,
            state=(item.state or "")[:32],
            lag_seconds=item.lag_seconds,
            lag_bytes=item.lag_bytes,
            slot_retained_bytes=item.slot_retained_bytes,
            circuit_state=int(item.circuit_state),
            message="; ".join(item.reasons),
        )
        for item in report.replicas
    ]
    ReplicationSample.objects.using(primary).bulk_create(samples)
    return len(samples)


def prune_samples(primary: str, retention_hours: float, now: datetime) -> int:
    from .samples import ReplicationSample

    if retention_hours <= 0:
        return 0
    cutoff = now - timedelta(hours=retention_hours)
    deleted, _ = ReplicationSample.objects.using(primary).filter(taken_at__lt=cutoff).delete()
    return deleted


def run_cycle(*, run: QueryRunner = django_runner, now: datetime | None = None) -> dict[str, Any]:
    """One run; returns ``replication_status --json``'s document (:func:`.render.report_to_dict`)
    plus ``alerts`` (signals sent), ``samples_stored``, ``samples_deleted`` and ``errors``."""
    from . import check_replication

    settings = get_settings()
    primary = settings.primary
    report = check_replication(run=run, now=now)
    errors: list[str] = []
    writable = report.primary.reachable and not report.primary.in_recovery
    previous: dict[str, Status] = {}
    if writable:
        try:
            previous = previous_statuses(primary, [item.alias for item in report.replicas])
        except DatabaseError as exc:  # e.g. migrations not applied yet
            errors.append(f"reading samples: {one_line(exc)}")
            logger.warning("replication samples unreadable on %s: %s", primary, one_line(exc))
    log_report(report, previous)
    alerts = send_alerts(report, previous)
    stored = deleted = 0
    if writable:
        try:
            stored = store_samples(report, primary)
            deleted = prune_samples(primary, settings.sample_retention_hours, report.checked_at)
        except DatabaseError as exc:
            errors.append(f"storing samples: {one_line(exc)}")
            logger.warning("replication samples not stored on %s: %s", primary, one_line(exc))
    return {
        **report_to_dict(report),
        "alerts": alerts,
        "samples_stored": stored,
        "samples_deleted": deleted,
        "errors": errors,
    }
