"""The demo shop in-process on a local cluster of its own: what the small benchmarks share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def demo_on_cluster(name: str, port: int, replicas: int = 1) -> Any:
    """Start (or reuse) ``.pgreplica/<name>``, point the demo's settings at it, set Django
    up, migrate, and make sure the ``bench`` product exists and is replayed. Returns the
    :class:`~django_pgreplica.testing.cluster.Cluster`."""
    from django_pgreplica.testing.cluster import Cluster

    cluster = Cluster(ROOT / ".pgreplica" / name, port=port, replicas=replicas)
    cluster.up()
    os.environ.update(cluster.env())
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from testproject.shop.models import Product

    Product.objects.get_or_create(
        slug="bench", defaults={"name": "Bench", "price": 1, "stock": 10**9}
    )
    cluster.wait_replayed()
    return cluster
