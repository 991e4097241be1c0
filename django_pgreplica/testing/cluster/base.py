"""What every cluster operation builds on: the cluster directory, its nodes, commands, pids.

:class:`ClusterBase` reads ``<dir>/cluster.json``, names the nodes and their ports, runs
server binaries (as the ``postgres`` OS user when we are root) and SQL on a node, and knows
which postmasters are alive. The public :class:`~.cluster.Cluster` adds building
(:mod:`.building`), status and waiting (:mod:`.status`), lifecycle and faults
(:mod:`.cluster`) on top.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from .directory import ClusterDirectory
from .errors import ClusterError
from .nodes import Node, Role
from .processes import children, pid_alive, wait_gone
from .secure import SecureFiles

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_FILE", "DEFAULT_DBNAME", "DEFAULT_DIR", "DEFAULT_PORT", "ClusterBase"]

# Above Linux's ephemeral port range (32768-60999): an outgoing connection can never be
# holding the port we want to listen on.
DEFAULT_PORT = 61432
DEFAULT_DIR = ".pgreplica/cluster"
DEFAULT_DBNAME = "pgreplica"
CONFIG_FILE = "cluster.json"


class ClusterBase(ClusterDirectory):
    """A cluster directory's settings, nodes, commands and pids (see :class:`~.cluster.Cluster`).

    Arguments left as None come from ``<dir>/cluster.json`` when it exists, else from the
    defaults, so ``Cluster(dir)`` alone addresses an existing cluster.
    """

    config_file = CONFIG_FILE
    kind = "cluster"
    up_command = "up"

    def __init__(
        self,
        dir: str | os.PathLike[str] = DEFAULT_DIR,
        *,
        port: int | None = None,
        replicas: int | None = None,
        dbname: str | None = None,
        bindir: str | os.PathLike[str] | None = None,
        secure: bool | None = None,
    ) -> None:
        self.dir = Path(dir).expanduser().absolute()
        saved = self._load_config()
        if port is not None and saved and saved["port"] != port:
            raise ClusterError(
                f"the cluster in {self.dir} uses port {saved['port']}, not {port}: "
                "run `down` first or use its port"
            )
        if secure is not None and saved and bool(saved.get("secure")) != secure:
            made = "with" if saved.get("secure") else "without"
            raise ClusterError(
                f"the cluster in {self.dir} was made {made} --secure: run `down` first"
            )
        # TLS, SCRAM passwords and least-privilege roles: pgconf/secure/ (see .secure).
        self.secure: bool = bool(saved.get("secure")) if secure is None else secure
        self.port: int = port if port is not None else int(saved.get("port", DEFAULT_PORT))
        self.replica_count: int = self._replica_count(replicas, saved)
        self.dbname: str = dbname or str(saved.get("dbname", DEFAULT_DBNAME))
        self._init_tools(bindir, saved)

    def __repr__(self) -> str:
        secure = " secure" if self.secure else ""
        return f"<Cluster {self.dir} port={self.port} replicas={self.replica_count}{secure}>"

    @staticmethod
    def _replica_count(requested: int | None, saved: dict[str, Any]) -> int:
        if requested is not None and requested < 0:
            raise ClusterError("the number of replicas must be 0 or more")
        if not saved:
            return 1 if requested is None else requested
        # Never shrink an existing cluster: asking for fewer replicas keeps the others.
        return max(requested or 0, int(saved["replicas"]))

    # -- configuration --

    def _save_config(self) -> None:
        data = {
            "port": self.port,
            "replicas": self.replica_count,
            "dbname": self.dbname,
            "bindir": str(self.bindir),
            "secure": self.secure,
        }
        self._write_config(data)

    @property
    def secure_files(self) -> SecureFiles:
        """Certificates and passwords of a ``secure`` cluster."""
        return SecureFiles(self.dir, self.user)

    # -- nodes --

    @property
    def primary(self) -> Node:
        return self._make_node("primary", "primary", self.port)

    @property
    def replicas(self) -> list[Node]:
        return [
            self._make_node(f"replica{i}", "replica", self.port + i)
            for i in range(1, self.replica_count + 1)
        ]

    @property
    def nodes(self) -> list[Node]:
        return [self.primary, *self.replicas]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        names = ", ".join(node.name for node in self.nodes)
        raise ClusterError(f"no node {name!r} in this cluster (nodes: {names})")

    def _make_node(self, name: str, role: Role, port: int) -> Node:
        return Node(name, role, port, self.dir / name, self.dir / "logs" / f"{name}.log")

    @property
    def socket_dir(self) -> Path:
        """``<dir>/run``, unless that is too long for a unix socket path (~107 bytes)."""
        local = self.dir / "run"
        if len(str(local)) + len(f"/.s.PGSQL.{self.port + self.replica_count}.lock") < 100:
            return local
        digest = hashlib.sha1(str(self.dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"pgreplica-{digest}"

    # -- running commands --

    def _run(
        self,
        cmd: Sequence[str],
        *,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a server binary (as the postgres OS user when we are root); ``env`` is added
        to the environment (secrets go there, never on the command line)."""
        full = self.user.wrap([str(self.bindir / cmd[0]), *cmd[1:]])
        logger.debug("running %s", shlex.join(full))
        # PG* variables (PGPORT, PGDATA, PGOPTIONS, ...) would quietly retarget the tools.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | (env or {})
        try:
            return subprocess.run(
                full,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                env=env,
            )
        except subprocess.CalledProcessError as exc:
            output = (exc.stderr or exc.stdout or "").strip().splitlines()[-6:]
            detail = "\n".join("    " + line for line in output)
            raise ClusterError(f"{cmd[0]} failed (exit {exc.returncode}):\n{detail}") from None
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{cmd[0]} timed out after {timeout:.0f}s") from None

    def connect(self, name: str, dbname: str | None = None) -> psycopg.Connection[Any]:
        """An autocommit psycopg connection to node ``name`` as the superuser (over TLS
        with its password when ``secure``)."""
        node = self.node(name)
        extra = self.secure_files.connect_kwargs() if self.secure else {}
        try:
            return psycopg.connect(
                node.conninfo(dbname or "postgres"), autocommit=True, connect_timeout=3, **extra
            )
        except psycopg.OperationalError as exc:
            raise ClusterError(f"cannot connect to {name} on port {node.port}: {exc}") from None

    def execute(
        self,
        name: str,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        dbname: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement on node ``name`` (in ``dbname``, default the cluster's)."""
        with self.connect(name, dbname or self.dbname) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description is not None else []

    def _query(self, node: Node, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        """First row of an admin query in the ``postgres`` database."""
        with self.connect(node.name) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return list(row) if row else []

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize up/down/rebuild between processes (pytest-xdist workers, shells)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- processes --

    def pid(self, name: str) -> int | None:
        """The postmaster's pid when node ``name`` is running."""
        try:
            first = (self.node(name).datadir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def kill(self, name: str) -> float | None:
        """SIGKILL the postmaster of ``name``; returns once it and its children are gone.

        The result is when the signal was sent (``time.monotonic()``), None if not running.
        """
        pid = self.pid(name)
        if pid is None:
            return None
        backends = children(pid)
        logger.info("killing %s (pid %d)", name, pid)
        os.kill(pid, signal.SIGKILL)
        sent_at = time.monotonic()
        wait_gone([pid], timeout=10)
        # Orphaned backends exit when they notice the postmaster died; stragglers would keep
        # the shared memory busy and block the next start.
        for straggler in wait_gone(backends, timeout=5):
            with contextlib.suppress(ProcessLookupError):
                os.kill(straggler, signal.SIGKILL)
        wait_gone(backends, timeout=5)
        self._clear_stale_lockfiles(self.node(name))
        return sent_at

    def _clear_stale_lockfiles(self, node: Node) -> None:
        """Remove the lock files of a dead postmaster.

        PostgreSQL's own check takes a zombie (a killed postmaster its parent has not
        reaped yet, common under container inits) for a live server and refuses to start.
        """
        socket_lock = self.socket_dir / f".s.PGSQL.{node.port}.lock"
        for lockfile in (node.datadir / "postmaster.pid", socket_lock):
            with contextlib.suppress(OSError, ValueError):
                pid = int(lockfile.read_text().split("\n", 1)[0])
                if not pid_alive(pid):
                    logger.debug("removing stale %s", lockfile)
                    lockfile.unlink()
