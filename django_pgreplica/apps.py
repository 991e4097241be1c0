from __future__ import annotations

import importlib.util
from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def install_wrappers(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Watch the primary for writes and let replica reads fall back to the primary.

    Runs for every new connection; the wrappers stay on the (per-thread) connection object,
    so they are added once.
    """
    from .conf import get_settings
    from .consistency import write_detector
    from .routing.failover import primary_write_retry
    from .routing.fallback import primary_read_fallback, replica_fallback

    settings = get_settings()
    wrappers: tuple[Any, ...]
    if connection.alias == settings.primary:
        # Outermost first: a write is marked before it runs; a read whose connection
        # is lost may be rerun on a replica; a statement a demoted primary refused, on the
        # new primary.
        wrappers = (write_detector, primary_read_fallback, primary_write_retry)
    elif connection.alias in settings.replicas:
        wrappers = (replica_fallback,)
    else:
        return
    for wrapper in wrappers:
        if wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(wrapper)


class PgReplicaConfig(AppConfig):
    name = "django_pgreplica"
    verbose_name = "Replication"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
        from .routing import connecting, fleet
        from .routing.pool import bound_configured_pools

        connection_created.connect(install_wrappers, dispatch_uid="django_pgreplica.wrappers")
        connecting.install()  # the primary waits out a failover; a hung replica is shared
        fleet.install()  # with CACHE, routing counts reach replication_status and the admin
        # Before any pool exists: a pooled replica's getconn() waits its connect_timeout,
        # not psycopg_pool's 30 s.
        bound_configured_pools()
        # Optional integrations, each only when its library is installed.
        if _installed("prometheus_client"):
            from .contrib import prometheus

            prometheus.register()
        from .contrib import tasks

        tasks.connect()  # django.tasks (6.0+) or the django-tasks backport, when installed
        if _installed("celery"):
            from .contrib import celery

            celery.connect()


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
