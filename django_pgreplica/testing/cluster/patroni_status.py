"""What a Patroni cluster reports: :class:`MemberStatus`, :class:`PatroniStatus`, REST calls.

Roles, states, timelines and lag come from Patroni's ``GET /cluster`` (its view of etcd,
asked of any member that answers); whether a member's own REST API answers, and whether
its processes are frozen, is checked member by member.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from .errors import ClusterError
from .nodes import HOST

__all__ = ["MemberStatus", "PatroniStatus", "rest_call"]


def rest_call(
    port: int, path: str, *, body: dict[str, Any] | None = None, timeout: float = 2
) -> tuple[int, Any]:
    """``GET`` (or ``POST`` with a JSON ``body``) Patroni's REST API on ``port``.

    Returns the HTTP status and the decoded JSON (or the text, for non-JSON answers);
    ClusterError when nothing answers in ``timeout`` seconds.
    """
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}",
        data=data,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:  # 412, 503: Patroni's answer is in the body
        status, raw = exc.code, exc.read()
    except (OSError, ValueError) as exc:
        raise ClusterError(f"Patroni's REST API on port {port} does not answer: {exc}") from None
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.strip()


@dataclass(frozen=True)
class MemberStatus:
    """One member as Patroni sees it; fields are None when nobody could say.

    ``role`` is Patroni's: ``leader``, ``sync_standby``, ``quorum_standby`` or ``replica``;
    ``state`` is e.g. ``running`` (the leader), ``streaming``, ``starting``, ``stopped``;
    ``lag`` is the replay position's distance from the leader's, in bytes.
    """

    name: str
    pg_port: int
    api_port: int
    patroni_pid: int | None
    postgres_pid: int | None
    reachable: bool  # its REST API answered
    hung: bool  # its patroni or postmaster is SIGSTOPped (see PatroniCluster.hang)
    role: str | None = None
    state: str | None = None
    timeline: int | None = None
    lag: int | None = None

    @property
    def is_leader(self) -> bool:
        return self.role == "leader"


@dataclass(frozen=True)
class PatroniStatus:
    """The whole cluster: etcd, the leader etcd names, and every configured member."""

    etcd_running: bool
    leader: str | None
    members: list[MemberStatus] = field(default_factory=list)
    sync_required: bool = False  # synchronous mode with more than one member

    def member(self, name: str) -> MemberStatus:
        for member in self.members:
            if member.name == name:
                return member
        raise ClusterError(f"no member {name!r}")

    @property
    def replicas(self) -> list[MemberStatus]:
        return [m for m in self.members if m.name != self.leader]

    @property
    def problems(self) -> list[str]:
        """Why the cluster is not healthy, one phrase each; empty when it is."""
        found = [] if self.etcd_running else ["etcd is not running"]
        leader = next((m for m in self.members if m.name == self.leader), None)
        if leader is None:
            found.append("no leader")
        elif leader.state != "running":
            found.append(f"leader {leader.name} is {leader.state or 'unknown'}")
        for m in self.members:
            if m.hung:
                found.append(f"{m.name} is hung (SIGSTOP)")
            elif not m.reachable:
                found.append(f"{m.name}'s Patroni does not answer")
            elif m is not leader and m.state != "streaming":
                found.append(f"{m.name} is {m.state or 'not in the cluster'}")
            elif leader and m is not leader and m.timeline != leader.timeline:
                found.append(f"{m.name} is on timeline {m.timeline}, not {leader.timeline}")
        if self.sync_required and not any(m.role in _SYNC_ROLES for m in self.members):
            found.append("no synchronous standby")
        return found

    @property
    def healthy(self) -> bool:
        """One running leader, every other member streaming on its timeline, etcd up."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "problems": self.problems,
            "etcd_running": self.etcd_running,
            "leader": self.leader,
            "members": [vars(m) for m in self.members],
        }


_SYNC_ROLES = ("sync_standby", "quorum_standby")
