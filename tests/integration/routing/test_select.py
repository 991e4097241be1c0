"""ReplicaRouter against a real primary and two streaming replicas."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from django.db import connections, transaction

from django_pgreplica import use_primary
from django_pgreplica.consistency import scope
from django_pgreplica.health import circuit_state, get_health
from django_pgreplica.health.breaker import CircuitState
from django_pgreplica.routers import ReplicaRouter
from django_pgreplica.routing import stats
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from testproject.shop.models import Product
from tests.support import REPLICA_NODES, pgreplica_settings, record_calls, served_by

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

REPLICAS = tuple(REPLICA_NODES)


def make_product(name: str = "Lamp") -> Product:
    return Product.objects.create(name=name, slug=name.lower().replace(" ", "-"), price=10)


def test_writes_go_to_primary_and_reads_to_a_replica() -> None:
    router = ReplicaRouter()
    assert router.db_for_write(Product) == "default"
    make_product()
    wait_for_replay()
    with scope():
        alias = router.db_for_read(Product)
        assert alias in REPLICAS
        assert served_by(alias, Product.objects.all())
        assert Product.objects.get(slug="lamp").name == "Lamp"


def another_client_writes(cluster: Any, name: str) -> None:
    """A write this process does not make (so it holds no claim to see it)."""
    cluster.execute(
        "primary",
        "INSERT INTO shop_product (name, slug, description, price, stock) "
        "VALUES (%s, %s, '', 1, 1)",
        (name, name.lower()),
        dbname=str(connections["default"].settings_dict["NAME"]),
    )


def test_a_read_really_comes_from_the_replica(pgreplica_cluster: Any) -> None:
    """With replay paused, a fresh row is invisible: proof the read did not hit the primary."""
    wait_for_replay()
    with pgreplica_settings(REPLICAS=["replica"]), replay_paused("replica"):
        another_client_writes(pgreplica_cluster, "Hidden")
        with scope():
            assert not Product.objects.filter(slug="hidden").exists()
        assert Product.objects.using("default").filter(slug="hidden").exists()


def test_the_same_replica_serves_a_whole_request_and_load_is_spread() -> None:
    router = ReplicaRouter()
    chosen: Counter[str] = Counter()
    for _ in range(60):
        with scope():
            first = router.db_for_read(Product)
            assert all(router.db_for_read(Product) == first for _ in range(10))
            chosen[first] += 1
    assert set(chosen) == set(REPLICAS)
    assert min(chosen.values()) >= 10, chosen


def test_migrations_only_on_primary_and_relations_within_the_cluster() -> None:
    router = ReplicaRouter()
    assert router.allow_migrate("default", "shop") is True
    assert router.allow_migrate("replica", "shop") is False
    a, b = Product(name="a"), Product(name="b")
    a._state.db, b._state.db = "replica", "default"
    assert router.allow_relation(a, b) is True
    b._state.db = "elsewhere"
    assert router.allow_relation(a, b) is None


def test_after_a_write_the_rest_of_the_request_reads_the_primary() -> None:
    with scope():
        assert ReplicaRouter().db_for_read(Product) in REPLICAS
        make_product()
        assert served_by("default", Product.objects.filter(slug="lamp"))


@pytest.mark.parametrize(
    "write",
    [
        lambda: Product.objects.filter(slug="lamp").update(stock=3),
        lambda: Product.objects.bulk_create([Product(name="B", slug="b", price=1)]),
        lambda: Product.objects.filter(slug="lamp").delete(),
        lambda: connections["default"].cursor().execute("UPDATE shop_product SET stock = 9"),
    ],
    ids=["update", "bulk_create", "delete", "raw-sql"],
)
def test_every_kind_of_write_pins(write: object) -> None:
    make_product()
    with scope() as state:
        write()  # type: ignore[operator]
        assert state.wrote
        assert ReplicaRouter().db_for_read(Product) == "default"


def test_reads_inside_atomic_on_the_primary_stay_there() -> None:
    make_product()
    wait_for_replay()
    with scope(), transaction.atomic():
        assert ReplicaRouter().db_for_read(Product) == "default"
        Product.objects.filter(slug="lamp").update(stock=42)
        assert Product.objects.get(slug="lamp").stock == 42


def test_use_primary_forces_reads_to_the_primary() -> None:
    with scope():
        with use_primary():
            assert ReplicaRouter().db_for_read(Product) == "default"
        assert ReplicaRouter().db_for_read(Product) in REPLICAS


def test_decisions_are_counted_by_reason() -> None:
    before = stats.reads()
    with scope():
        ReplicaRouter().db_for_read(Product)
        with use_primary():
            ReplicaRouter().db_for_read(Product)
    after = stats.reads()
    key = ("default", stats.REASON_FORCED)
    assert after.get(key, 0) - before.get(key, 0) == 1
    replica_reads = sum(v for (db, r), v in after.items() if r == stats.REASON_REPLICA)
    replica_before = sum(v for (db, r), v in before.items() if r == stats.REASON_REPLICA)
    assert replica_reads - replica_before == 1


def test_a_lagging_replica_gets_no_reads(caplog: pytest.LogCaptureFixture) -> None:
    # Real sleeps here: the lag is PostgreSQL's own replay delay, not one of our timers.
    wait_for_replay()
    with pgreplica_settings(MAX_LAG_SECONDS=0.5, HEALTH_CHECK_INTERVAL=0.1):
        with replay_paused("replica"):
            make_product("Lag")
            time.sleep(1.2)
            for _ in range(20):
                with scope():
                    assert ReplicaRouter().db_for_read(Product) == "replica2"
            reason = get_health("replica").reason()
            assert reason is not None and reason.startswith("lagging")
        wait_for_replay()
        time.sleep(0.2)
        seen = set()
        for _ in range(40):
            with scope():
                seen.add(ReplicaRouter().db_for_read(Product))
        assert "replica" in seen
    assert any(
        "replica replica" in r.getMessage() and "lagging" in r.getMessage() for r in caplog.records
    )


def test_idle_primary_does_not_count_as_lag() -> None:
    wait_for_replay()
    time.sleep(1.5)  # nothing written: replay timestamp ages, the replica is not behind
    health = get_health("replica")
    health.probe()
    assert health.last is not None and health.last.lag_seconds == 0.0
    assert health.reason() is None


def test_max_lag_none_means_no_limit(pgreplica_cluster: Any) -> None:
    wait_for_replay()
    with pgreplica_settings(MAX_LAG_SECONDS=None, REPLICAS=["replica"], HEALTH_CHECK_INTERVAL=0.1):
        with replay_paused("replica"):
            another_client_writes(pgreplica_cluster, "Slow")
            time.sleep(0.5)
            with scope():
                assert ReplicaRouter().db_for_read(Product) == "replica"


def test_circuit_state_is_reported_per_replica() -> None:
    with pgreplica_settings(FAILURE_THRESHOLD=1):
        with scope():
            ReplicaRouter().db_for_read(Product)
        get_health("replica2").record_failure("refused")
        assert circuit_state("replica") is CircuitState.CLOSED
        assert circuit_state("replica2") is CircuitState.OPEN


def test_a_pending_token_costs_at_most_one_position_query_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django_pgreplica.consistency import ConsistencyToken, current_wal_lsn
    from django_pgreplica.health import ReplicaHealth

    calls = record_calls(monkeypatch, ReplicaHealth, "_read_position")
    wait_for_replay()
    with pgreplica_settings(REPLICAS=["replica"], STICKY_SECONDS=60, HEALTH_CHECK_INTERVAL=60):
        with replay_paused("replica"):
            make_product("Pending")
            token = ConsistencyToken(written_at=time.time(), lsn=current_wal_lsn("default"))
            with scope(token):
                for _ in range(10):
                    assert ReplicaRouter().db_for_read(Product) == "default"
            assert [health.alias for (health,) in calls] == ["replica"]
        wait_for_replay()
        with scope(token):  # the next request asks again and finds the write replayed
            assert ReplicaRouter().db_for_read(Product) == "replica"
        assert [health.alias for (health,) in calls] == ["replica", "replica"]


def test_outside_a_request_a_write_pins_nothing() -> None:
    """Scripts and test bodies are not requests: no lasting pin, reads keep using replicas
    (once they have replayed the write)."""
    make_product()
    wait_for_replay()
    assert ReplicaRouter().db_for_read(Product) in REPLICAS
    with transaction.atomic():  # a unit of work that needs its own writes: atomic()...
        Product.objects.filter(slug="lamp").update(stock=5)
        assert ReplicaRouter().db_for_read(Product) == "default"
    with use_primary():  # ...or use_primary()
        assert ReplicaRouter().db_for_read(Product) == "default"
    wait_for_replay()  # the update above was made outside any scope: replicas must have it
    assert ReplicaRouter().db_for_read(Product) in REPLICAS


def test_an_eager_task_reads_what_its_caller_wrote() -> None:
    from celery import shared_task

    @shared_task
    def where() -> str:
        return ReplicaRouter().db_for_read(Product)

    @shared_task
    def writer() -> None:
        make_product("Eager")

    with scope():
        assert where.apply().get() in REPLICAS
        make_product()
        assert where.apply().get() == "default"
    with scope() as state:
        writer.apply().get()
        assert state.wrote  # the task's write pins the request that ran it
        assert ReplicaRouter().db_for_read(Product) == "default"


def test_async_iteration_is_not_a_replica_failure() -> None:
    """aiterator() asks the router on the event loop, where no I/O may happen."""
    from asgiref.sync import async_to_sync

    make_product()
    wait_for_replay()

    async def names() -> list[str]:
        return [p.name async for p in Product.objects.aiterator()]

    with scope():
        assert async_to_sync(names)() == ["Lamp"]
    for alias in REPLICAS:
        assert get_health(alias).breaker.failures == 0
        assert get_health(alias).reason() is None


def test_one_write_then_many_tokens_costs_one_position_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django_pgreplica import consistency
    from django_pgreplica.consistency import positions

    calls = record_calls(monkeypatch, positions, "current_wal_position")
    with scope() as state:
        make_product()
        tokens = {consistency.outgoing_token(state) for _ in range(5)}
        assert len(tokens) == 1 and calls == [("default",)]
        make_product("Second")  # a new write needs a new position
        assert consistency.outgoing_token(state) not in tokens
        assert calls == [("default",), ("default",)]


def test_a_write_outside_any_scope_is_not_lost_to_later_requests() -> None:
    """A test logging a user in, a script creating a row: the next request must see it."""
    wait_for_replay()
    with pgreplica_settings(REPLICAS=["replica"]):
        with replay_paused("replica"):
            make_product("Fresh")  # outside any scope
            with scope():
                assert served_by("default", Product.objects.filter(slug="fresh"))
                assert Product.objects.filter(slug="fresh").exists()
        wait_for_replay()
        with scope():  # the replica has it now: back to the replica, the floor is dropped
            assert ReplicaRouter().db_for_read(Product) == "replica"
        with scope():
            assert ReplicaRouter().db_for_read(Product) == "replica"


def test_force_login_then_a_request_under_lag() -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    wait_for_replay()
    with pgreplica_settings(REPLICAS=["replica"]), replay_paused("replica"):
        client = Client()
        client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
        assert client.get("/admin/").status_code == 200
