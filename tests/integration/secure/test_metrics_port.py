"""/metrics as compose serves it: not on the web port, but on django-prometheus's export
port of each gunicorn worker (PROMETHEUS_METRICS_EXPORT_PORT_RANGE, one port per worker),
with django_pgreplica's series there too — the collector is on prometheus_client's
default registry, which the export server serves. The demo's own settings
(testproject.settings) over verify-full TLS as the application role, with PGREPLICA_CACHE_URL
as compose sets it: then each worker's routing counters are the whole fleet's, which is why
Prometheus takes them from one worker (ops/prometheus/prometheus.yml)."""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.error import HTTPError

import pytest
from prometheus_client.parser import text_string_to_metric_families

from django_pgreplica.consistency import scope
from django_pgreplica.testing.cluster import MONITOR_USER, Cluster, free_base_port
from testproject.shop.models import Product
from tests.integration.contrib.test_celery import redis_url  # noqa: F401 - fixture
from tests.integration.servers import HttpClient, Server, start_server, stop

pytestmark = pytest.mark.redis

WORKERS = 2
REQUESTS = 30
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def gunicorn(port: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "testproject.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS), "--worker-class", "sync",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def metrics_ports() -> range:
    base = free_base_port(64750, WORKERS + 2)
    return range(base, base + WORKERS + 2)


@pytest.fixture(scope="module")
def server(
    secure_databases: Cluster,
    metrics_ports: range,
    redis_url: str,  # noqa: F811 - the fixture
    tmp_path_factory: pytest.TempPathFactory,
    django_db_blocker: Any,
) -> Iterator[Server]:
    cluster = secure_databases
    with django_db_blocker.unblock(), scope():
        Product.objects.get_or_create(slug="moka-pot", name="Moka Pot", price=Decimal("24.50"))
    cluster.wait_replayed()
    tls = cluster.secure_files.client_params()
    running = start_server(
        "gunicorn",
        gunicorn,
        tmp_path_factory.mktemp("gunicorn") / "gunicorn.log",
        DATABASE_SSLMODE=tls["sslmode"],
        DATABASE_SSLROOTCERT=tls["sslrootcert"],
        # /metrics reads replication state as the monitoring role, as compose has it
        DATABASE_MONITOR_USER=MONITOR_USER,
        DATABASE_MONITOR_PASSWORD=cluster.secure_files.passwords()[MONITOR_USER],
        PGREPLICA_CACHE_URL=redis_url,
        PGREPLICA_CACHE_PREFIX=f"pgreplica-secure-test-{os.getpid()}-{time.monotonic_ns()}",
        PROMETHEUS_METRICS_EXPORT_PORT_RANGE=f"{metrics_ports.start}-{metrics_ports.stop - 1}",
        PROMETHEUS_METRICS_EXPORT_ADDRESS="127.0.0.1",
    )
    try:
        deadline = time.monotonic() + 30
        while len(listening(metrics_ports)) < WORKERS:  # each worker takes one as it starts
            assert time.monotonic() < deadline, running.log_tail()
            time.sleep(0.05)
        yield running
    finally:
        stop(running)


def listening(ports: range) -> list[int]:
    found = []
    for port in ports:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                found.append(port)
    return found


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def replica_reads(samples: Samples) -> float:
    reads = samples.get("django_pgreplica_reads_total", {})
    return sum(value for labels, value in reads.items() if dict(labels)["reason"] == "replica")


def requests_to(samples: Samples, view: str) -> float:
    counts = samples.get("django_http_requests_total_by_view_transport_method_total", {})
    return sum(value for labels, value in counts.items() if dict(labels)["view"] == view)


def test_metrics_are_on_each_workers_export_port_only(server: Server, metrics_ports: range) -> None:
    client = HttpClient(server)
    assert client.get("/metrics").status == 404  # the web port serves no metrics
    served = Counter(client.get("/whoami-db/").data["worker_pid"] for _ in range(REQUESTS))
    assert len(served) == WORKERS, served
    ports = listening(metrics_ports)
    assert len(ports) == WORKERS, f"one export port per worker, found {ports}"
    # django-prometheus's own counters are each worker's: together they count every request.
    assert sum(requests_to(scrape(port), "shop:whoami-db") for port in ports) == REQUESTS
    # django_pgreplica's counters are the fleet's on every port (CACHE): the same totals.
    deadline = time.monotonic() + 10
    while (
        len({replica_reads(scrape(port)) for port in ports}) != 1
        or not replica_reads(scrape(ports[0])) >= REQUESTS
    ):
        assert time.monotonic() < deadline, [replica_reads(scrape(port)) for port in ports]
        time.sleep(0.2)  # each worker publishes once per HEALTH_CHECK_INTERVAL
    for port in ports:
        samples = scrape(port)
        assert samples["django_pgreplica_routing_processes"][()] == WORKERS
        assert samples["django_pgreplica_replica_up"] == {
            (("replica", "replica"),): 1.0,
            (("replica", "replica2"),): 1.0,
        }
        assert samples["django_pgreplica_replication_status"][()] == 0  # OK, no W108
        assert set(samples["django_pgreplica_circuit_state"].values()) == {0.0}


def test_an_oversized_header_is_refused_by_the_server(server: Server) -> None:
    request = urllib.request.Request(
        server.url + "/whoami-db/", headers={"X-PgReplica-Token": "x" * 20000}
    )
    with pytest.raises(HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 431  # Request Header Fields Too Large
    assert b"Traceback" not in refused.value.read()
    assert HttpClient(server).get("/whoami-db/").status == 200  # and the server carries on
