"""``/metrics`` under gunicorn with 3 workers reports the whole host, whichever worker answers.

With ``PGREPLICA["CACHE"]`` (Redis), every worker publishes its routing counts each
HEALTH_CHECK_INTERVAL and a scrape sums them all; circuit states follow shared health, so a
worker that never tried a dead replica shows its circuit open too (here: two of them are
stopped while the third meets it). Without that, a scrape
would report one worker's reads (about a third of them) and its own circuits only.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from django_pgreplica.routing import stats
from django_pgreplica.testing.plugin import wait_for_replay
from testproject.shop.models import Product
from tests.integration.contrib.test_celery import redis_url  # noqa: F401 - fixture
from tests.integration.servers import HttpClient, Server, start_server, stop

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__"), pytest.mark.redis]

WORKERS = 3
INTERVAL = 1.0  # testproject's HEALTH_CHECK_INTERVAL: how often a worker publishes
REQUESTS = 60


def gunicorn(port: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "testproject.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS), "--worker-class", "sync",
    ]  # fmt: skip


@pytest.fixture
def server(
    redis_url: str,  # noqa: F811 - the fixture
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    Product.objects.create(name="Moka Pot", slug="moka-pot", price=Decimal("24.50"), stock=10)
    wait_for_replay()
    running = start_server(
        "gunicorn",
        gunicorn,
        tmp_path_factory.mktemp("gunicorn") / "gunicorn.log",
        PGREPLICA_CACHE_URL=redis_url,
        PGREPLICA_CACHE_PREFIX=f"pgreplica-fleet-test-{os.getpid()}-{time.monotonic_ns()}",
    )
    try:
        yield running
    finally:
        stop(running)


def scrape(server: Server) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = HttpClient(server).get("/metrics").data.decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def replica_reads(samples: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> float:
    reads = samples.get("django_pgreplica_reads_total", {})
    return sum(v for labels, v in reads.items() if dict(labels)["reason"] == "replica")


def reads_per_request(client: object) -> int:
    """How many routed reads one /whoami-db/ makes (in this process, the same code)."""
    before = sum(n for (_, why), n in stats.reads().items() if why == "replica")
    from django.test import Client

    assert Client().get("/whoami-db/").status_code == 200
    return sum(n for (_, why), n in stats.reads().items() if why == "replica") - before


def test_every_worker_reports_the_reads_of_all_workers(server: Server) -> None:
    per_request = reads_per_request(None)
    assert per_request >= 1
    client = HttpClient(server)
    served = Counter(client.get("/whoami-db/").data["worker_pid"] for _ in range(REQUESTS))
    assert len(served) == WORKERS and max(served.values()) < REQUESTS, served  # spread out
    expected = per_request * REQUESTS
    deadline = time.monotonic() + 10 * INTERVAL
    while replica_reads(scrape(server)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)  # every worker publishes within an interval
    totals = [replica_reads(scrape(server)) for _ in range(12)]
    # One worker's own view would be per_request * served[its pid], at most 2/3 of it.
    assert totals == [expected] * 12, (totals, expected, served)
    processes = scrape(server)["django_pgreplica_routing_processes"][()]
    assert processes == WORKERS


def circuit(server: Server, replica: str) -> float:
    return scrape(server)["django_pgreplica_circuit_state"][(("replica", replica),)]


def test_workers_that_never_met_a_dead_replica_show_its_circuit_open(
    server: Server, pgreplica: Any
) -> None:
    client = HttpClient(server)
    pids = {client.get("/whoami-db/").data["worker_pid"] for _ in range(REQUESTS)}
    assert len(pids) == WORKERS, pids
    _awake, *frozen = sorted(pids)
    for pid in frozen:  # these two serve nothing (and so try no replica) meanwhile
        os.kill(pid, signal.SIGSTOP)
    try:
        pgreplica.kill("replica2")
        deadline = time.monotonic() + 30 * INTERVAL
        while circuit(server, "replica2") != 1:  # every request is the awake worker's
            assert time.monotonic() < deadline, "replica2's circuit did not open"
            assert client.get("/whoami-db/").status == 200
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    time.sleep(3 * INTERVAL)  # shared health reaches the others within an interval or two
    # Scrapes only (no reads): each worker answers from what it knows.
    states = [circuit(server, "replica2") for _ in range(4 * WORKERS)]
    assert states == [1] * len(states), states
