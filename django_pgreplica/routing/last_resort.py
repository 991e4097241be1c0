"""Last-resort reads: the primary is unreachable, so any replica that answers may serve.

A read goes to the primary when no replica is eligible or none has replayed what the client
must see. If the primary cannot be reached either, the read would fail although a replica
is up; instead it goes to a replica that answers — also one that lags or whose circuit is
open, never a promoted one — provided it has replayed the client's token, if any. Only
when no such replica answers does the read go to the primary (and fail there).
"""

from __future__ import annotations

import logging
import random

from .. import clock
from ..conf import Settings
from ..consistency import RoutingState
from ..health import get_health, primary_health
from ..lsn import Position
from .connect import connectable, primary_reachable
from .stats import REASON_LAST_RESORT

logger = logging.getLogger("django_pgreplica.router")


def on_primary(
    settings: Settings, state: RoutingState, reason: str, need: Position | None
) -> tuple[str, str]:
    """(alias, reason) for a read meant for the primary; ``need`` is the WAL position the
    client must see (None: nothing to wait for)."""
    now = clock.monotonic()
    if primary_reachable(settings, now):
        return settings.primary, reason
    replica = last_resort_replica(settings, state, need)
    if replica is None:
        return settings.primary, reason  # nothing else answers: the primary's error it is
    if primary_health().should_report(now, settings.health_check_interval):
        health = get_health(replica)
        logger.warning(
            "primary %s unreachable: reading from replica %s as a last resort (%s)",
            settings.primary,
            replica,
            health.reason() or "eligible",
        )
    return replica, REASON_LAST_RESORT


def last_resort_replica(
    settings: Settings, state: RoutingState, need: Position | None
) -> str | None:
    """A replica that answers and has replayed ``need``: those that answered their last
    probe first (lagging ones included), then the rest; never a promoted one."""
    now = clock.monotonic()
    candidates = [alias for alias in settings.replicas if alias not in state.failed]
    random.shuffle(candidates)
    candidates.sort(key=_preference)
    for alias in candidates:
        health = get_health(alias)
        last = health.last
        if last is not None and last.ok and last.in_recovery is False:
            continue  # promoted: its data may have forked from ours
        if last is not None and not last.ok and now - last.checked_at < health.interval:
            continue  # just failed: don't make this read wait for it again
        if not connectable(alias, state):
            continue
        if need is not None and not health.replayed(need, refresh=True):
            continue
        return alias
    return None


def _preference(alias: str) -> int:
    last = get_health(alias).last
    return 0 if last is not None and last.ok else 1
