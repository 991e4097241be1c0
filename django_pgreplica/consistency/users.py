"""Write positions per logged-in user (READ_YOUR_WRITES_SCOPE="user"), kept in ``CACHE``.

A user who writes on one device must read it on every other: the token a writing request
hands its client is also stored under the user's id, and a request of that user takes the
newer of its own token and the stored one. The record expires like a token. The cache is
asked at most once per request (at its first read that could go to a replica), never per
read; when the cache fails, only the client's token counts (logged, never an error).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.cache import caches

from .. import clock
from ..conf import Settings
from .tokens import ConsistencyToken

logger = logging.getLogger("django_pgreplica.consistency")

PREFIX = "pgreplica:user:"
# A cache outage is logged once per this many seconds per process, not once per request.
WARN_EVERY = 60.0
_last_warned = [float("-inf")]


def user_key(user_id: Any) -> str:
    return f"{PREFIX}{user_id}"


def _warn(action: str, exc: BaseException, alias: str) -> None:
    now = clock.monotonic()
    if now - _last_warned[0] >= WARN_EVERY:
        _last_warned[0] = now
        logger.warning(
            "cache %s: could not %s a user's write position (%s); reads use the client's "
            "token only",
            alias,
            action,
            exc,
        )


def _decode(value: Any) -> ConsistencyToken | None:
    try:
        lsn, written_at, *rest = value
        timeline = int(rest[0]) if rest and rest[0] is not None else None
        return ConsistencyToken(
            written_at=float(written_at),
            lsn=None if lsn is None else int(lsn),
            timeline=None if lsn is None else timeline,
        )
    except (TypeError, ValueError):
        return None


def load(settings: Settings, user_id: Any) -> ConsistencyToken | None:
    """The user's last write position, unless it expired (one cache round trip)."""
    assert settings.cache is not None
    try:
        value = caches[settings.cache].get(user_key(user_id))
    except Exception as exc:
        _warn("read", exc, settings.cache)
        return None
    token = None if value is None else _decode(value)
    if token is None or token.expired(settings, clock.wall()):
        return None
    return token


def remember(settings: Settings, user_id: Any, token: ConsistencyToken) -> None:
    """Store ``token`` as the user's position unless a newer one is there (two devices
    writing at once: the later position wins)."""
    assert settings.cache is not None
    newest = token.newer(load(settings, user_id))
    remaining = newest.lifetime(settings) - (clock.wall() - newest.written_at)
    if remaining <= 0:
        return
    try:
        caches[settings.cache].set(
            user_key(user_id),
            (newest.lsn, newest.written_at, newest.timeline),
            timeout=math.ceil(remaining),
        )
    except Exception as exc:
        _warn("store", exc, settings.cache)
