"""Django's native pool on a replica: a dead or hung replica costs connect_timeout, once.

psycopg_pool's getconn() would wait its own 30 s; django-pgreplica gives a replica's pool
its connect_timeout (at app ready; here the fixture runs the same function after turning
the pool on) and drops a pool that failed, so a replica that comes back serves at once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from django_pgreplica.consistency import scope
from django_pgreplica.routing.pool import bound_configured_pools
from django_pgreplica.testing.plugin import wait_for_replay
from testproject.shop.models import Product
from tests.integration.routing.reads import timed_read
from tests.support import pgreplica_settings

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

SETTINGS = {
    "REPLICAS": ["replica"],
    "HEALTH_CHECK_INTERVAL": 0.1,
    "FAILURE_THRESHOLD": 3,
    "RAMP_SECONDS": 0,
}


@pytest.fixture
def pooled(pgreplica_cluster: Any) -> Iterator[float]:
    """The replica alias on a pool of its own; yields its connect_timeout."""
    try:
        import psycopg_pool  # noqa: F401
    except ImportError:
        pytest.fail("needs psycopg_pool: pip install 'psycopg[pool]'", pytrace=False)
    with scope():
        Product.objects.create(name="Lamp", slug="lamp", price=10)
    wait_for_replay()
    conn = connections["replica"]
    conn.close()
    options = conn.settings_dict["OPTIONS"]
    conn.settings_dict["OPTIONS"] = {**options, "pool": True}
    with pgreplica_settings(REPLICAS=["replica"]):
        assert bound_configured_pools() == ["replica"]
    try:
        yield float(options["connect_timeout"])
    finally:
        conn.close()
        conn.close_pool()
        conn.settings_dict["OPTIONS"] = options
        if not pgreplica_cluster.is_running("replica1"):
            pgreplica_cluster.start("replica1")


@pytest.mark.parametrize("fault", ["kill", "sigstop"])
def test_a_dead_or_hung_replica_holds_a_fresh_pools_first_read_for_connect_timeout(
    pgreplica_cluster: Any, pooled: float, fault: str
) -> None:
    """A process whose pool is not open yet (just started, or its pool was dropped) meets
    a replica that refuses (killed) or never answers (SIGSTOP): without the bound, the
    first read waited psycopg_pool's 30 s."""
    pid = pgreplica_cluster.pid("replica1")
    assert pid is not None
    with pgreplica_settings(**SETTINGS):
        if fault == "kill":
            pgreplica_cluster.kill("replica1")
        else:
            os.kill(pid, signal.SIGSTOP)
        try:
            reads = [timed_read() for _ in range(10)]
        finally:
            if fault == "sigstop":
                os.kill(pid, signal.SIGCONT)
    (first, took), rest = reads[0], reads[1:]
    assert first == "default" and took < pooled + 1.0, reads[0]
    assert all(alias == "default" and t < 0.5 for alias, t in rest), rest


def test_a_pooled_replica_serves_at_once_when_it_comes_back(
    pgreplica_cluster: Any, pooled: float
) -> None:
    """psycopg_pool retries a lost server with a growing backoff (1, 2, 4, 8 s ...): left
    alone, the pool would make the first reads after recovery wait for its next attempt."""
    with pgreplica_settings(**SETTINGS):
        pgreplica_cluster.kill("replica1")
        assert timed_read()[0] == "default"
        time.sleep(8)  # the backoff's next attempt is now some 7 s away
        pgreplica_cluster.start("replica1")  # returns once it streams
        started = time.monotonic()
        reads = []
        while time.monotonic() - started < 3 and not any(a == "replica" for a, _ in reads):
            reads.append(timed_read())
            time.sleep(0.02)
    assert any(alias == "replica" for alias, _ in reads), reads
    assert all(took < 0.5 for _, took in reads), reads
