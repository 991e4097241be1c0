"""Per-process routing counters, kept free of any metrics library.

The router counts every decision here (a dict update under a lock); ``metrics.py`` turns
the counts into Prometheus samples at scrape time, so the hot path never touches
prometheus_client and works without it installed.
"""

from __future__ import annotations

import threading
from collections import Counter

# Why a read went where it did (the ``reason`` label of django_pgreplica_reads_total).
REASON_REPLICA = "replica"  # a healthy replica that satisfies the client's token
REASON_PINNED = "pinned-after-write"  # this request/task wrote, or a time-mode pin
REASON_TOKEN_WAIT = "token-wait"  # no replica has replayed the client's LSN token yet
REASON_ATOMIC = "atomic"  # inside transaction.atomic() on the primary
REASON_FORCED = "forced"  # use_primary()
REASON_NO_REPLICA = "no-replica"  # no replica configured or none eligible
REASON_FALLBACK = "fallback"  # the replica failed mid-query; the primary answered

READ_REASONS = (
    REASON_REPLICA,
    REASON_PINNED,
    REASON_TOKEN_WAIT,
    REASON_ATOMIC,
    REASON_FORCED,
    REASON_NO_REPLICA,
    REASON_FALLBACK,
)

_lock = threading.Lock()
_reads: Counter[tuple[str, str]] = Counter()
_fallbacks: Counter[str] = Counter()


def count_read(database: str, reason: str) -> None:
    with _lock:
        _reads[(database, reason)] += 1


def count_fallback(replica: str) -> None:
    with _lock:
        _fallbacks[replica] += 1


def reads() -> dict[tuple[str, str], int]:
    with _lock:
        return dict(_reads)


def fallbacks() -> dict[str, int]:
    with _lock:
        return dict(_fallbacks)
