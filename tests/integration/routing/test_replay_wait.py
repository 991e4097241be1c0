"""REPLAY_WAIT_SECONDS: a read whose replica is just behind the client's token waits for it
(bounded) instead of going to the primary. Real time: the replay is PostgreSQL's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from django_pgreplica.consistency import ConsistencyToken, current_wal_lsn, scope
from django_pgreplica.routers import ReplicaRouter
from django_pgreplica.routing import stats
from django_pgreplica.testing.plugin import wait_for_replay
from testproject.shop.models import Product
from tests.support import pgreplica_settings

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture
def paused(pgreplica_cluster: Any) -> Iterator[Any]:
    """replica1 with replay paused, and a write it lacks; resumed afterwards."""
    with scope():
        Product.objects.create(name="Lamp", slug="lamp", price=10)
    wait_for_replay()
    pgreplica_cluster.pause_replay("replica1")
    with scope():
        Product.objects.create(name="Fresh", slug="fresh", price=10)
    try:
        yield pgreplica_cluster
    finally:
        pgreplica_cluster.resume_replay("replica1")
        wait_for_replay()


def token_now() -> ConsistencyToken:
    return ConsistencyToken(written_at=time.time(), lsn=current_wal_lsn("default"))


def waits() -> dict[str, int]:
    return {outcome: h.count for outcome, h in stats.replay_waits().items()}


def test_a_read_waits_for_replay_then_reads_the_replica(paused: Any) -> None:
    with pgreplica_settings(REPLICAS=["replica"], REPLAY_WAIT_SECONDS=2.0):
        token = token_now()
        before = waits()
        threading.Timer(0.2, paused.resume_replay, ("replica1",)).start()
        with scope(token):
            started = time.monotonic()
            assert ReplicaRouter().db_for_read(Product) == "replica"
            waited = time.monotonic() - started
            assert Product.objects.using("replica").filter(slug="fresh").exists()
        assert 0.1 < waited < 2.0, waited
        assert waits()["replayed"] == before["replayed"] + 1


def test_a_wait_that_runs_out_reads_the_primary_and_is_not_repeated(paused: Any) -> None:
    with pgreplica_settings(REPLICAS=["replica"], REPLAY_WAIT_SECONDS=0.2):
        token = token_now()
        before = waits()
        with scope(token):
            started = time.monotonic()
            for _ in range(5):  # one wait per request, however many reads
                assert ReplicaRouter().db_for_read(Product) == "default"
            assert 0.15 < time.monotonic() - started < 1.0
        assert waits()["timeout"] == before["timeout"] + 1
        with scope(token):  # the replica has not moved since: it is stuck, not slow
            started = time.monotonic()
            assert ReplicaRouter().db_for_read(Product) == "default"
            assert time.monotonic() - started < 0.1
        assert waits()["timeout"] == before["timeout"] + 1


def test_no_wait_when_the_setting_is_zero(paused: Any) -> None:
    with pgreplica_settings(REPLICAS=["replica"], REPLAY_WAIT_SECONDS=0):
        token = token_now()
        before = waits()
        with scope(token):
            started = time.monotonic()
            assert ReplicaRouter().db_for_read(Product) == "default"
            assert time.monotonic() - started < 0.1
        assert waits() == before
