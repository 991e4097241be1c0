"""Django's native pool (``OPTIONS["pool"]``, Django 5.1+) on replica aliases, bounded.

psycopg_pool's ``getconn()`` waits up to the pool's ``timeout`` (30 s by default) for a
connection, and while the server is down or hung none comes, whatever ``connect_timeout``
says. So, before any pool exists (:func:`bound_replica_pools`, at app ready), a replica
alias whose pool sets no ``timeout`` gets its connect_timeout as the pool's. And a pool
that could not hand out a connection is dropped (:func:`discard_pool`): the one Django
builds at the next use connects at once, where the old one would wait out its reconnect
backoff (up to minutes) after the replica came back. The primary's pool is left alone: a
write cannot go elsewhere, so trading a wait under load for an error is the project's call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import connections

from ..health.probe import PROBE_CONNECT_TIMEOUT

logger = logging.getLogger("django_pgreplica.router")

# getconn()'s wait, and how long a pool keeps retrying a lost connection in the background
# (backing off up to 64 s between attempts) before it gives up and lets the next getconn()
# try at once: the replica's reads went elsewhere meanwhile, and the prober watches it.
BOUNDED_KEYS = ("timeout", "reconnect_timeout")
# libpq's floor: a connect_timeout of 1 s waits 2 s.
LIBPQ_MIN_CONNECT_TIMEOUT = 2
# psycopg_pool's getconn() timeout when the pool sets none.
PSYCOPG_POOL_TIMEOUT = 30.0

# The aliases bound_configured_pools gave a timeout (written at app ready, then read).
_bounded: set[str] = set()


def connect_timeout(options: Mapping[str, Any]) -> int | None:
    """How long libpq waits per connection attempt with these OPTIONS, in seconds; None
    when it waits indefinitely (unset, zero, negative) or the value is not a number."""
    value = options.get("connect_timeout")
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = int(float(value))
    except (TypeError, ValueError):
        return None
    return max(seconds, LIBPQ_MIN_CONNECT_TIMEOUT) if seconds > 0 else None


def pool_options(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The psycopg_pool arguments of these OPTIONS; None when the alias is not pooled."""
    pool = options.get("pool")
    if not pool:
        return None
    return dict(pool) if isinstance(pool, Mapping) else {}


def bounded_timeout(options: Mapping[str, Any]) -> float:
    """The pool timeout that keeps a request's wait within one connection attempt (the
    background prober's when the alias sets no connect_timeout: W004 reports that)."""
    seconds = connect_timeout(options)
    return float(PROBE_CONNECT_TIMEOUT) if seconds is None else float(seconds)


def bounded_pool(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pool arguments with a timeout added, or None when nothing is to change (not
    pooled, or the project chose a timeout: check W011 judges that one)."""
    pool = pool_options(options)
    if pool is None:
        return None
    bound = bounded_timeout(options)
    added = {key: bound for key in BOUNDED_KEYS if key not in pool}
    return {**pool, **added} if added else None


def busy_wait(options: Mapping[str, Any], bounded_by_router: bool) -> float:
    """How much longer a read may wait for a connection after getconn() timed out on a
    server that answers (every connection in use): up to what psycopg_pool would have
    waited without the router's bound; nothing more when the project chose the timeout."""
    pool = pool_options(options)
    if pool is None or not bounded_by_router:
        return 0.0
    return max(0.0, PSYCOPG_POOL_TIMEOUT - float(pool.get("timeout", PSYCOPG_POOL_TIMEOUT)))


def bounded_by_router(alias: str) -> bool:
    """Did :func:`bound_configured_pools` give ``alias``'s pool its timeout?"""
    return alias in _bounded


def bound_replica_pools(databases: Mapping[str, Any], replicas: Iterable[str]) -> list[str]:
    """Give each pooled replica alias without a pool timeout its bounded one; returns the
    aliases changed. OPTIONS and the pool dict are replaced, not edited: a project may
    share one dict between aliases, the primary's included."""
    changed = []
    for alias in replicas:
        db = databases.get(alias)
        if not isinstance(db, dict):
            continue
        options = db.get("OPTIONS") or {}
        pool = bounded_pool(options)
        if pool is None:
            continue
        db["OPTIONS"] = {**options, "pool": pool}
        changed.append(alias)
    return changed


def bound_configured_pools() -> list[str]:
    """:func:`bound_replica_pools` on Django's connection settings (the dicts the database
    wrappers read when they build a pool)."""
    from ..conf import get_settings

    changed = bound_replica_pools(connections.settings, get_settings().replicas)
    _bounded.update(changed)
    for alias in changed:
        logger.debug(
            "replica %s: pool timeout %ss (its connect_timeout)",
            alias,
            connections.settings[alias]["OPTIONS"]["pool"]["timeout"],
        )
    return changed


def discard_pool(alias: str) -> bool:
    """Forget ``alias``'s pool, if it has one, and close it in the background (closing
    waits for its workers, which may be stuck connecting to the hung server). Connections
    checked out of it are closed when given back. Returns whether there was one."""
    wrapper = connections[alias]
    pools = getattr(type(wrapper), "_connection_pools", None)  # Django 5.1+: per process
    if not isinstance(pools, dict):
        return False
    pool = pools.pop(alias, None)
    if pool is None:
        return False
    threading.Thread(
        target=_close, args=(alias, pool), name=f"pgreplica-pool-close-{alias}", daemon=True
    ).start()
    return True


def _close(alias: str, pool: Any) -> None:
    try:
        pool.close()
    except Exception as exc:  # a dying pool has nothing left to tell the request
        logger.debug("replica %s: closing its old pool: %s", alias, exc)
