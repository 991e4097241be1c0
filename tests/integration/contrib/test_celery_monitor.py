"""The ``monitor_replication`` beat task: logs, alerts, samples and retention."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from django_pgreplica.models import ReplicationSample
from django_pgreplica.monitoring import Report, Status
from django_pgreplica.signals import replication_alert
from django_pgreplica.tasks import monitor_replication
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from tests.monitoring_support import primary_unreachable, write_rows
from tests.support import pgreplica_settings

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture
def alerts() -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    replication_alert.connect(receiver, weak=False, dispatch_uid="test-alerts")
    yield received
    replication_alert.disconnect(dispatch_uid="test-alerts")


def run_task() -> dict[str, Any]:
    result = monitor_replication.apply()
    summary = result.get()
    assert isinstance(summary, dict)
    json.dumps(summary)  # a JSON-serialisable Celery result
    return summary


def test_beat_schedule_names_the_task() -> None:
    from testproject.celery import app

    app.loader.import_default_modules()
    task = settings.CELERY_BEAT_SCHEDULE["pgreplica-monitor-replication"]["task"]
    assert task == monitor_replication.name == "django_pgreplica.tasks.monitor_replication"
    assert task in app.tasks


def by_alias(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["alias"]: item for item in summary["replicas"]}


def test_healthy_run_stores_samples_and_sends_no_alert(alerts: list[dict[str, Any]]) -> None:
    wait_for_replay()
    summary = run_task()
    assert summary["status"] == "OK"
    assert summary["samples_stored"] == 2 and summary["alerts"] == 0 and summary["errors"] == []
    assert by_alias(summary)["replica"]["lag_seconds"] == 0.0
    assert alerts == []
    samples = list(ReplicationSample.objects.using("default").order_by("replica"))
    assert [(s.replica, s.status, s.state, s.circuit_state) for s in samples] == [
        ("replica", 0, "streaming", 0),
        ("replica2", 0, "streaming", 0),
    ]
    assert all(s.lag_bytes is not None and s.slot_retained_bytes is not None for s in samples)


def test_lagging_replica_logs_and_alerts_a_warning(
    alerts: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    wait_for_replay()
    caplog.set_level(logging.INFO, logger="django_pgreplica.monitoring")
    with replay_paused("replica2"):
        write_rows(5)
        summary = run_task()
    assert by_alias(summary)["replica2"]["status"] == "WARNING"
    assert [(a["replica"], a["level"]) for a in alerts] == [("replica2", Status.WARNING)]
    alert = alerts[0]
    assert alert["sender"] is Report and isinstance(alert["report"], Report)
    assert alert["replica_report"].lag_bytes > 0 and alert["previous"] is None
    assert alert["message"].startswith("replica replica2 WARNING: WAL replay is paused")
    assert " behind" in alert["message"]
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.name == "django_pgreplica.monitoring"
    assert "replica2" in warning.getMessage() and "behind" in warning.getMessage()


def test_down_replica_alerts_critical_then_recovery(
    alerts: list[dict[str, Any]], caplog: pytest.LogCaptureFixture, pgreplica: Any
) -> None:
    run_task()  # a healthy baseline sample
    pgreplica.stop("replica")
    summary = run_task()
    assert summary["status"] == "CRITICAL"
    by_replica = {(a["replica"], a["slot"]): a for a in alerts}
    down = by_replica[("replica", None)]
    assert down["level"] is Status.CRITICAL and down["previous"] is Status.OK
    assert "unreachable" in down["message"]
    slot = by_replica[("replica", "replica1")]  # its slot now retains WAL
    assert slot["level"] is Status.WARNING
    error = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert error.getMessage().startswith("replica replica CRITICAL: unreachable")
    newest = ReplicationSample.objects.using("default").filter(replica="replica").first()
    assert newest is not None and newest.status == 2 and not newest.reachable
    assert "unreachable" in newest.message

    alerts.clear()
    pgreplica.start("replica")
    summary = run_task()
    assert summary["status"] == "OK"
    assert [(a["replica"], a["level"], a["previous"]) for a in alerts] == [
        ("replica", Status.OK, Status.CRITICAL)
    ]


def test_unreachable_primary_alerts_unknown_and_stores_nothing(
    alerts: list[dict[str, Any]],
) -> None:
    with primary_unreachable():
        summary = run_task()
    assert summary["status"] == "UNKNOWN"
    assert summary["samples_stored"] == 0
    unknown = [a for a in alerts if a["replica"] is None and a["slot"] is None]
    assert len(unknown) == 1 and unknown[0]["level"] is Status.UNKNOWN
    assert unknown[0]["message"].startswith("primary default unreachable")
    assert ReplicationSample.objects.using("default").count() == 0


def test_old_samples_are_deleted_after_the_retention() -> None:
    now = timezone.now()
    for hours in (30, 2):
        ReplicationSample.objects.using("default").create(
            taken_at=now - timedelta(hours=hours), replica="replica", status=0
        )
    with pgreplica_settings(SAMPLE_RETENTION_HOURS=24):
        summary = run_task()
    assert summary["samples_deleted"] == 1
    ages = sorted(
        (now - s.taken_at).total_seconds() // 3600
        for s in ReplicationSample.objects.using("default").all()
    )
    assert ages[-1] == 2 and len(ages) == 3  # the 2-hour-old one and two new ones


def test_a_failing_receiver_does_not_stop_monitoring(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("slack is down")

    replication_alert.connect(broken, weak=False, dispatch_uid="test-broken")
    try:
        with primary_unreachable():
            summary = run_task()
    finally:
        replication_alert.disconnect(dispatch_uid="test-broken")
    assert summary["alerts"] >= 1
    assert "slack is down" in caplog.text
