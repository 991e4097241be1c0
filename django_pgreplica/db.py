"""Raw-cursor helpers below the ORM, shared by probes, WAL-position reads and monitoring."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import DatabaseError, connections

# How connection attempts behave (routing.connecting): "request" (the default), "no-wait"
# or "observe".
_connect_mode = contextvars.ContextVar("pgreplica_connect_mode", default="request")


@contextlib.contextmanager
def _mode(mode: str) -> Iterator[None]:
    token = _connect_mode.set(mode)
    try:
        yield
    finally:
        _connect_mode.reset(token)


def not_waiting() -> contextlib.AbstractContextManager[None]:
    """Connection attempts to the primary inside fail at once instead of waiting out a
    failover (PRIMARY_WAIT_SECONDS): for callers that have somewhere else to go or
    something else to say (a read's last resort, a token's position)."""
    return _mode("no-wait")


def observing() -> contextlib.AbstractContextManager[None]:
    """Connection attempts inside report the server as it is: the primary's fail at once,
    and a replica's are made even while another process is stuck connecting to it (a
    status check must see for itself)."""
    return _mode("observe")


def may_wait_for_primary() -> bool:
    return _connect_mode.get() == "request"


def may_refuse_replica() -> bool:
    return _connect_mode.get() != "observe"


def raw_rows(alias: str, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the thread's connection to ``alias``, below the ORM.

    The raw cursor skips the execute wrappers, so a failing probe is seen as a failure
    rather than being rerouted to the primary, and nothing is routed. A broken connection
    is closed so the next attempt reconnects. A persistent connection that fails is tried
    once more on a fresh one (these queries only read): after a server restart, a thread
    that did not use it meanwhile still holds a socket from the server's previous life,
    and that is no verdict on the server.
    """
    conn = connections[alias]
    retry = conn.connection is not None and not conn.in_atomic_block
    try:
        return _run(conn, sql, params)
    except Exception:
        close_quietly(alias)
        if not retry:
            raise
    try:
        return _run(conn, sql, params)
    except Exception:
        close_quietly(alias)
        raise


def _run(conn: Any, sql: str, params: Sequence[Any] | None) -> list[tuple[Any, ...]]:
    conn.ensure_connection()
    assert conn.connection is not None
    with conn.connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def fetch_one(alias: str, sql: str) -> tuple[Any, ...]:
    """The single row of ``sql`` (see :func:`raw_rows`)."""
    rows = raw_rows(alias, sql)
    if not rows:  # pragma: no cover - these queries always return a row
        raise DatabaseError(f"{alias}: {sql.split()[0]} returned no row")
    return rows[0]


def close_quietly(alias: str) -> None:
    conn = connections[alias]
    try:
        conn.close()
    except Exception:
        # A dead socket can fail to close; drop it so the next use reconnects.
        conn.connection = None


def members(alias: str) -> list[tuple[str, str]]:
    """The (host, port) servers ``alias`` may connect to: one, or each of a libpq
    multi-host ``HOST`` (one ``PORT`` applies to every host, as in libpq)."""
    db = connections[alias].settings_dict
    hosts = [h.strip() for h in str(db.get("HOST") or "").split(",")]
    ports = [p.strip() for p in str(db.get("PORT") or "").split(",")]
    if len(ports) == 1:
        ports = ports * len(hosts)
    return list(zip(hosts, ports, strict=False))


def one_line(error: BaseException | str) -> str:
    """The first line of an error, for logs and reports."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].strip()


def pool_refused(error: BaseException) -> bool:
    """Is ``error`` (or what it wraps) a pool's refusal to hand out a connection: its
    getconn() timed out, or it was closed while this thread waited? Neither says
    whether the server answers."""
    try:
        from psycopg_pool import PoolClosed, PoolTimeout
    except ImportError:  # no pool without psycopg_pool
        return False
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, PoolTimeout | PoolClosed):
            return True
        seen = seen.__cause__
    return False
