"""Lag history written by the ``monitor_replication`` task (one row per replica per run).

Rows older than ``PGREPLICA["SAMPLE_RETENTION_HOURS"]`` are deleted by the same task. The
admin's replication page is guarded by this model's ``view`` permission:
``django_pgreplica.view_replicationsample``.
"""

from __future__ import annotations

from django.db import models

from ..health.breaker import CircuitState
from .types import Status

STATUS_CHOICES = [(status.value, status.name) for status in Status]
CIRCUIT_CHOICES = [(state.value, state.label) for state in CircuitState]


class ReplicationSample(models.Model):
    # Defined in monitoring (which writes it); Django finds it through django_pgreplica.models.
    taken_at = models.DateTimeField(db_index=True)
    replica = models.CharField(max_length=100, help_text="Django database alias")
    status = models.PositiveSmallIntegerField(choices=STATUS_CHOICES)
    reachable = models.BooleanField(default=True)
    in_recovery = models.BooleanField(null=True)
    state = models.CharField(max_length=32, blank=True, help_text="pg_stat_replication state")
    lag_seconds = models.FloatField(null=True, blank=True)
    lag_bytes = models.BigIntegerField(null=True, blank=True)
    slot_retained_bytes = models.BigIntegerField(null=True, blank=True)
    circuit_state = models.PositiveSmallIntegerField(
        choices=CIRCUIT_CHOICES, default=CircuitState.CLOSED.value
    )
    message = models.TextField(blank=True, help_text="why the status is not OK")

    class Meta:
        app_label = "django_pgreplica"
        ordering = ("-taken_at", "replica")
        indexes = (models.Index(fields=["replica", "-taken_at"], name="pgreplica_sample_replica"),)
        verbose_name = "replication sample"

    def __str__(self) -> str:
        return f"{self.replica} {Status(self.status).name} at {self.taken_at:%Y-%m-%d %H:%M:%S}"
