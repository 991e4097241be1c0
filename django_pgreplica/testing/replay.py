"""Waiting until replicas have replayed a WAL position: the one loop both wait helpers use.

:func:`django_pgreplica.testing.plugin.wait_for_replay` (on Django aliases) and
:meth:`django_pgreplica.testing.cluster.Cluster.wait_replayed` (on cluster nodes) read the
primary's position themselves, then call :func:`wait_replayed` with one "replayed position"
callable per replica and turn :class:`NotReplayed` into their own error. The clock and the
sleep are arguments, so the loop is tested without a database or real waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ..lsn import format_lsn

__all__ = ["REPLAY_POSITION_SQL", "NotReplayed", "ReplayPosition", "wait_replayed"]

# What a replica has applied so far; NULL (None) until it has replayed any WAL.
REPLAY_POSITION_SQL = "SELECT pg_last_wal_replay_lsn()::text"

ReplayPosition = Callable[[], int | None]
"""Reads one replica's replay position now (as :func:`~django_pgreplica.lsn.parse_lsn`)."""


class NotReplayed(Exception):
    """Replica ``name`` had replayed only up to ``replayed`` when the deadline passed."""

    def __init__(self, name: str, target: int, replayed: int | None) -> None:
        self.name = name
        self.target = target
        self.replayed = replayed
        super().__init__(
            f"{name} has not replayed up to {format_lsn(target)} (replayed: {self.replayed_text})"
        )

    @property
    def replayed_text(self) -> str:
        """The last position seen, spelled as PostgreSQL does; ``"None"`` before any WAL."""
        return "None" if self.replayed is None else format_lsn(self.replayed)


def wait_replayed(
    target: int,
    replicas: Iterable[tuple[str, ReplayPosition]],
    *,
    timeout: float,
    interval: float,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll each ``(name, position)`` of ``replicas`` in turn until it reaches ``target``.

    One deadline, ``timeout`` seconds after the call, covers every replica; a position is
    read at least once even past it. ``replicas`` is iterated only after the deadline is
    set, so it may be a generator that looks the replicas up lazily. Raises
    :class:`NotReplayed` for the first replica still short of ``target`` at the deadline;
    errors raised by a position callable propagate unchanged.
    """
    deadline = monotonic() + timeout
    for name, position in replicas:
        while True:
            replayed = position()
            if replayed is not None and replayed >= target:
                break
            if monotonic() > deadline:
                raise NotReplayed(name, target, replayed)
            sleep(interval)
