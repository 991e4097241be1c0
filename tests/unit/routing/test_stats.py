from __future__ import annotations

import threading

from django_pgreplica.routing import stats


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
