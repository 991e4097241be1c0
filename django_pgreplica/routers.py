"""``ReplicaRouter``: writes to PRIMARY, reads to a replica that is healthy and has replayed
what the client must see, else to PRIMARY. The decision itself is
:func:`django_pgreplica.routing.select.route_read`."""

from __future__ import annotations

from typing import Any

from .conf import get_settings
from .consistency import current_state
from .contrib.tasks import QUEUE_APP_LABELS
from .routing.select import route_read


class ReplicaRouter:
    """Database router for one PostgreSQL primary and its streaming replicas."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        settings = get_settings()
        if model._meta.app_label in QUEUE_APP_LABELS:
            return settings.primary  # a task queue: its worker locks what it reads there
        return route_read(settings, current_state())

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return get_settings().primary

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        settings = get_settings()
        cluster = {settings.primary, *settings.replicas}
        if obj1._state.db in cluster and obj2._state.db in cluster:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # Replicas receive the schema through WAL; migrating them would fail read-only. A
        # monitoring alias is another role on a server of the cluster.
        settings = get_settings()
        if db == settings.primary:
            return True
        if db in settings.replicas or db in settings.monitoring_databases.values():
            return False
        return None
