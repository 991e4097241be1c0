"""The load driver: simulated shop clients, each on its own thread with its own token.

A client loops over a weighted mix of actions until told to stop:

- ``order``: ``POST /api/orders/`` then at once ``GET /api/orders/<id>/`` with the token
  the POST handed back. A 404 on that read is a read-your-writes violation.
- ``product``: ``GET /api/products/<slug>/`` (the async view).
- ``whoami``: ``GET /whoami-db/``: which server answered a fresh read (its port and
  ``pg_is_in_recovery()``), the evidence for "a replica that came back serves again".
- ``revisit``: ``GET /api/orders/<id>/`` of one of its own orders placed more than
  ``revisit_after`` seconds ago. A 404 there is a read-your-writes violation too: an LSN
  token lasts until every replica has replayed it, so no read may miss an own write.

Even-numbered clients carry the token as a browser does (the ``pgreplica`` cookie, with
its max-age honoured), odd-numbered ones as an API client does (``X-PgReplica-Token``).
Every fourth client is a "browser" that rarely orders: its cookie is usually gone (the
server deletes it once every replica has replayed it), so its reads are routed like a
stranger's: those are the tokenless reads that must survive a primary outage.
Each request uses a fresh HTTP/1.1 connection, so a connection error always means the
server failed that request (never a stale keep-alive socket).

The standard library is enough: the client side costs ~0.1 ms of CPU per request against
several ms of Django, and it keeps the harness free of extra dependencies.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

TOKEN_HEADER = "X-PgReplica-Token"
COOKIE_NAME = "pgreplica"

# kind of request -> what it is for the report
READ_KINDS = ("readback", "product", "whoami", "revisit")
ACTIONS: tuple[tuple[str, float], ...] = (
    ("order", 0.30),
    ("product", 0.30),
    ("whoami", 0.25),
    ("revisit", 0.15),
)
BROWSER_ACTIONS: tuple[tuple[str, float], ...] = (
    ("order", 0.03),
    ("product", 0.40),
    ("whoami", 0.27),
    ("revisit", 0.30),
)


@dataclass(frozen=True)
class Sample:
    """One HTTP request as the client saw it."""

    at: float  # monotonic seconds when it was sent
    kind: str  # order | readback | product | whoami | revisit
    status: int | None  # None: connection error or timeout
    latency: float  # seconds
    database: str | None = None  # the alias the JSON body says served the read
    error: str | None = None
    order_id: int | None = None
    token_age: float | None = None  # age of the token sent along; None: no token
    server_port: int | None = None  # whoami: the port of the server that answered
    in_recovery: bool | None = None  # whoami: that server's pg_is_in_recovery()
    sent_wall: float | None = None  # wall time sent, also in its X-Sent header (access logs)

    @property
    def live_token(self) -> bool:
        """Did the client send a token? The server decides whether it still binds."""
        return self.token_age is not None


@dataclass
class ClientResult:
    samples: list[Sample] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)  # order ids answered with 201
    violations: list[dict[str, Any]] = field(default_factory=list)


class TokenJar:
    """The client's read-your-writes token: a cookie with max-age, or the header value."""

    def __init__(self, use_cookie: bool) -> None:
        self.use_cookie = use_cookie
        self.value: str | None = None
        self.expires: float = 0.0
        self.received: float = 0.0

    def age(self, now: float) -> float | None:
        return None if self.value is None else now - self.received

    def request_headers(self, now: float) -> dict[str, str]:
        if self.value is None:
            return {}
        if self.use_cookie:
            if now >= self.expires:
                self.value = None  # the browser dropped the expired cookie
                return {}
            return {"Cookie": f"{COOKIE_NAME}={self.value}"}
        return {TOKEN_HEADER: self.value}

    def update(self, response: http.client.HTTPResponse, now: float) -> None:
        if not self.use_cookie:
            value = response.getheader(TOKEN_HEADER)
            if value:
                self.value = value
                self.received = now
            return
        for header in response.headers.get_all("Set-Cookie") or []:
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            morsel = cookie.get(COOKIE_NAME)
            if morsel is None:
                continue
            max_age = morsel["max-age"]
            self.value = morsel.value
            self.received = now
            self.expires = now + (float(max_age) if max_age else 3600.0)


class ShopClient(threading.Thread):
    def __init__(
        self,
        index: int,
        host: str,
        port: int,
        products: Sequence[str],
        stop: threading.Event,
        *,
        think: float = 0.0,
        timeout: float = 15.0,
        revisit_after: float = 6.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        self.index = index
        self.host = host
        self.port = port
        self.products = list(products)
        self.stop_event = stop
        self.think = think
        self.timeout = timeout
        self.revisit_after = revisit_after
        self.rng = random.Random(seed if seed is not None else index)
        self.jar = TokenJar(use_cookie=index % 2 == 0)
        self.actions = BROWSER_ACTIONS if index % 4 == 3 else ACTIONS
        self.result = ClientResult()
        self.placed: list[tuple[float, int]] = []  # (monotonic time, order id)

    # -- HTTP --------------------------------------------------------------------------
    def call(
        self, kind: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[Sample, dict[str, Any] | None]:
        headers = {"Host": f"{self.host}:{self.port}", "Connection": "close"}
        now = time.monotonic()
        headers.update(self.jar.request_headers(now))
        token_age = self.jar.age(now)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        started, sent_wall = time.monotonic(), time.time()
        headers["X-Sent"] = f"{sent_wall:.6f}"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            latency = time.monotonic() - started
            self.jar.update(response, time.monotonic())
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            latency = time.monotonic() - started
            failure = f"{type(exc).__name__}: {exc}"
            broken = Sample(
                started, kind, None, latency, error=failure, token_age=token_age,
                sent_wall=sent_wall,
            )  # fmt: skip
            return broken, None
        finally:
            conn.close()
        data: dict[str, Any] | None = None
        if raw.startswith(b"{"):
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
        database = data.get("database") if isinstance(data, dict) else None
        error = None if status < 500 else raw[:200].decode(errors="replace")
        order_id = data.get("id") if kind == "order" and isinstance(data, dict) else None
        port = data.get("server_port") if isinstance(data, dict) else None
        recovering = data.get("in_recovery") if isinstance(data, dict) else None
        sample = Sample(
            started, kind, status, latency, database, error, order_id, token_age,
            port if isinstance(port, int) else None,
            recovering if isinstance(recovering, bool) else None, sent_wall,
        )  # fmt: skip
        return sample, data

    def record(self, sample: Sample) -> Sample:
        self.result.samples.append(sample)
        return sample

    # -- actions -----------------------------------------------------------------------
    def place_and_read_back(self) -> None:
        slug = self.rng.choice(self.products)
        body = {"product": slug, "quantity": 1, "email": f"load{self.index}@example.com"}
        sample, data = self.call("order", "POST", "/api/orders/", body)
        self.record(sample)
        if sample.status != 201 or not data or not isinstance(data.get("id"), int):
            return
        order_id: int = data["id"]
        self.result.acknowledged.append(order_id)
        self.placed.append((sample.at, order_id))
        back = self.record(self.call("readback", "GET", f"/api/orders/{order_id}/")[0])
        if back.status == 404:
            self.violation(back, order_id, sample.at)

    def revisit(self) -> None:
        cutoff = time.monotonic() - self.revisit_after
        old = [entry for entry in self.placed if entry[0] <= cutoff]
        if not old:
            self.record(self.call("whoami", "GET", "/whoami-db/")[0])
            return
        placed_at, order_id = self.rng.choice(old)
        sample = self.record(self.call("revisit", "GET", f"/api/orders/{order_id}/")[0])
        if sample.status == 404:
            self.violation(sample, order_id, placed_at)

    def violation(self, read: Sample, order_id: int, written_at: float) -> None:
        """The client did not see its own order: it read data older than its last write."""
        self.result.violations.append(
            {
                "at": read.at,
                "read": read.kind,
                "order_id": order_id,
                "client": self.index,
                "token_via": "cookie" if self.jar.use_cookie else "header",
                "token_sent": read.live_token,
                "seconds_after_write": round(read.at - written_at, 3),
            }
        )

    def run(self) -> None:
        names = [name for name, _ in self.actions]
        weights = [weight for _, weight in self.actions]
        while not self.stop_event.is_set():
            action = self.rng.choices(names, weights)[0]
            if action == "order":
                self.place_and_read_back()
            elif action == "product":
                slug = self.rng.choice(self.products)
                self.record(self.call("product", "GET", f"/api/products/{slug}/")[0])
            elif action == "whoami":
                self.record(self.call("whoami", "GET", "/whoami-db/")[0])
            else:
                self.revisit()
            if self.think:
                self.stop_event.wait(self.rng.uniform(0, 2 * self.think))


def run_clients(
    count: int,
    host: str,
    port: int,
    products: Sequence[str],
    stop: threading.Event,
    **kwargs: Any,
) -> list[ShopClient]:
    """Start ``count`` clients; they run until ``stop`` is set (join them afterwards)."""
    clients = [ShopClient(i, host, port, products, stop, **kwargs) for i in range(count)]
    for client in clients:
        client.start()
    return clients
