"""Read-your-writes across requests: LSN tokens, time pins, forged tokens, sessions, ASGI."""

from __future__ import annotations

import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import AsyncClient, Client

from django_pgreplica.clock import FakeClock
from django_pgreplica.conf import LSN_TOKEN_MAX_SECONDS
from django_pgreplica.consistency import scope
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from testproject.shop.models import Product
from tests.support import pgreplica_settings

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

ONE_REPLICA: dict[str, Any] = {"REPLICAS": ["replica"], "HEALTH_CHECK_INTERVAL": 0.2}


@pytest.fixture
def product() -> Product:
    with scope():  # as a request would: no write outside a scope for the router to chase
        product = Product.objects.create(name="Lamp", slug="lamp", price=10, stock=100)
    wait_for_replay()
    return product


def place_order(client: Client, **extra: Any) -> int:
    response = client.post(
        "/api/orders/",
        {"product": "lamp", "quantity": 1, "email": "a@example.com"},
        content_type="application/json",
        **extra,
    )
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def served_from(client: Client, **extra: Any) -> str:
    return str(client.get("/whoami-db/", **extra).json()["database"])


def test_lsn_token_holds_the_client_on_the_primary_until_the_replica_catches_up(
    product: Product,
) -> None:
    writer, other = Client(), Client()
    with pgreplica_settings(**ONE_REPLICA, STICKY_SECONDS=60):
        with replay_paused("replica"):
            order_id = place_order(writer)
            assert "pgreplica" in writer.cookies
            # The writer sees its order; the read came from the primary.
            assert writer.get(f"/orders/{order_id}/").status_code == 200
            assert served_from(writer) == "default"
            # Everyone else keeps reading the (stale) replica.
            assert served_from(other) == "replica"
            assert other.get(f"/orders/{order_id}/").status_code == 404
        started = time.monotonic()
        wait_for_replay()
        # Back on the replica as soon as it has replayed the write, long before 60 s.
        while served_from(writer) != "replica":
            assert time.monotonic() - started < 5
            time.sleep(0.05)
        assert writer.get(f"/orders/{order_id}/").status_code == 200


def test_header_token_for_api_clients_without_cookies(product: Product) -> None:
    client = Client()
    with pgreplica_settings(**ONE_REPLICA, STICKY_SECONDS=60), replay_paused("replica"):
        response = client.post(
            "/api/orders/",
            {"product": "lamp", "email": "b@example.com"},
            content_type="application/json",
        )
        token = response.headers["X-PgReplica-Token"]
        bare = Client()  # no cookie jar shared: only the header carries the token
        order_id = response.json()["id"]
        assert bare.get(f"/api/orders/{order_id}/").status_code == 404
        found = bare.get(f"/api/orders/{order_id}/", HTTP_X_PGREPLICA_TOKEN=token)
        assert found.status_code == 200
        assert found.json()["database"] == "default"


def test_an_lsn_token_outlives_sticky_seconds_while_the_replica_lags(
    product: Product, clock: FakeClock
) -> None:
    client = Client()
    with pgreplica_settings(**ONE_REPLICA, STICKY_SECONDS=1):
        with replay_paused("replica"):
            order_id = place_order(client)
            clock.advance(10)  # far past STICKY_SECONDS, within MAX_LAG_SECONDS
            assert served_from(client) == "default"
            assert client.get(f"/orders/{order_id}/").status_code == 200
        wait_for_replay()
        clock.advance(1)  # the next probe sees the replica caught up
        assert served_from(client) == "replica"


def test_the_writer_never_reads_stale_data_however_long_the_replica_lags(
    product: Product,
) -> None:
    """Real time: the lag is PostgreSQL's own. The writer reads its order at every moment
    of a pause that runs far past STICKY_SECONDS and MAX_LAG_SECONDS."""
    writer, other = Client(), Client()
    overrides = {**ONE_REPLICA, "STICKY_SECONDS": 0.5, "MAX_LAG_SECONDS": 1.0}
    with pgreplica_settings(**overrides), replay_paused("replica"):
        order_id = place_order(writer)
        others: list[str] = []
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            assert writer.get(f"/orders/{order_id}/").status_code == 200
            others.append(served_from(other))
            time.sleep(0.1)
        # Readers that never wrote used the replica until it lagged past MAX_LAG_SECONDS.
        assert others[0] == "replica" and others[-1] == "default", others
    wait_for_replay()
    deadline = time.monotonic() + 5
    while served_from(writer) != "replica":
        assert time.monotonic() < deadline, "the writer never went back to the replica"
        time.sleep(0.1)


def test_a_replayed_token_cookie_is_dropped(product: Product) -> None:
    client = Client()
    with pgreplica_settings(**ONE_REPLICA):
        place_order(client)
        cookie = client.cookies["pgreplica"]
        assert cookie.value
        # The cookie lives as long as the token stays in force, not STICKY_SECONDS.
        assert int(cookie["max-age"]) >= LSN_TOKEN_MAX_SECONDS - 1
        wait_for_replay()
        deadline = time.monotonic() + 5
        while client.cookies["pgreplica"].value:  # deleted: an empty, expired cookie
            assert time.monotonic() < deadline, "the token cookie was never dropped"
            served_from(client)
            time.sleep(0.1)
        assert served_from(client) == "replica"


def test_time_mode_pins_for_the_window(product: Product, clock: FakeClock) -> None:
    client = Client()
    with pgreplica_settings(**ONE_REPLICA, READ_YOUR_WRITES="time", STICKY_SECONDS=1):
        place_order(client)
        wait_for_replay()
        assert served_from(client) == "default"  # replica has it, but time mode waits
        clock.advance(1.2)
        assert served_from(client) == "replica"


def test_off_mode_sets_no_token(product: Product) -> None:
    client = Client()
    with pgreplica_settings(**ONE_REPLICA, READ_YOUR_WRITES="off"):
        response = client.post(
            "/api/orders/",
            {"product": "lamp", "email": "c@example.com"},
            content_type="application/json",
        )
        assert response.status_code == 201
        assert "pgreplica" not in response.cookies
        assert "X-PgReplica-Token" not in response.headers
        assert served_from(client) == "replica"


@pytest.mark.parametrize("value", ["garbage", "a:b:c", "eyJhIjoxfQ:1tX:abc", "\u00e9" * 10])
def test_forged_token_is_ignored(product: Product, value: str) -> None:
    client = Client()
    client.cookies["pgreplica"] = value
    with pgreplica_settings(**ONE_REPLICA):
        response = client.get("/whoami-db/", HTTP_X_PGREPLICA_TOKEN=value)
        assert response.status_code == 200
        assert response.json()["database"] == "replica"


def test_reads_without_a_write_set_no_cookie(product: Product) -> None:
    response = Client().get("/")
    assert response.status_code == 200
    assert "pgreplica" not in response.cookies


def login_then_open_admin(mode: str) -> int:
    User.objects.create_superuser("boss", "boss@example.com", "pw")
    wait_for_replay()
    client = Client()
    with pgreplica_settings(**ONE_REPLICA, READ_YOUR_WRITES=mode), replay_paused("replica"):
        response = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": "pw"})
        assert response.status_code == 302
        return client.get("/admin/").status_code


def test_admin_login_under_lag_keeps_the_user_logged_in() -> None:
    assert login_then_open_admin("lsn") == 200


def test_without_read_your_writes_the_same_login_looks_logged_out() -> None:
    """The control case: proves the replica really lags in the test above."""
    assert login_then_open_admin("off") == 302


def test_async_view_under_asgi_reads_its_own_writes(product: Product) -> None:
    """ASGI request handling: the middleware runs async, the views in threads or natively."""

    async def scenario() -> None:
        client = AsyncClient()
        response = await client.post(
            "/api/orders/",
            {"product": "lamp", "email": "d@example.com"},
            content_type="application/json",
        )
        assert response.status_code == 201
        token = response.headers["X-PgReplica-Token"]
        fresh = await client.get("/api/products/lamp/", HTTP_X_PGREPLICA_TOKEN=token)
        assert fresh.json()["database"] == "default"
        assert fresh.json()["stock"] == 99
        stale = await AsyncClient().get("/api/products/lamp/")
        assert stale.json()["database"] == "replica"
        assert stale.json()["stock"] == 100

    with pgreplica_settings(**ONE_REPLICA, STICKY_SECONDS=60), replay_paused("replica"):
        async_to_sync(scenario)()


@pytest.mark.urls("tests.streaming_urls")
def test_a_streaming_body_reads_with_its_request_state(product: Product) -> None:
    """The body is produced after the middleware returned: the request's pin must hold."""
    response = Client().get("/stream/")
    assert b"".join(response.streaming_content) == b"start default"
    response.close()
    assert "pgreplica" in response.cookies


@pytest.mark.redis
def test_user_scope_a_write_on_one_device_is_read_on_another(product: Product) -> None:
    user = User.objects.create_user("dana", password="pw")
    laptop, phone, stranger = Client(), Client(), Client()
    laptop.force_login(user)
    phone.force_login(user)
    stranger.force_login(User.objects.create_user("finn", password="pw"))
    wait_for_replay()  # the logins are on the replica: their tokens are spent
    with pgreplica_settings(**ONE_REPLICA, READ_YOUR_WRITES_SCOPE="user", CACHE="shared"):
        with replay_paused("replica"):
            order_id = place_order(laptop)
            # The phone carries no token of that write, but it is the same user.
            assert phone.get(f"/orders/{order_id}/").status_code == 200
            assert served_from(phone) == "default"
            # Another user (and an anonymous client) keep reading the stale replica.
            assert stranger.get(f"/orders/{order_id}/").status_code == 404
            assert served_from(stranger) == "replica"
            assert Client().get(f"/orders/{order_id}/").status_code == 404
        wait_for_replay()
        deadline = time.monotonic() + 5
        while served_from(phone) != "replica":  # the user's position is replayed: done
            assert time.monotonic() < deadline, "the user stayed on the primary"
            time.sleep(0.1)


@pytest.mark.redis
def test_client_scope_does_not_follow_the_user(product: Product) -> None:
    user = User.objects.create_user("eli", password="pw")
    laptop, phone = Client(), Client()
    laptop.force_login(user)
    phone.force_login(user)
    wait_for_replay()
    with pgreplica_settings(**ONE_REPLICA, CACHE="shared"), replay_paused("replica"):
        order_id = place_order(laptop)
        assert phone.get(f"/orders/{order_id}/").status_code == 404  # the stale replica
