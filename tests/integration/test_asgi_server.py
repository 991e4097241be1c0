"""The demo shop under a real uvicorn process (``testproject.asgi``), not the test client.

The server runs the demo's own settings (``testproject.settings``, as ``scripts/demo
--asgi`` does) pointed at the test cluster's database, and the tests talk to it over HTTP:
the token goes out through the async middleware as a real ``Set-Cookie`` / header, and
comes back from a cookie jar or a header, as a browser's or an API client's would.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from decimal import Decimal

import pytest

from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from testproject.shop.models import Order, Product
from tests.integration.servers import REPLICAS, HttpClient, Server, start_server, stop

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

TOKEN_HEADER = "X-PgReplica-Token"


def uvicorn(port: int) -> list[str]:
    # Django's ASGI handler has no lifespan support: "off" keeps that out of the log.
    options = ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"]
    return [sys.executable, "-m", "uvicorn", "testproject.asgi:application", *options]


@pytest.fixture(scope="module")
def server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server("uvicorn", uvicorn, tmp_path_factory.mktemp("uvicorn") / "uvicorn.log")
    try:
        yield running
    finally:
        stop(running)


@pytest.fixture
def product() -> Product:
    made = Product.objects.create(
        name="Moka Pot", slug="moka-pot", price=Decimal("24.50"), stock=10
    )
    wait_for_replay()  # replicas have it: a tokenless read may be served by one
    return made


def test_the_servers_replica_aliases_are_standbys(server: Server, product: Product) -> None:
    whoami = HttpClient(server).get("/whoami-db/")
    assert whoami.status == 200
    assert whoami.data["database"] in REPLICAS
    assert whoami.data["in_recovery"] is True
    assert whoami.data["sample_product"] == product.slug


def test_an_async_view_reads_its_own_write_under_lag(server: Server, product: Product) -> None:
    api = f"/api/products/{product.slug}/"
    shopper, stranger = HttpClient(server), HttpClient(server)

    # Nothing lags: a tokenless async read is served by a replica.
    fresh = stranger.get(api)
    assert fresh.status == 200
    assert (fresh.data["stock"], fresh.data["database"] in REPLICAS) == (10, True), fresh.data

    with ExitStack() as paused:
        for alias in REPLICAS:
            paused.enter_context(replay_paused(alias))

        placed = shopper.request("POST", f"{api}orders/", {"quantity": 2, "email": "a@b.co"})
        assert placed.status == 201, placed.data
        assert Product.objects.using("default").get(pk=product.pk).stock == 8
        token = placed.headers.get(TOKEN_HEADER)
        assert token, placed.headers  # the async middleware handed out a token ...
        assert "pgreplica" in shopper.cookies()  # ... as a cookie the jar keeps

        # The writer's next async read (the cookie) sees its order's stock, from the
        # primary: no replica has replayed it.
        mine = shopper.get(api)
        assert (mine.data["stock"], mine.data["database"]) == (8, "default"), mine.data
        # An API client that sends back only the header sees it too.
        by_header = HttpClient(server, headers={TOKEN_HEADER: token}).get(api)
        assert (by_header.data["stock"], by_header.data["database"]) == (8, "default")

        # Control: without the token the same async read is a replica's, which lacks the
        # order (so a router that ignored the token would fail the assertions above).
        stale = stranger.get(api)
        assert stale.data["database"] in REPLICAS, stale.data
        assert stale.data["stock"] == 10, stale.data
        assert "pgreplica" not in stranger.cookies()

    wait_for_replay()
    # Replayed: the token no longer keeps the writer off the replicas.
    caught_up = shopper.get(api)
    assert (caught_up.data["stock"], caught_up.data["database"] in REPLICAS) == (8, True)
    assert Order.objects.using("default").get().email == "a@b.co"


def test_the_async_order_view_rejects_bad_requests(server: Server, product: Product) -> None:
    client = HttpClient(server)
    orders = f"/api/products/{product.slug}/orders/"
    assert client.get(orders).status == 405
    assert client.request("POST", "/api/products/nope/orders/", {"email": "a@b.co"}).status == 404
    bad = client.request("POST", orders, {"quantity": 0, "email": "not-an-email"})
    assert bad.status == 400
    assert set(bad.data["errors"]) == {"quantity", "email"}
    too_many = client.request("POST", orders, {"quantity": 10, "email": "a@b.co"})
    assert too_many.status == 201  # exactly the stock
    sold_out = client.request("POST", orders, {"quantity": 1, "email": "a@b.co"})
    assert sold_out.status == 409, sold_out.data
    assert "pgreplica" in client.cookies()
