"""Each member behind a multi-host replica alias, observed on its own.

An alias over every Patroni member (``HOST = "db1,db2,db3"``, ``target_session_attrs =
standby``) reaches one standby per connection. The status check looks at each member
instead, on a short-lived connection of its own to exactly that host, so the report shows
the topology: one row per standby, labelled ``alias@host:port``; the member that is the
primary now is left out (it is the primary's row), and a member that is down is a row
that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import connections

from ..db import members
from .queries import QueryRunner, Row, monitoring_alias

# libpq options that choose among several hosts: meaningless for one member.
HOST_CHOICE_OPTIONS = ("target_session_attrs", "load_balance_hosts")
MEMBER_CONNECT_TIMEOUT = 2


def member_label(alias: str, host: str, port: str) -> str:
    return f"{alias}@{host}:{port}"


def member_runner(alias: str, host: str, port: str) -> QueryRunner:
    """A runner that asks only ``host:port``, with the credentials and options of
    ``alias`` (or of its monitoring alias)."""
    options: dict[str, Any] = connections[monitoring_alias(alias)].get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold", *HOST_CHOICE_OPTIONS):
        options.pop(key, None)
    options.update(host=host, port=port)
    options.setdefault("connect_timeout", MEMBER_CONNECT_TIMEOUT)

    def run(alias: str, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        with psycopg.connect(**options, autocommit=True) as conn:
            return [tuple(row) for row in conn.execute(sql, params).fetchall()]

    return run


def expand(alias: str) -> list[tuple[str, QueryRunner | None]]:
    """(label, runner) per server of ``alias``: the alias itself and None (the caller's
    runner) when it has one host, else one per member."""
    servers = members(alias)
    if len(servers) <= 1:
        return [(alias, None)]
    return [(member_label(alias, h, p), member_runner(alias, h, p)) for h, p in servers]
