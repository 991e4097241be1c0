"""Helpers for the replication monitoring tests (real cluster)."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import connections

from testproject.shop.models import Product


def closed_port() -> int:
    """A local port nothing listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def primary_unreachable(alias: str = "default") -> Iterator[None]:
    """Point ``alias`` at a closed port for the block; Django's connection follows."""
    conn = connections[alias]
    saved = conn.settings_dict["PORT"]
    conn.close()
    conn.settings_dict["PORT"] = str(closed_port())
    try:
        yield
    finally:
        conn.close()
        conn.settings_dict["PORT"] = saved


def write_rows(count: int = 3, prefix: str = "item") -> None:
    """Committed writes on the primary: WAL for the replicas to replay."""
    for index in range(count):
        Product.objects.create(name=f"{prefix} {index}", slug=f"{prefix}-{index}", price=1)


class RoleRunner:
    """A QueryRunner that connects as ``user`` with each alias's host, port and database."""

    def __init__(self, user: str) -> None:
        self.user = user
        self._conns: dict[str, psycopg.Connection[Any]] = {}

    def __call__(self, alias: str, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        conn = self._conns.get(alias)
        if conn is None:
            conf = connections[alias].settings_dict
            conn = psycopg.connect(
                host=conf["HOST"],
                port=str(conf["PORT"]),
                dbname=conf["NAME"],
                user=self.user,
                connect_timeout=2,
                autocommit=True,
            )
            self._conns[alias] = conn
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


@contextmanager
def login_role(name: str, *grants: str) -> Iterator[str]:
    """A LOGIN role created on the primary (replicas receive it), dropped afterwards."""
    from django_pgreplica.testing.plugin import wait_for_replay

    with connections["default"].cursor() as cursor:
        cursor.execute(f'DROP ROLE IF EXISTS "{name}"')
        cursor.execute(f'CREATE ROLE "{name}" LOGIN')
        for grant in grants:
            cursor.execute(f'GRANT {grant} TO "{name}"')
    wait_for_replay()
    try:
        yield name
    finally:
        with connections["default"].cursor() as cursor:
            cursor.execute(f'DROP ROLE IF EXISTS "{name}"')
