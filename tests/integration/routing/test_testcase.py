"""An existing project's plain ``django.test.TestCase`` tests keep passing (clause 9).

These are the tests a site already has, unchanged: rows made in ``setUpTestData`` or in the
test, read back through the ORM and through views, with the replicas configured as
``TEST["MIRROR"]`` of the primary (the pytest plugin does that, as a project's settings
would). A TestCase never commits, so its rows exist only on the primary's connection: the
router reads the primary inside a TestCase's transaction, by design. The checks after each
read prove that design, not luck: the read was routed to the primary for reason ``atomic``,
and no replica was tried (which Django would refuse in a TestCase that does not list it, and
the router would count as a failed replica).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import ClassVar

import pytest
from django.conf import settings
from django.db import connections, transaction
from django.test import TestCase, TransactionTestCase

from django_pgreplica import scope
from django_pgreplica.health import get_health
from django_pgreplica.routing import stats
from django_pgreplica.testing.plugin import wait_for_replay
from testproject.shop.models import Product

PRIMARY: str = settings.PGREPLICA["PRIMARY"]
REPLICAS: list[str] = list(settings.PGREPLICA["REPLICAS"])


def reads_by(reason: str) -> int:
    return sum(n for (_, why), n in stats.reads().items() if why == reason)


def assert_no_replica_failed() -> None:
    for alias in REPLICAS:
        health = get_health(alias)
        assert not health.suspect and not health.breaker.failures, f"{alias} counted a failure"


class RouterIsQuiet:
    """Mixin: the router neither tried a replica nor counted one as failed."""

    def assert_no_replica_touched(self) -> None:
        for alias in REPLICAS:
            assert connections[alias].connection is None, f"{alias} was connected to"
        assert_no_replica_failed()


class ShopTestCase(TestCase, RouterIsQuiet):
    """A TestCase as a project writes it: default ``databases`` (the primary only)."""

    product: ClassVar[Product]

    @classmethod
    def setUpTestData(cls) -> None:
        cls.product = Product.objects.create(
            name="Moka Pot", slug="moka-pot", price=Decimal("24.50"), stock=5
        )

    def test_the_orm_reads_rows_from_setuptestdata(self) -> None:
        before = reads_by(stats.REASON_ATOMIC)
        with scope():  # a fresh request's scope: it has not written
            found = Product.objects.get(slug="moka-pot")
        assert found.pk == self.product.pk
        assert found._state.db == PRIMARY
        assert reads_by(stats.REASON_ATOMIC) == before + 1
        self.assert_no_replica_touched()

    def test_views_read_rows_the_test_made(self) -> None:
        Product.objects.create(name="Grinder", slug="grinder", price=Decimal("80"), stock=1)
        page = self.client.get("/products/grinder/")
        assert page.status_code == 200
        assert b"Grinder" in page.content
        api = self.client.get("/api/products/grinder/")  # the async view
        assert api.status_code == 200, api.content
        assert api.json()["name"] == "Grinder"
        self.assert_no_replica_touched()

    def test_an_order_placed_through_a_view_is_found(self) -> None:
        made = self.client.post("/api/orders/", {"product": "moka-pot", "email": "ann@example.com"})
        assert made.status_code == 201, made.content
        order = self.client.get(f"/api/orders/{made.json()['id']}/")
        assert order.status_code == 200, order.content
        self.assert_no_replica_touched()

    def test_a_long_suite_opens_no_circuit(self) -> None:
        with self.assertNoLogs("django_pgreplica", level=logging.WARNING):
            for _ in range(50):
                with scope():
                    assert Product.objects.filter(slug="moka-pot").exists()
        self.assert_no_replica_touched()


class AllDatabasesTestCase(TestCase):
    """``databases = "__all__"``: Django opens a transaction on each replica mirror too, on
    its own connection to the replica, which cannot see the test's rows: the router does not
    send reads there."""

    databases = "__all__"

    def test_reads_stay_on_the_primary(self) -> None:
        Product.objects.create(name="Kettle", slug="kettle", price=Decimal("30"), stock=2)
        before = reads_by(stats.REASON_ATOMIC)
        with scope():
            assert Product.objects.get(slug="kettle")._state.db == PRIMARY
        # For the TestCase's transaction, not because the replica lacks the write
        # (reason token-wait): the replica's own transaction would not see it either way.
        assert reads_by(stats.REASON_ATOMIC) == before + 1
        assert_no_replica_failed()


@pytest.mark.django_db(transaction=True, databases="__all__")
class CommittingTestCase(TransactionTestCase):
    """The control: a TransactionTestCase commits, so its reads go to replicas as in
    production — the rule above is about the TestCase's transaction, not about tests."""

    databases = "__all__"

    def test_reads_go_to_a_replica(self) -> None:
        Product.objects.create(name="Scale", slug="scale", price=Decimal("40"), stock=3)
        wait_for_replay()
        with scope():
            assert Product.objects.get(slug="scale")._state.db in REPLICAS
        with scope(), transaction.atomic():  # a user's own transaction still reads the primary
            assert Product.objects.get(slug="scale")._state.db == PRIMARY
