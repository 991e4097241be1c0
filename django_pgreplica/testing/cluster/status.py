"""What the nodes are doing (:meth:`~ClusterStatus.status`, ``env``) and waiting for them.

``wait_streaming`` polls the primary's ``pg_stat_replication``; ``wait_replayed`` reads the
primary's WAL insert position and hands it to the replay-wait loop shared with the pytest
plugin (:func:`django_pgreplica.testing.replay.wait_replayed`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from functools import partial

from ...lsn import WAL_POSITION_SQL, parse_lsn, wal_target
from ..replay import REPLAY_POSITION_SQL, NotReplayed, ReplayPosition, wait_replayed
from .base import ClusterBase
from .errors import ClusterError
from .nodes import HOST, SUPERUSER, Node, NodeStatus, log_tail
from .secure import APP_USER, MONITOR_USER

__all__ = ["ClusterStatus"]


class ClusterStatus(ClusterBase):
    """Reporting on and waiting for a cluster's nodes."""

    # -- waiting --

    def wait_streaming(self, timeout: float = 30, names: Sequence[str] | None = None) -> None:
        """Wait until the primary's pg_stat_replication shows each replica as streaming.

        ``names`` defaults to every replica that is running and still in recovery.
        """
        wanted = list(names) if names is not None else self._recovering_replicas()
        if not wanted:
            return
        sql = (
            "SELECT application_name FROM pg_stat_replication "
            "WHERE state = 'streaming' AND application_name = ANY(%s)"
        )
        deadline = time.monotonic() + timeout
        while True:
            with self.connect("primary") as conn:
                rows = conn.execute(sql, [wanted]).fetchall()
            missing = sorted(set(wanted) - {row[0] for row in rows})
            if not missing:
                return
            if time.monotonic() > deadline:
                logs = [self.node(name).logfile for name in missing]
                tails = "\n".join(f"  {log}:\n{log_tail(log, 4)}" for log in logs)
                raise ClusterError(
                    f"{', '.join(missing)} not streaming after {timeout:.0f}s "
                    f"(try `rebuild NAME`):\n{tails}"
                )
            time.sleep(0.05)

    def wait_replayed(self, timeout: float = 10, names: Sequence[str] | None = None) -> None:
        """Wait until replicas have replayed the primary's current WAL insert position.

        ``names`` defaults to every replica that is running and still in recovery.
        """
        row = self._query(self.primary, WAL_POSITION_SQL)
        try:
            wait_replayed(
                wal_target(row), self._replay_positions(names), timeout=timeout, interval=0.02
            )
        except NotReplayed as exc:
            raise ClusterError(
                f"{exc.name} has not replayed up to {row[0]} after {timeout:.0f}s"
            ) from None

    def _replay_positions(
        self, names: Sequence[str] | None
    ) -> Iterator[tuple[str, ReplayPosition]]:
        """A generator: the default replicas are looked up once the wait has started."""
        for name in names if names is not None else self._recovering_replicas():
            yield name, partial(self._replay_position, self.node(name))

    def _replay_position(self, node: Node) -> int | None:
        replayed: str | None = self._query(node, REPLAY_POSITION_SQL)[0]
        return parse_lsn(replayed)

    def _recovering_replicas(self) -> list[str]:
        return [s.name for s in self.status() if s.role == "replica" and s.in_recovery]

    # -- reporting --

    def status(self) -> list[NodeStatus]:
        return [self._node_status(node) for node in self.nodes]

    def _node_status(self, node: Node) -> NodeStatus:
        pid = self.pid(node.name)
        if pid is None:
            return NodeStatus(node.name, node.role, node.port, False, None, None, None, None)
        sql = (
            "SELECT pg_is_in_recovery(), "
            "CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END, "
            "(SELECT status = 'streaming' FROM pg_stat_wal_receiver)"
        )
        try:
            in_recovery, paused, streaming = self._query(node, sql)
        except ClusterError:
            return NodeStatus(node.name, node.role, node.port, True, pid, None, None, None)
        return NodeStatus(
            node.name,
            node.role,
            node.port,
            True,
            pid,
            in_recovery,
            bool(streaming) if in_recovery else None,
            paused,
        )

    def env(self) -> dict[str, str]:
        """The DATABASE_* variables testproject/settings.py reads. A secure cluster's are
        the application role's, over TLS, plus MONITOR_USER/MONITOR_PASSWORD (the names
        compose uses) for ``replication_status`` as the monitoring role, also as
        DATABASE_MONITOR_USER/PASSWORD (testproject's monitoring aliases, as in compose)."""
        env = {
            "DATABASE_HOST": HOST,
            "DATABASE_PORT": str(self.port),
            "DATABASE_NAME": self.dbname,
            "DATABASE_USER": SUPERUSER,
            "DATABASE_REPLICAS": ",".join(f"{HOST}:{node.port}" for node in self.replicas),
        }
        if self.secure:
            files = self.secure_files
            passwords = files.passwords()
            env |= {
                "DATABASE_USER": APP_USER,
                "DATABASE_PASSWORD": passwords[APP_USER],
                "DATABASE_SSLMODE": files.client_params()["sslmode"],
                "DATABASE_SSLROOTCERT": files.client_params()["sslrootcert"],
                "MONITOR_USER": MONITOR_USER,
                "MONITOR_PASSWORD": passwords[MONITOR_USER],
                # testproject's monitoring aliases, as compose sets them
                "DATABASE_MONITOR_USER": MONITOR_USER,
                "DATABASE_MONITOR_PASSWORD": passwords[MONITOR_USER],
            }
        return env
