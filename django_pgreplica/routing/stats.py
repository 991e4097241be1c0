"""Per-process routing counters, kept free of any metrics library.

The router counts every decision here (a dict update under a lock); ``metrics.py`` turns
the counts into Prometheus samples at scrape time, so the hot path never touches
prometheus_client and works without it installed.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

# Why a read went where it did (the ``reason`` label of django_pgreplica_reads_total).
REASON_REPLICA = "replica"  # a healthy replica that satisfies the client's token
REASON_PINNED = "pinned-after-write"  # this request/task wrote, or a time-mode pin
REASON_TOKEN_WAIT = "token-wait"  # no replica has replayed the client's LSN token yet
REASON_ATOMIC = "atomic"  # inside transaction.atomic() on the primary
REASON_FORCED = "forced"  # use_primary()
REASON_NO_REPLICA = "no-replica"  # no replica configured or none eligible
REASON_RAMP = "ramp"  # the only eligible replicas are ramping up and passed this read on
REASON_FALLBACK = "fallback"  # the replica failed mid-query; the primary answered
REASON_LAST_RESORT = "last-resort"  # the primary was unreachable; any replica that answered

READ_REASONS = (
    REASON_REPLICA,
    REASON_PINNED,
    REASON_TOKEN_WAIT,
    REASON_ATOMIC,
    REASON_FORCED,
    REASON_NO_REPLICA,
    REASON_RAMP,
    REASON_FALLBACK,
    REASON_LAST_RESORT,
)

# Each thread counts reads in its own dict (no lock on the hot path); readers sum them and
# fold the counts of finished threads into _retired, so thread-per-request servers don't
# grow the list forever.
Counts = defaultdict[tuple[str, str], int]
_per_thread: list[tuple[weakref.ref[threading.Thread], Counts]] = []
_retired: Counter[tuple[str, str]] = Counter()
_lock = threading.Lock()
_fallbacks: Counter[str] = Counter()


class _ThreadCounts(threading.local):
    def __init__(self) -> None:  # runs once in each thread that counts
        self.reads: Counts = defaultdict(int)
        with _lock:
            _per_thread.append((weakref.ref(threading.current_thread()), self.reads))


per_thread = _ThreadCounts()


def thread_counts() -> Counts:
    """This thread's read counts, to add to directly (the router caches it per scope)."""
    return per_thread.reads


def count_read(database: str, reason: str) -> None:
    per_thread.reads[database, reason] += 1


def count_fallback(replica: str) -> None:
    with _lock:
        _fallbacks[replica] += 1


def reads() -> dict[tuple[str, str], int]:
    total: Counter[tuple[str, str]] = Counter()
    with _lock:
        alive = []
        for ref, counts in _per_thread:
            snapshot = dict(counts)  # copy first: the owner thread may be adding keys
            thread = ref()
            if thread is None or not thread.is_alive():
                _retired.update(snapshot)  # it will never count again
            else:
                alive.append((ref, counts))
                total.update(snapshot)
        _per_thread[:] = alive
        total.update(_retired)
    return dict(total)


# Replay waits (REPLAY_WAIT_SECONDS), a histogram per outcome: bucket upper bounds in seconds.
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, float("inf"))
WAIT_REPLAYED, WAIT_TIMEOUT = "replayed", "timeout"


class WaitHistogram:
    def __init__(self) -> None:
        self.buckets = [0] * len(WAIT_BUCKETS)  # not cumulative; see cumulative()
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        index = next(i for i, bound in enumerate(WAIT_BUCKETS) if seconds <= bound)
        self.buckets[index] += 1
        self.count += 1
        self.total += seconds

    def merge(self, other: WaitHistogram, sign: int = 1) -> None:
        self.buckets = [a + sign * b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.count += sign * other.count
        self.total += sign * other.total

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile (None: no waits)."""
        if not self.count:
            return None
        rank = q * self.count
        return next(bound for bound, n in self.cumulative() if n >= rank)

    def to_json(self) -> dict[str, Any]:
        return {"buckets": list(self.buckets), "count": self.count, "total": self.total}

    @classmethod
    def from_json(cls, data: Any) -> WaitHistogram:
        histogram = cls()
        buckets = [int(n) for n in data["buckets"]]
        if len(buckets) == len(WAIT_BUCKETS):  # another version's buckets: leave them out
            histogram.buckets = buckets
            histogram.count, histogram.total = int(data["count"]), float(data["total"])
        return histogram

    def cumulative(self) -> list[tuple[float, int]]:
        running, out = 0, []
        for bound, n in zip(WAIT_BUCKETS, self.buckets, strict=True):
            running += n
            out.append((bound, running))
        return out


_waits: dict[str, WaitHistogram] = {WAIT_REPLAYED: WaitHistogram(), WAIT_TIMEOUT: WaitHistogram()}


def count_replay_wait(seconds: float, replayed: bool) -> None:
    with _lock:
        _waits[WAIT_REPLAYED if replayed else WAIT_TIMEOUT].add(seconds)


def replay_waits() -> dict[str, WaitHistogram]:
    """Copies of the per-outcome histograms of this process."""
    with _lock:
        copies = {}
        for outcome, histogram in _waits.items():
            copy = WaitHistogram()
            copy.buckets, copy.count, copy.total = (
                list(histogram.buckets),
                histogram.count,
                histogram.total,
            )
            copies[outcome] = copy
        return copies


def fallbacks() -> dict[str, int]:
    with _lock:
        return dict(_fallbacks)


@dataclass
class RoutingCounts:
    """Where reads went and how long they waited, for one process or summed over many."""

    reads: dict[tuple[str, str], int] = field(default_factory=dict)  # (database, reason)
    waits: dict[str, WaitHistogram] = field(default_factory=dict)  # outcome -> histogram
    fallbacks: dict[str, int] = field(default_factory=dict)  # replica -> reruns elsewhere
    processes: int = 1

    def by_reason(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (_, reason), n in self.reads.items():
            totals[reason] += n
        return dict(totals)

    def by_database(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (database, _), n in self.reads.items():
            totals[database] += n
        return dict(totals)

    def all_waits(self) -> WaitHistogram:
        total = WaitHistogram()
        for histogram in self.waits.values():
            total.merge(histogram)
        return total

    def add(self, other: RoutingCounts, sign: int = 1) -> None:
        """Add ``other``'s counts (``sign=-1``: take them away, ``processes`` included)."""
        for key, n in other.reads.items():
            self.reads[key] = self.reads.get(key, 0) + sign * n
        for outcome, histogram in other.waits.items():
            self.waits.setdefault(outcome, WaitHistogram()).merge(histogram, sign)
        for replica, n in other.fallbacks.items():
            self.fallbacks[replica] = self.fallbacks.get(replica, 0) + sign * n
        self.processes += sign * other.processes

    def to_json(self) -> dict[str, Any]:
        return {
            "reads": [[database, reason, n] for (database, reason), n in self.reads.items()],
            "waits": {outcome: h.to_json() for outcome, h in self.waits.items()},
            "fallbacks": dict(self.fallbacks),
        }

    @classmethod
    def from_json(cls, data: Any) -> RoutingCounts:
        return cls(
            reads={(str(d), str(r)): int(n) for d, r, n in data["reads"]},
            waits={str(o): WaitHistogram.from_json(h) for o, h in data["waits"].items()},
            fallbacks={str(k): int(n) for k, n in data["fallbacks"].items()},
        )


def snapshot() -> RoutingCounts:
    """This process's counts so far."""
    return RoutingCounts(reads=reads(), waits=replay_waits(), fallbacks=fallbacks())
