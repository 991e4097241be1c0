"""Celery task for beat (needs the ``celery`` extra)::

CELERY_BEAT_SCHEDULE = {
    "pgreplica-monitor-replication": {
        "task": "django_pgreplica.tasks.monitor_replication",
        "schedule": 60.0,
    },
}
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .monitoring.cycle import run_cycle


@shared_task(name="django_pgreplica.tasks.monitor_replication", ignore_result=False)
def monitor_replication() -> dict[str, Any]:
    """Check replication, log and signal problems (``replication_alert``), store a lag
    sample per replica and prune old ones. Returns a JSON-able summary."""
    return run_cycle()
