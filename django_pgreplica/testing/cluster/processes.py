"""Ports, pids and the OS user the server binaries run as."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ClusterError
from .nodes import HOST

__all__ = [
    "OsUser",
    "children",
    "free_base_port",
    "pid_alive",
    "port_in_use",
    "wait_gone",
]


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something already listens on ``host:port`` (TIME_WAIT sockets don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_base_port(start: int, nodes: int, *, step: int = 10, tries: int = 100) -> int:
    """The first of ``start``, ``start + step``, ... with ``nodes`` free ports in a row."""
    for base in range(start, start + step * tries, step):
        if not any(port_in_use(port) for port in range(base, base + nodes)):
            return base
    raise ClusterError(f"no {nodes} free ports in a row from {start}")


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie postmaster holds no port and no shared memory)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(0)
    return fields[0] != "Z"


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (empty without /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(entry.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.parent.name))
    return found


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` is alive; return those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if pid_alive(pid)]
    return alive


@dataclass(frozen=True)
class OsUser:
    """Who runs the server binaries: ourselves, or ``postgres`` through runuser when root."""

    name: str | None
    uid: int
    gid: int

    @classmethod
    def detect(cls) -> OsUser:
        if os.geteuid() != 0:
            return cls(None, os.geteuid(), os.getegid())
        name = os.environ.get("PGREPLICA_OS_USER", "postgres")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ClusterError(
                f"PostgreSQL refuses to run as root and there is no {name!r} OS user to run "
                "it as: run as a regular user, or create one (the postgresql package does)"
            ) from None
        if not shutil.which("runuser"):
            raise ClusterError("running as root needs runuser (util-linux) to drop to " + name)
        return cls(name, entry.pw_uid, entry.pw_gid)

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        return ["runuser", "-u", self.name, "--", *cmd] if self.name else list(cmd)

    def own(self, path: Path) -> None:
        if self.name:
            os.chown(path, self.uid, self.gid)
