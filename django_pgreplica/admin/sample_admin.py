"""The read-only admin of :class:`ReplicationSample`, the rows behind the lag history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from ..models import ReplicationSample

if TYPE_CHECKING:
    _SampleAdminBase = admin.ModelAdmin[ReplicationSample]
else:  # ModelAdmin is generic only in django-stubs
    _SampleAdminBase = admin.ModelAdmin


class ReplicationSampleAdmin(_SampleAdminBase):
    """The samples the ``monitor_replication`` task stores: browsable, never edited."""

    list_display = (
        "taken_at", "replica", "status", "reachable", "state", "lag_seconds", "lag_bytes",
        "slot_retained_bytes", "circuit_state", "message",
    )  # fmt: skip
    list_filter = ("replica", "status", "reachable")
    date_hierarchy = "taken_at"
    ordering = ("-taken_at", "replica")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
