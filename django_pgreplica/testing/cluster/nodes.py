"""The servers of a cluster: :class:`Node` (configuration) and :class:`NodeStatus` (state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["HOST", "SUPERUSER", "Node", "NodeStatus", "Role", "log_tail"]

HOST = "127.0.0.1"  # every node listens here only (listen_addresses)
SUPERUSER = "postgres"

Role = Literal["primary", "replica"]


@dataclass(frozen=True)
class Node:
    """One server of the cluster. ``slot`` is the replica's slot on the primary."""

    name: str
    role: Role
    port: int
    datadir: Path
    logfile: Path

    @property
    def slot(self) -> str | None:
        return self.name if self.role == "replica" else None

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={HOST} port={self.port} user={SUPERUSER} dbname={dbname}"


@dataclass(frozen=True)
class NodeStatus:
    """What :meth:`Cluster.status` found. Fields are None when the node could not be asked.

    ``role`` is the configured role: a promoted replica keeps ``role="replica"`` and shows
    ``in_recovery=False``.
    """

    name: str
    role: Role
    port: int
    running: bool
    pid: int | None
    in_recovery: bool | None
    streaming: bool | None
    replay_paused: bool | None

    @property
    def healthy(self) -> bool:
        if self.role == "primary":
            return self.running and self.in_recovery is False
        return self.running and bool(self.in_recovery) and bool(self.streaming)


def log_tail(path: Path, lines: int = 8) -> str:
    """The last ``lines`` of a server log, indented, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text) or "    (empty log)"
