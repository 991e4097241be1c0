"""The replay-wait loop both wait helpers share, with fake positions and a fake clock.

No database and no real sleeping: the positions are callables over a script or the fake
clock, ``sleep`` advances that clock, and the two callers get stubbed queries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from django_pgreplica.clock import FakeClock
from django_pgreplica.lsn import parse_lsn
from django_pgreplica.testing import aliases, plugin
from django_pgreplica.testing.cluster import Cluster, ClusterError
from django_pgreplica.testing.cluster.nodes import Node
from django_pgreplica.testing.replay import (
    REPLAY_POSITION_SQL,
    NotReplayed,
    ReplayPosition,
    wait_replayed,
)

PAGE = 8192


@pytest.fixture
def fake() -> FakeClock:
    """Not installed: handed to wait_replayed as its monotonic clock and its sleep."""
    return FakeClock(start=0.0)


def scripted(*positions: int | None) -> Callable[[], int | None]:
    """Returns ``positions`` one per call, then keeps returning the last one."""
    seen = list(positions)

    def position() -> int | None:
        return seen.pop(0) if len(seen) > 1 else seen[0]

    return position


def catching_up(fake: FakeClock, *, rate: int, start: int = 0) -> ReplayPosition:
    """A replica that replays ``rate`` bytes of WAL per second of fake time."""
    return lambda: start + int(rate * fake.now)


def counted(position: ReplayPosition, reads: list[str], name: str) -> ReplayPosition:
    def read() -> int | None:
        reads.append(name)
        return position()

    return read


def wait(fake: FakeClock, target: int, replicas: Any, timeout: float = 1.0) -> None:
    wait_replayed(
        target,
        replicas,
        timeout=timeout,
        interval=0.25,
        monotonic=fake.monotonic,
        sleep=fake.advance,
    )


def test_returns_at_once_when_every_replica_is_there(fake: FakeClock) -> None:
    reads: list[str] = []
    replicas = [(n, counted(scripted(100), reads, n)) for n in ("a", "b")]
    wait(fake, 100, replicas)
    assert reads == ["a", "b"]
    assert fake.now == 0.0  # never slept


def test_polls_each_replica_until_it_reaches_the_target(fake: FakeClock) -> None:
    reads: list[str] = []
    replicas = [
        ("a", counted(scripted(None, 50, 99, 150), reads, "a")),
        ("b", counted(scripted(120), reads, "b")),
    ]
    wait(fake, 100, replicas)
    assert reads == ["a", "a", "a", "a", "b"]
    assert fake.now == 0.75  # three sleeps of the interval, all while waiting for "a"


def test_none_means_nothing_replayed_yet(fake: FakeClock) -> None:
    with pytest.raises(NotReplayed) as caught:
        wait(fake, 0, [("a", scripted(None))])
    assert caught.value.replayed is None
    assert caught.value.replayed_text == "None"


def test_times_out_naming_the_replica_and_its_last_position(fake: FakeClock) -> None:
    reads: list[str] = []
    lsn = parse_lsn("0/3000128")
    with pytest.raises(NotReplayed) as caught:
        wait(fake, lsn, [("a", counted(scripted(lsn - 8), reads, "a"))])
    exc = caught.value
    assert (exc.name, exc.target, exc.replayed) == ("a", lsn, lsn - 8)
    assert exc.replayed_text == "0/3000120"
    assert str(exc) == "a has not replayed up to 0/3000128 (replayed: 0/3000120)"
    # Reads at 0, 0.25, ..., 1.0 are still in time; the one at 1.25 is past the deadline.
    assert len(reads) == 6 and fake.now == 1.25


def test_one_deadline_covers_every_replica(fake: FakeClock) -> None:
    # "a" is there at 0.75s and "b" at 1.5s: within a fresh 1s after "a", but not within
    # the one second the whole call has.
    reads: list[str] = []
    replicas = [
        ("a", counted(catching_up(fake, rate=100), reads, "a")),
        ("b", counted(catching_up(fake, rate=100, start=-90), reads, "b")),
    ]
    with pytest.raises(NotReplayed) as caught:
        wait(fake, 60, replicas)
    assert (caught.value.name, caught.value.replayed) == ("b", 35)
    assert reads == ["a"] * 4 + ["b"] * 3 and fake.now == 1.25


def test_stops_at_the_first_replica_that_is_late(fake: FakeClock) -> None:
    reads: list[str] = []
    replicas = [
        ("a", counted(scripted(10), reads, "a")),
        ("b", counted(scripted(100), reads, "b")),
    ]
    with pytest.raises(NotReplayed):
        wait(fake, 100, replicas, timeout=0.5)
    assert set(reads) == {"a"}


def test_a_replica_is_read_once_even_without_time(fake: FakeClock) -> None:
    wait(fake, 100, [("a", scripted(100))], timeout=0)
    with pytest.raises(NotReplayed):
        wait(fake, 100, [("a", scripted(99))], timeout=0)


def test_replicas_are_listed_after_the_deadline_is_set(fake: FakeClock) -> None:
    def slow_lookup() -> Iterator[tuple[str, ReplayPosition]]:
        fake.advance(5)  # finding the replicas took longer than the whole timeout
        yield "a", scripted(50, 100)

    with pytest.raises(NotReplayed):
        wait(fake, 100, slow_lookup())
    assert fake.now == 5.0  # read once, already past the deadline: no sleep


def test_position_errors_propagate(fake: FakeClock) -> None:
    def broken() -> int | None:
        raise ConnectionError("replica went away")

    with pytest.raises(ConnectionError, match="went away"):
        wait(fake, 100, [("a", broken)])


# --- the two callers: same loop, their own queries and errors -------------------------

# An idle primary's insert position just past a page header: replicas stop at the boundary.
INSERT_ROW = ("0/3002018", PAGE, 16 << 20)
BOUNDARY = "0/3002000"


def test_wait_for_replay_on_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    replayed = {"replica": BOUNDARY, "replica2": None}
    queries: list[tuple[str, str]] = []

    def fetch(alias: str, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...]:
        queries.append((alias, sql))
        return INSERT_ROW if alias == "default" else (replayed[alias],)

    monkeypatch.setattr(aliases, "_fetch", fetch)
    monkeypatch.setattr(aliases, "configured_aliases", lambda: ("default", ("replica", "replica2")))

    plugin.wait_for_replay(["replica"])
    assert queries[1:] == [("replica", REPLAY_POSITION_SQL)]
    with pytest.raises(TimeoutError) as caught:
        plugin.wait_for_replay(timeout=-1)  # already past the deadline: no sleeping
    assert str(caught.value) == (
        "replica alias 'replica2' has not replayed the primary's WAL up to 0/3002018 "
        "within -1s (replayed: None); is its replay paused?"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_cluster_wait_replayed_on_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(tmp_path, port=7000, replicas=2)
    replayed = {"replica1": BOUNDARY, "replica2": "0/3001FF0"}
    order: list[str] = []

    def query(node: Node, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        order.append(node.name)
        return list(INSERT_ROW) if node.name == "primary" else [replayed[node.name]]

    def recovering() -> list[str]:
        order.append("lookup")
        return ["replica1", "replica2"]

    monkeypatch.setattr(cluster, "_query", query)
    monkeypatch.setattr(cluster, "_recovering_replicas", recovering)

    cluster.wait_replayed(names=["replica1"])
    assert order == ["primary", "replica1"]
    order.clear()
    with pytest.raises(ClusterError) as caught:
        cluster.wait_replayed(timeout=-1)
    assert str(caught.value) == "replica2 has not replayed up to 0/3002018 after -1s"
    assert order == ["primary", "lookup", "replica1", "replica2"]  # target read first
