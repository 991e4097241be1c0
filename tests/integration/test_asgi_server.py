"""The demo shop under a real uvicorn process (``testproject.asgi``), not the test client.

The server runs the demo's own settings (``testproject.settings``, as ``scripts/demo
--asgi`` does) pointed at the test cluster's database, and the tests talk to it over HTTP:
the token goes out through the async middleware as a real ``Set-Cookie`` / header, and
comes back from a cookie jar or a header, as a browser's or an API client's would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pytest
from django.conf import settings
from django.db import connections

from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from testproject.shop.models import Order, Product

pytestmark = [
    pytest.mark.django_db(transaction=True, databases="__all__"),
    pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="uvicorn not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
REPLICAS: list[str] = list(settings.PGREPLICA["REPLICAS"])
TOKEN_HEADER = "X-PgReplica-Token"
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env() -> dict[str, str]:
    """The demo settings' environment, pointed at the test database on the test cluster."""
    primary = connections[settings.PGREPLICA["PRIMARY"]].settings_dict
    replicas = [connections[alias].settings_dict for alias in REPLICAS]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "DJANGO_")) and key != "PGREPLICA_READ_YOUR_WRITES"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="testproject.settings",
        PYTHONPATH=str(ROOT),
        DATABASE_HOST=str(primary["HOST"]),
        DATABASE_PORT=str(primary["PORT"]),
        DATABASE_NAME=str(primary["NAME"]),  # test_<name>: where the tests' rows are
        DATABASE_USER=str(primary["USER"]),
        DATABASE_PASSWORD=str(primary.get("PASSWORD") or ""),
        DATABASE_REPLICAS=",".join(f"{r['HOST']}:{r['PORT']}" for r in replicas),
        # No broker: the order confirmation runs inline after the commit that queued it.
        CELERY_TASK_ALWAYS_EAGER="1",
    )
    return env


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def start_uvicorn(log: Path) -> Server:
    """``uvicorn testproject.asgi:application`` on a free port, once it accepts connections."""
    for _attempt in range(3):  # another process may take the port between probe and bind
        port = free_port()
        # Django's ASGI handler has no lifespan support: "off" keeps that out of the log.
        options = ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "testproject.asgi:application", *options],
                cwd=ROOT,
                env=server_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(f"http://127.0.0.1:{port}", process, log)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return server
            except OSError:
                time.sleep(0.05)  # polling for the server to come up
        stop(server)
        if "address already in use" not in server.log_tail().lower():
            pytest.fail(f"uvicorn did not come up:\n{server.log_tail()}", pytrace=False)
    pytest.fail("uvicorn found no free port in 3 attempts", pytrace=False)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="module")
def server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_uvicorn(tmp_path_factory.mktemp("uvicorn") / "uvicorn.log")
    try:
        yield running
    finally:
        stop(running)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    data: Any


@dataclass
class HttpClient:
    """One client of the server: a browser's cookie jar, and headers it adds itself."""

    server: Server
    headers: dict[str, str] = field(default_factory=dict)
    jar: CookieJar = field(default_factory=CookieJar)

    def __post_init__(self) -> None:
        # No ProxyHandler from the environment: an http_proxy must not see 127.0.0.1.
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.jar)
        )

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Response:
        headers = {"Accept": "application/json", **self.headers}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.server.url + path, data, headers, method=method)
        try:
            with self.opener.open(req, timeout=10) as resp:
                status, raw, got = resp.status, resp.read(), resp.headers
        except HTTPError as err:  # 4xx/5xx still carry the JSON answer
            status, raw, got = err.code, err.read(), err.headers
        assert status < 500, f"{method} {path}: {status}\n{self.server.log_tail()}"
        parsed = json.loads(raw) if got.get_content_type() == "application/json" else raw
        return Response(status, dict(got.items()), parsed)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def cookies(self) -> set[str]:
        return {cookie.name for cookie in self.jar}


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
