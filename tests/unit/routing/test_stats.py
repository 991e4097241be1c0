from __future__ import annotations

import threading

from django_pgreplica.monitoring.render import routing_lines
from django_pgreplica.monitoring.types import RoutingView
from django_pgreplica.routing import stats
from django_pgreplica.routing.stats import RoutingCounts, WaitHistogram


def test_counts_of_finished_threads_are_kept_and_their_slots_freed() -> None:
    before = stats.reads().get(("unit-db", "unit"), 0)

    def count() -> None:
        for _ in range(3):
            stats.count_read("unit-db", "unit")

    threads = [threading.Thread(target=count) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.reads()[("unit-db", "unit")] == before + 150
    assert len(stats._per_thread) < 10  # the 50 finished threads were folded away
    assert stats.reads()[("unit-db", "unit")] == before + 150


def _counts(reads: dict[tuple[str, str], int], waits: list[tuple[float, bool]]) -> RoutingCounts:
    histograms = {"replayed": WaitHistogram(), "timeout": WaitHistogram()}
    for seconds, replayed in waits:
        histograms["replayed" if replayed else "timeout"].add(seconds)
    return RoutingCounts(reads=dict(reads), waits=histograms)


def test_routing_counts_add_up_across_processes_and_survive_json() -> None:
    one = _counts({("replica", "replica"): 10, ("default", "token-wait"): 2}, [(0.004, True)])
    two = _counts({("replica", "replica"): 5}, [(0.02, False), (0.003, True)])
    total = RoutingCounts(processes=0)
    for part in (one, two):
        total.add(RoutingCounts.from_json(part.to_json()))
    assert total.processes == 2
    assert total.by_reason() == {"replica": 15, "token-wait": 2}
    assert total.by_database() == {"replica": 15, "default": 2}
    waits = total.all_waits()
    assert waits.count == 3 and round(waits.total, 3) == 0.027
    assert waits.quantile(0.5) == 0.005 and waits.quantile(0.99) == 0.025
    assert total.waits["timeout"].count == 1


def test_routing_text_says_whose_counts_and_the_token_waits() -> None:
    counts = _counts({("default", "token-wait"): 3, ("replica", "replica"): 9}, [(0.002, True)])
    lines = routing_lines(RoutingView("process", counts))
    assert "this process only" in lines[0]
    assert lines[1] == "  reads: replica 9, token-wait 3"
    assert "token-wait: 3 reads went to the primary" in lines[3]
    assert lines[4] == "  replay waits: 1 (1 replayed), mean 2.0 ms, p50 <= 2.5 ms, p99 <= 2.5 ms"
    counts.processes = 4
    assert "4 processes sharing CACHE" in routing_lines(RoutingView("fleet", counts))[0]
    down = routing_lines(RoutingView("fleet", None, "CACHE 'shared' unreadable: refused"))
    assert down == ["Routing: unavailable (CACHE 'shared' unreadable: refused)"]
