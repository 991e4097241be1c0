"""A planned Patroni switchover under load, through gunicorn.

No read fails (tokenless or a client's own), no acknowledged write is lost, read-your-writes
holds, and writes wait for the new primary instead of failing; only a transaction that was
running on the old primary when it shut down fails (measured: 2 of ~250 writes).

The demo shop (``testproject.settings``) runs under gunicorn (2 workers, 4 threads each)
against a real 3-member Patroni cluster in synchronous mode, with aliases as a Patroni
site has them: the primary is every member with ``target_session_attrs=read-write``, the
replica alias every member with ``target_session_attrs=standby`` and random load
balancing. Eight shoppers each order and read their order back (cookie token), and read a
product without a token, in a loop, while the leader is switched over.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from django_pgreplica.testing.cluster import PatroniCluster
from tests.integration.patroni.site import PRODUCT, manage, running_site, site_env
from tests.integration.servers import HttpClient, Server

pytestmark = pytest.mark.patroni

SHOPPERS = 8
BEFORE, AFTER = 3.0, 8.0  # seconds of load before the switchover and after it returns


@pytest.fixture
def site(
    pgreplica_patroni_healthy: PatroniCluster, tmp_path: Path
) -> Iterator[tuple[Server, PatroniCluster]]:
    cluster = pgreplica_patroni_healthy
    with running_site(cluster, tmp_path / "gunicorn.log", workers=2, threads=4) as server:
        yield server, cluster


@dataclass
class Tally:
    acknowledged: list[int] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, kind: str, detail: str) -> None:
        with self.lock:
            self.failures[kind] += 1
            if len(self.errors) < 20:
                self.errors.append(f"{kind}: {detail}")


def shop(server: Server, stop_at: list[float], tally: Tally) -> None:
    me = HttpClient(server)
    while time.monotonic() < stop_at[0]:
        tally.requests["write"] += 1
        try:
            made = me.request("POST", "/api/orders/", {"product": PRODUCT, "email": "a@b.co"})
        except Exception as exc:  # a 500 or a dropped connection: the write failed
            tally.failed("write", str(exc)[-400:])
            continue
        if made.status != 201:
            tally.failed("write", f"{made.status} {made.data}")
            continue
        order = made.data["id"]
        with tally.lock:
            tally.acknowledged.append(order)
        tally.requests["own-read"] += 1
        try:
            mine = me.get(f"/api/orders/{order}/")
            if mine.status != 200:
                tally.failed("read-your-writes", f"order {order}: {mine.status}")
        except Exception as exc:
            tally.failed("own-read", str(exc)[:300])
        tally.requests["tokenless-read"] += 1
        try:
            page = HttpClient(server).get(f"/api/products/{PRODUCT}/")
            if page.status != 200:
                tally.failed("tokenless-read", f"{page.status}")
        except Exception as exc:
            tally.failed("tokenless-read", str(exc)[:300])


def server_errors(server: Server) -> list[str]:
    """The final exception line of each 500 in the server's log."""
    causes, in_error = [], False
    for line in server.log.read_text(errors="replace").splitlines():
        if "Internal Server Error" in line:
            in_error = True
        elif in_error and line.startswith("django.db.utils."):
            causes.append(line.split(": ", 1)[-1][:120])
            in_error = False
    return causes


def test_a_switchover_under_load_fails_no_read_and_loses_no_write(
    site: tuple[Server, PatroniCluster],
) -> None:
    server, cluster = site
    old = cluster.leader()
    stop_at = [float("inf")]
    tally = Tally()
    shoppers = [
        threading.Thread(target=shop, args=(server, stop_at, tally)) for _ in range(SHOPPERS)
    ]
    for thread in shoppers:
        thread.start()
    try:
        time.sleep(BEFORE)
        started = time.monotonic()
        new = cluster.switchover()
        switched = time.monotonic() - started
        time.sleep(AFTER)
    finally:
        stop_at[0] = 0.0
        for thread in shoppers:
            thread.join(timeout=60)
    assert new != old
    stored = {row[0] for row in cluster.execute(new, "SELECT id FROM shop_order")}
    lost = sorted(set(tally.acknowledged) - stored)
    summary: dict[str, Any] = {
        "switchover_seconds": round(switched, 1),
        "requests": dict(tally.requests),
        "failures": dict(tally.failures),
        "acknowledged": len(tally.acknowledged),
        "lost": lost[:10],
        "errors": tally.errors,
    }
    print(summary)
    assert tally.requests["write"] > 50, summary  # the load really ran
    assert not lost, summary
    assert tally.failures["read-your-writes"] == 0, summary
    assert tally.failures["tokenless-read"] == 0, summary
    assert tally.failures["own-read"] == 0, summary
    # A write never fails for want of a primary (its connection waits for the new one);
    # what may fail is a transaction that was running on the old primary as it shut down.
    causes = server_errors(server)
    summary["server_errors"] = causes
    assert not [c for c in causes if c.startswith("connection failed")], summary
    assert tally.failures["write"] <= SHOPPERS, summary

    # replication_status shows the new topology: the new leader as the primary, the old
    # one back among the replica alias's members once it streams again.
    after = cluster.wait_until_healthy(timeout=60)
    report = json.loads(manage(site_env(cluster), "replication_status", "--json"))
    ports = {m.name: m.pg_port for m in after.members}
    assert report["status"] == "OK", report
    assert report["primary"]["server"] == f"127.0.0.1:{ports[new]}"
    rows = {row["alias"]: row for row in report["replicas"]}
    assert set(rows) == {f"replica@127.0.0.1:{ports[n]}" for n in ports if n != new}, rows
    assert rows[f"replica@127.0.0.1:{ports[old]}"]["state"] == "streaming"
