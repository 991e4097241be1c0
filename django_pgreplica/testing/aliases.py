"""Replay helpers on Django database aliases, for tests that run against the cluster.

:func:`wait_for_replay` and :func:`replay_paused` are what the pytest plugin
(:mod:`django_pgreplica.testing.plugin`) exports to tests; they work on the aliases named
in ``PGREPLICA`` (``PRIMARY``, ``REPLICAS``), not on cluster nodes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import psycopg

from ..lsn import WAL_POSITION_SQL, parse_lsn, wal_target
from .replay import REPLAY_POSITION_SQL, NotReplayed, wait_replayed

__all__ = [
    "REPLICA_CONNECT_TIMEOUT",
    "configured_aliases",
    "replay_paused",
    "wait_for_replay",
]

REPLICA_CONNECT_TIMEOUT = 2


def configured_aliases() -> tuple[str, tuple[str, ...]]:
    """The primary alias and the replica aliases, from the ``PGREPLICA`` setting."""
    from django_pgreplica.conf import get_settings

    conf = get_settings()
    return conf.primary, tuple(conf.replicas)


def _alias_connection(alias: str) -> Any:
    """The raw psycopg connection behind Django's ``alias`` (no router, no ORM)."""
    from django.db import connections

    wrapper = connections[alias]
    wrapper.ensure_connection()
    return wrapper.connection


def _fetch(alias: str, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...]:
    with _alias_connection(alias).cursor() as cursor:
        cursor.execute(sql, params)
        row: tuple[Any, ...] = cursor.fetchone()
        return row


def _replay_position(alias: str) -> int | None:
    replayed: str | None = _fetch(alias, REPLAY_POSITION_SQL)[0]
    return parse_lsn(replayed)


def wait_for_replay(aliases: Sequence[str] | None = None, timeout: float = 10.0) -> None:
    """Block until each replica alias has replayed everything the primary has written.

    Reads ``pg_current_wal_insert_lsn()`` on the primary alias, then polls each replica
    (default: all of ``PGREPLICA["REPLICAS"]``) until its replay position reaches it.
    Raises TimeoutError naming the first replica that does not get there in ``timeout``.
    """
    primary, replicas = configured_aliases()
    row = _fetch(primary, WAL_POSITION_SQL)
    names = replicas if aliases is None else aliases
    try:
        wait_replayed(
            wal_target(row),
            [(alias, partial(_replay_position, alias)) for alias in names],
            timeout=timeout,
            interval=0.01,
        )
    except NotReplayed as exc:
        raise TimeoutError(
            f"replica alias {exc.name!r} has not replayed the primary's WAL up to {row[0]} "
            f"within {timeout}s (replayed: {exc.replayed_text}); is its replay paused?"
        ) from None


def _psycopg_connect(alias: str) -> psycopg.Connection[Any]:
    """A separate autocommit connection from ``alias``'s settings, outside Django's."""
    from django.db import connections

    conf = connections[alias].settings_dict
    options = conf.get("OPTIONS") or {}
    return psycopg.connect(
        host=conf.get("HOST") or None,
        port=str(conf.get("PORT") or "") or None,
        user=conf.get("USER") or None,
        password=conf.get("PASSWORD") or None,
        dbname=conf.get("NAME") or "postgres",
        connect_timeout=options.get("connect_timeout", REPLICA_CONNECT_TIMEOUT),
        autocommit=True,
    )


@contextlib.contextmanager
def replay_paused(alias: str) -> Iterator[None]:
    """Pause WAL replay on replica ``alias`` for the block: it keeps receiving, applies
    nothing, so reads there stay stale. Needs a superuser (the cluster's ``postgres``)."""
    with _psycopg_connect(alias) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")
