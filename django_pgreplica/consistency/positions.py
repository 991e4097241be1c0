"""WAL positions on the primary, and the token a scope hands on after it wrote."""

from __future__ import annotations

import logging

from django.db import connections

from .. import clock
from ..conf import Settings, get_settings
from ..db import fetch_one, not_waiting
from ..lsn import WAL_POSITION_SQL, Position, wal_position
from .context import RoutingState
from .tokens import ConsistencyToken

logger = logging.getLogger("django_pgreplica.consistency")


def current_wal_position(primary: str) -> Position:
    """The end of the primary's last WAL record, on its timeline: every write committed so
    far lies before it.

    Taken after commit, so a replica that has replayed up to here shows the writes.
    """
    with not_waiting():  # unreadable now: the caller degrades to a time pin at once
        return wal_position(fetch_one(primary, WAL_POSITION_SQL))


def current_wal_lsn(primary: str) -> int:
    return current_wal_position(primary).lsn


def outgoing_token(state: RoutingState) -> ConsistencyToken | None:
    """The token to hand on (to the client or a task) after this scope, if any.

    A scope that wrote gets a fresh one; otherwise the token it came with is passed on.
    In lsn mode an unreachable primary degrades to a time token instead of failing.
    """
    settings = get_settings()
    mode = settings.read_your_writes
    if mode == "off":
        return None
    state.resolve_user()
    if not state.wrote:
        return state.token
    if state.issued is not None:  # e.g. many tasks published after one write
        return state.issued
    token = _fresh_token(settings, state)
    # Inside a transaction the position lies before the coming commit record: good enough
    # for that message, not for a later one sent after the commit.
    if not connections[settings.primary].in_atomic_block:
        state.issued = token
    return token


def _fresh_token(settings: Settings, state: RoutingState) -> ConsistencyToken:
    mode = settings.read_your_writes
    written_at = state.wrote_at or clock.wall()
    if mode == "time":
        return ConsistencyToken(written_at=written_at)
    try:
        position = current_wal_position(settings.primary)
    except Exception as exc:
        logger.warning(
            "primary %s: could not read WAL position (%s); pinning for %gs instead",
            settings.primary,
            exc,
            settings.sticky_seconds,
        )
        prior = state.token
        if prior is not None and prior.lsn is not None:
            # Keep what the client already had to see: the pin covers the new write only.
            return ConsistencyToken(
                written_at=written_at, lsn=prior.lsn, pin=True, timeline=prior.timeline
            )
        return ConsistencyToken(written_at=written_at)
    fresh = ConsistencyToken(written_at=written_at, lsn=position.lsn, timeline=position.timeline)
    return fresh.newer(state.token)
