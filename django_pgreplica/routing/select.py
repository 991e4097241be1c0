"""Where a read goes: the decision behind ``ReplicaRouter.db_for_read``.

A replica is picked at random among the eligible ones once per request/task and kept for
its remaining reads (one consistent snapshot per request); outside any request it is
kept from one call to the next the same way. Random choice spreads load evenly across
processes without shared state; it is only revisited when the chosen replica stops being
eligible. Consistency facts come from :mod:`..consistency`, health from :mod:`..health`.
"""

from __future__ import annotations

import logging
import random
from threading import get_ident
from typing import Any

from django.db import connections

from .. import clock
from ..conf import Settings
from ..consistency import RoutingState, unscoped_writes
from ..health import get_health
from ..lsn import Position
from . import stats
from .connect import connectable
from .last_resort import on_primary
from .stats import (
    REASON_ATOMIC,
    REASON_FORCED,
    REASON_NO_REPLICA,
    REASON_PINNED,
    REASON_RAMP,
    REASON_REPLICA,
    REASON_TOKEN_WAIT,
)

logger = logging.getLogger("django_pgreplica.router")


def choose_replica(settings: Settings, state: RoutingState, now: float) -> str | None:
    """A random eligible replica; replicas after the first good one are not even probed.

    A replica ramping up after an outage takes a read only with probability equal to its
    weight; otherwise the next one is tried, so the rest of its share goes elsewhere.
    """
    if not state.scoped:
        state.failed.clear()  # outside a request, health alone remembers failures
    candidates = [alias for alias in settings.replicas if alias not in state.failed]
    random.shuffle(candidates)
    state.ramped_out = False
    for alias in candidates:
        health = get_health(alias)
        if not health.usable(now):
            continue
        weight = health.weight(now)
        if weight < 1.0 and random.random() >= weight:
            state.ramped_out = True
            continue
        if connectable(alias, state):
            return alias
    return None


def _replica_at(settings: Settings, state: RoutingState, chosen: str, need: Position) -> str | None:
    """A replica that has replayed up to ``need``: the chosen one if it has, else any other
    eligible one whose known position suffices, else the chosen one after asking it for
    its current position and, if it is still behind, waiting for it up to what is left of
    REPLAY_WAIT_SECONDS (once per replica per scope: never a query per read)."""
    if get_health(chosen).replayed(need, refresh=False):
        return chosen
    now = clock.monotonic()
    for alias in settings.replicas:
        if alias == chosen or alias in state.failed:
            continue
        health = get_health(alias)
        if health.usable(now) and connectable(alias, state) and health.replayed(need, False):
            state.choose(health, (alias, REASON_REPLICA))
            return alias
    refresh = chosen not in state.token_asked
    if state.scoped:
        state.token_asked.add(chosen)
    health = get_health(chosen)
    if health.replayed(need, refresh=refresh):
        return chosen
    # A request's budget; outside any request, each read's (a script has no request to end).
    budget = settings.replay_wait_seconds - (state.replay_waited if state.scoped else 0.0)
    if refresh and budget > 0 and not connections[chosen].in_atomic_block:
        waited, replayed = health.wait_replayed(need, budget)
        if waited:
            state.replay_waited += waited
            stats.count_replay_wait(waited, replayed)
        if replayed:
            return chosen
    return None


def route_read(settings: Settings, state: RoutingState) -> str:
    """The alias for a read in the current scope, counted by reason. This is the hot path."""
    # connections[alias] goes through asgiref's Local and the per-thread counters through
    # threading.local, the costliest steps of a read; a scope keeps seeing the same objects
    # on the same thread (until the settings change), so remember them.
    thread = get_ident()
    cached = state.thread_cache
    if cached is None or cached[0] != thread or cached[1] is not settings:
        cached = (thread, settings, connections[settings.primary], stats.thread_counts())
        state.thread_cache = cached
    chosen = state.chosen
    # The common case, inline: the scope's replica is still good and nothing (a write, a
    # pin, a transaction, a token, writes outside any scope) asks for more thought.
    if (
        chosen is not None
        and not (
            state.forced
            or state.wrote
            or state.token
            or state.user_lookup
            or unscoped_writes.pending
        )
        and not cached[2].in_atomic_block
        and chosen.settings is settings
        and chosen.usable(clock.monotonic())
    ):
        cached[3][state.chosen_key] += 1
        return chosen.alias
    alias, reason = decide(settings, state, cached[2])
    cached[3][alias, reason] += 1
    return alias


def decide(settings: Settings, state: RoutingState, conn: Any) -> tuple[str, str]:
    """(alias, reason) for a read; ``conn`` is this thread's primary connection."""
    primary = settings.primary
    if state.forced:
        return primary, REASON_FORCED
    if state.wrote:
        return primary, REASON_PINNED
    if not settings.replicas:
        return primary, REASON_NO_REPLICA
    if conn.in_atomic_block:
        # Also a TestCase's own transaction: its uncommitted rows exist only on the primary.
        return primary, REASON_ATOMIC
    time_pinned, need = pending(settings, state)
    if time_pinned:
        return primary, REASON_PINNED  # a time pin: STICKY_SECONDS from the write

    now = clock.monotonic()
    chosen = state.chosen
    if chosen is not None and chosen.settings is settings and chosen.usable(now):
        replica = chosen.alias
    else:
        picked = choose_replica(settings, state, now)
        if picked is None:
            state.chosen = None
            reason = REASON_RAMP if state.ramped_out else REASON_NO_REPLICA
            return on_primary(settings, state, reason, need)
        state.choose(get_health(picked), (picked, REASON_REPLICA))
        replica = picked

    if need is not None:
        found = _replica_at(settings, state, replica, need)
        if found is None:
            return on_primary(settings, state, REASON_TOKEN_WAIT, need)
        replica = found
    return replica, REASON_REPLICA


def pending(settings: Settings, state: RoutingState) -> tuple[bool, Position | None]:
    """What the scope's client must see: (a time pin holds it on the primary, the WAL
    position a replica must have replayed). An expired or disabled token is dropped."""
    if state.user_lookup is not None:
        state.resolve_user()
    token = state.token
    need = None
    if token is not None:
        mode = settings.read_your_writes
        now = clock.wall()
        if mode == "off" or token.expired(settings, now):
            state.token = token = None
        elif mode == "time" or token.pinned(settings, now):
            return True, None
        else:
            need = token.position
    if unscoped_writes.pending:
        need = _with_unscoped_writes(settings, need)
    return False, need


def _with_unscoped_writes(settings: Settings, need: Position | None) -> Position | None:
    """``need`` raised to the position of writes made outside any scope, while a replica
    may still lack them (see :class:`~django_pgreplica.consistency.writes.UnscopedWrites`)."""
    if settings.read_your_writes == "off":
        return need
    lsn = unscoped_writes.required(settings.primary)
    if lsn is None:
        return need
    floor = Position(lsn)
    if all(get_health(alias).replayed_everywhere(floor) for alias in settings.replicas):
        unscoped_writes.passed(lsn)
        return need
    if need is None:
        return floor
    return need if need.lsn >= lsn else Position(lsn, need.timeline)
