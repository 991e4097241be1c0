"""Read helpers shared by the routing tests (a product named "Lamp" exists)."""

from __future__ import annotations

import time

from django_pgreplica.consistency import scope
from django_pgreplica.routers import ReplicaRouter
from testproject.shop.models import Product


def timed_read() -> tuple[str, float]:
    """(the alias the router chose, seconds) for one read in a scope of its own."""
    started = time.monotonic()
    with scope():
        alias = ReplicaRouter().db_for_read(Product)
        assert list(Product.objects.values_list("name", flat=True)) == ["Lamp"]
    return alias, time.monotonic() - started
