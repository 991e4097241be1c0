"""The demo shop against a real primary + streaming replicas.

Replicas only see committed, replayed data, hence ``transaction=True`` and
``wait_for_replay()`` after creating fixtures. Pausing replay makes a replica stale on
purpose: a page that still finds a just-written row proves read-your-writes routing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from testproject.shop import services
from testproject.shop.models import Order, Product
from testproject.shop.tasks import send_order_confirmation
from tests.factories import OrderFactory, ProductFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

REPLICAS: list[str] = list(settings.PGREPLICA["REPLICAS"])


@contextmanager
def all_replicas_paused() -> Iterator[None]:
    """Every replica frozen at its current replay position."""
    with ExitStack() as stack:
        for alias in REPLICAS:
            stack.enter_context(replay_paused(alias))
        yield


@pytest.fixture
def product() -> Product:
    made = ProductFactory(name="Moka Pot", price=Decimal("24.50"), stock=10)
    wait_for_replay()
    return made


@pytest.fixture
def confirmations(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Run the confirmation task inline where the view enqueues it (after commit), in the
    request's routing context, and collect its results."""
    results: list[dict[str, Any]] = []

    def enqueue(order_id: int) -> None:
        results.append(send_order_confirmation.apply(args=(order_id,)).get())

    monkeypatch.setattr(services, "enqueue_confirmation", enqueue)
    return results


def test_an_order_is_placed_when_its_confirmation_cannot_be_queued(
    client: Client, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broker_down(order_id: int) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(services, "enqueue_confirmation", broker_down)
    response = client.post(f"/products/{product.slug}/", {"quantity": 1, "email": "bo@example.com"})
    assert response.status_code == 302  # committed: the customer sees the order, not a 500
    assert Order.objects.using("default").filter(email="bo@example.com").count() == 1


def test_product_list_reads_from_a_replica(client: Client, product: Product) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "Moka Pot" in response.content.decode()
    assert response.context["database"] in REPLICAS


def test_product_detail_renders_the_order_form(client: Client, product: Product) -> None:
    response = client.get(f"/products/{product.slug}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Moka Pot" in body
    assert 'name="email"' in body
    assert response.context["database"] in REPLICAS


def test_unknown_product_is_404(client: Client) -> None:
    assert client.get("/products/no-such-thing/").status_code == 404


def test_placing_an_order_reads_it_back_despite_stale_replicas(
    client: Client, product: Product, confirmations: list[dict[str, Any]]
) -> None:
    with all_replicas_paused():
        response = client.post(
            f"/products/{product.slug}/", {"quantity": 2, "email": "ann@example.com"}
        )
        assert response.status_code == 302
        order = Order.objects.using("default").get()
        assert response["Location"] == f"/orders/{order.pk}/"

        # Same client: carries the read-your-writes token, so it must see its order ...
        page = client.get(response["Location"])
        assert page.status_code == 200
        assert "ann@example.com" in page.content.decode()
        assert page.context["database"] == "default"

        # ... while a client that never wrote reads the stale replica and gets a 404.
        assert Client().get(response["Location"]).status_code == 404

    # The confirmation task ran after commit and found the order while replicas lagged.
    assert confirmations == [
        {
            "order_id": order.pk,
            "status": "sent",
            "email": "ann@example.com",
            "product": product.slug,
            "database": "default",
        }
    ]
    assert Product.objects.using("default").get(pk=product.pk).stock == 8


def test_ordering_more_than_the_stock_is_refused(client: Client, product: Product) -> None:
    response = client.post(f"/products/{product.slug}/", {"quantity": 10, "email": "a@b.co"})
    assert response.status_code == 302  # exactly the stock: fine
    response = client.post(f"/products/{product.slug}/", {"quantity": 1, "email": "a@b.co"})
    assert response.status_code == 200
    assert "Not enough stock" in response.content.decode()
    assert Order.objects.using("default").count() == 1


def test_json_api_order_roundtrip(client: Client, product: Product) -> None:
    with all_replicas_paused():
        created = client.post(
            "/api/orders/",
            {"product": product.slug, "quantity": 1, "email": "bob@example.com"},
            content_type="application/json",
        )
        assert created.status_code == 201, created.content
        order_id = created.json()["id"]

        fetched = client.get(f"/api/orders/{order_id}/")
        assert fetched.status_code == 200
        assert fetched.json()["email"] == "bob@example.com"
        assert Client().get(f"/api/orders/{order_id}/").status_code == 404


def test_json_api_rejects_bad_input(client: Client, product: Product) -> None:
    response = client.post(
        "/api/orders/", {"product": "nope", "email": "x@y.z"}, content_type="application/json"
    )
    assert response.status_code == 400
    response = client.post(
        "/api/orders/",
        {"product": product.slug, "quantity": 0, "email": "not-an-email"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"quantity", "email"}
    assert client.get("/api/orders/").status_code == 405


def test_async_product_api(client: Client, product: Product) -> None:
    response = client.get(f"/api/products/{product.slug}/")
    assert response.status_code == 200
    data = response.json()
    assert data["name"] == "Moka Pot"
    assert data["price"] == "24.50"
    assert data["database"] in REPLICAS
    assert client.get("/api/products/missing/").status_code == 404


def test_whoami_db_reports_a_replica_until_the_client_writes(
    client: Client, product: Product
) -> None:
    data = client.get("/whoami-db/").json()
    assert data["database"] in REPLICAS
    assert data["in_recovery"] is True
    assert data["sample_product"] == product.slug

    with all_replicas_paused():
        client.post(f"/products/{product.slug}/", {"quantity": 1, "email": "c@example.com"})
        data = client.get("/whoami-db/").json()
        assert data["database"] == "default"
        assert data["in_recovery"] is False


def test_order_page_is_404_for_a_missing_order(client: Client) -> None:
    assert client.get("/orders/999999/").status_code == 404
    assert client.get("/api/orders/999999/").status_code == 404


def test_confirmation_task_reports_missing_orders() -> None:
    assert send_order_confirmation(987654) == {
        "order_id": 987654,
        "status": "not_found",
        "database": None,
    }


def test_confirmation_task_reads_the_order() -> None:
    order = OrderFactory(email="dee@example.com")
    wait_for_replay()
    result = send_order_confirmation(order.pk)
    assert result["status"] == "sent"
    assert result["email"] == "dee@example.com"


def test_seed_demo_is_idempotent() -> None:
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())
    assert Product.objects.using("default").count() == 20
    admins = get_user_model().objects.using("default").filter(username="admin")
    assert admins.count() == 1
    admin = admins.get()
    assert admin.is_superuser
    assert admin.check_password("admin")


def test_factories() -> None:
    order = OrderFactory()
    assert order.pk is not None
    assert order.product.pk is not None
    assert ProductFactory(name=order.product.name) == order.product  # get_or_create by slug
    user = UserFactory()
    assert user.check_password("password")


def test_metrics_include_the_replication_metrics(client: Client, product: Product) -> None:
    client.get("/")  # one routed read, so the read counter has a sample
    response = client.get("/metrics")
    assert response.status_code == 200
    body = response.content.decode()
    for name in (
        "django_pgreplica_replica_lag_seconds",
        "django_pgreplica_replica_lag_bytes",
        "django_pgreplica_circuit_state",
        "django_pgreplica_reads_total",
    ):
        assert name in body, name


def test_admin_and_replication_panel_are_staff_only(client: Client) -> None:
    assert client.get(reverse("admin:index")).status_code == 302  # to the login page
    assert client.get("/admin/replication/").status_code == 302
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    assert client.get(reverse("admin:index")).status_code == 200
    response = client.get("/admin/replication/")
    assert response.status_code == 200
    for alias in REPLICAS:
        assert alias in response.content.decode()


def test_settings_pass_the_system_checks() -> None:
    call_command("check", fail_level="WARNING", stdout=StringIO())


def test_no_missing_migrations() -> None:
    call_command("makemigrations", "shop", check=True, dry_run=True, stdout=StringIO())
