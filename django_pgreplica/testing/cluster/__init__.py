"""A local PostgreSQL primary with N streaming replicas, for development, tests and demos.

``python -m django_pgreplica.cluster up`` builds one with ``initdb`` and
``pg_basebackup -R -X stream -C -S <slot>`` (one physical slot per replica), using the
settings in ``django_pgreplica/pgconf/``. The other commands take only ``--dir``: the port,
replica count and database name are kept in ``<dir>/cluster.json``.

Layout of a cluster directory::

    cluster.json   port, replicas, dbname, bindir
    primary/       data directory of node "primary" (port BASE)
    replica1/ ...  data directory of node "replicaN" (port BASE + N)
    logs/NAME.log  server log of each node
    run/           unix sockets (listen_addresses is 127.0.0.1 only)

Typical use::

    python -m django_pgreplica.cluster up --replicas 2      # ~2 s from scratch, ~0.2 s reused
    eval "$(python -m django_pgreplica.cluster env)"        # DATABASE_HOST/PORT/NAME/USER/REPLICAS
    python -m django_pgreplica.cluster status [--json]      # exit 1 unless every node is healthy
    python -m django_pgreplica.cluster pause-replay replica1   # or resume-replay, stop, start,
    python -m django_pgreplica.testing.cluster promote replica2        # kill, rebuild NAME
    python -m django_pgreplica.testing.cluster down

Needs PostgreSQL 13 or newer (server binaries found on PATH, through ``pg_config`` or in
``/usr/lib/postgresql/*/bin``; ``$PGREPLICA_PG_BINDIR`` overrides the search).

The same :class:`Cluster` API backs the fault helpers the tests use (pause replay, stop,
kill, promote, rebuild). PostgreSQL refuses to run as root, so when invoked as root every
server binary runs as the ``postgres`` OS user through ``runuser``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql as pgsql

from ...lsn import WAL_POSITION_SQL, parse_lsn, record_end_lsn, wal_target

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DBNAME",
    "DEFAULT_DIR",
    "DEFAULT_PORT",
    "Cluster",
    "ClusterError",
    "Node",
    "NodeStatus",
    "find_bindir",
    "free_base_port",
    "main",
    "pid_alive",
    "record_end_lsn",
]

# Above Linux's ephemeral port range (32768-60999): an outgoing connection can never be
# holding the port we want to listen on.
DEFAULT_PORT = 61432
DEFAULT_DIR = ".pgreplica/cluster"
DEFAULT_DBNAME = "pgreplica"
HOST = "127.0.0.1"
SUPERUSER = "postgres"
CONFIG_FILE = "cluster.json"
PGCONF_DIR = Path(__file__).resolve().parents[2] / "pgconf"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_basebackup")
INSTALL_HINT = (
    "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; "
    "Fedora: dnf install postgresql-server; macOS: brew install postgresql) "
    "or point PGREPLICA_PG_BINDIR at its bin directory"
)
# The include line this tool owns in each node's postgresql.conf; its target says the role.
_INCLUDE_RE = re.compile(r"^include 'pgreplica/(primary|replica)\.conf'.*$", re.MULTILINE)

Role = Literal["primary", "replica"]


class ClusterError(Exception):
    """Anything that stops a cluster command; the message is meant for humans."""


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


# --- finding the server binaries ------------------------------------------------------


def _version_key(path: str) -> tuple[int, ...]:
    """``/usr/lib/postgresql/9.6/bin`` -> (9, 6), so 16 sorts above 9.6."""
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def _pg_config_bindir(pg_config: str | None) -> list[str]:
    if not pg_config:
        return []
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    return [out] if out else []


def _bindir_candidates(search_path: str | None, globs: Sequence[str]) -> list[str]:
    candidates: list[str] = []
    initdb = shutil.which("initdb", path=search_path)
    if initdb:
        # Debian puts only symlinks or wrappers on PATH: the real directory has the rest.
        candidates += [str(Path(initdb).parent), str(Path(initdb).resolve().parent)]
    candidates += _pg_config_bindir(shutil.which("pg_config", path=search_path))
    for pattern in globs:
        candidates += sorted(glob.glob(pattern), key=_version_key, reverse=True)
    return candidates


def _has_server(bindir: str) -> bool:
    return all(os.access(os.path.join(bindir, name), os.X_OK) for name in SERVER_BINARIES)


def find_bindir(
    explicit: str | None = None,
    *,
    search_path: str | None = None,
    globs: Sequence[str] = (
        "/usr/lib/postgresql/*/bin",
        "/usr/pgsql-*/bin",
        "/usr/local/pgsql/bin",
        "/opt/homebrew/opt/postgresql@*/bin",
    ),
) -> Path:
    """The directory holding initdb, pg_ctl, postgres and pg_basebackup.

    ``explicit`` (or ``$PGREPLICA_PG_BINDIR``) is the only place looked at when given;
    otherwise PATH (``search_path``), ``pg_config --bindir``, then ``globs``, highest
    version first.
    """
    explicit = explicit or os.environ.get("PGREPLICA_PG_BINDIR") or None
    if explicit:
        if _has_server(explicit):
            return Path(explicit)
        raise ClusterError(
            f"no PostgreSQL server binaries ({', '.join(SERVER_BINARIES)}) in {explicit}: "
            + INSTALL_HINT
        )
    for candidate in _bindir_candidates(search_path, globs):
        if _has_server(candidate):
            return Path(candidate)
    raise ClusterError(
        "PostgreSQL server binaries not found (looked in PATH, pg_config --bindir and "
        f"/usr/lib/postgresql/*/bin): {INSTALL_HINT}"
    )


# --- small helpers --------------------------------------------------------------------


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


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(entry.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.parent.name))
    return found


def _wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` is alive; return those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if pid_alive(pid)]
    return alive


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text) or "    (empty log)"


@dataclass(frozen=True)
class _OsUser:
    """Who runs the server binaries: ourselves, or ``postgres`` through runuser when root."""

    name: str | None
    uid: int
    gid: int

    @classmethod
    def detect(cls) -> _OsUser:
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


# --- the cluster ----------------------------------------------------------------------


class Cluster:
    """A primary on ``port`` and replicas ``replica1..N`` on ``port + 1..N`` under ``dir``.

    Arguments left as None come from ``<dir>/cluster.json`` when it exists, else from the
    defaults, so ``Cluster(dir)`` alone addresses an existing cluster.
    """

    def __init__(
        self,
        dir: str | os.PathLike[str] = DEFAULT_DIR,
        *,
        port: int | None = None,
        replicas: int | None = None,
        dbname: str | None = None,
        bindir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.dir = Path(dir).expanduser().absolute()
        saved = self._load_config()
        if port is not None and saved and saved["port"] != port:
            raise ClusterError(
                f"the cluster in {self.dir} uses port {saved['port']}, not {port}: "
                "run `down` first or use its port"
            )
        self.port: int = port if port is not None else int(saved.get("port", DEFAULT_PORT))
        self.replica_count: int = self._replica_count(replicas, saved)
        self.dbname: str = dbname or str(saved.get("dbname", DEFAULT_DBNAME))
        self._bindir = Path(bindir) if bindir else None
        self._saved_bindir = saved.get("bindir")
        self._user: _OsUser | None = None

    def __repr__(self) -> str:
        return f"<Cluster {self.dir} port={self.port} replicas={self.replica_count}>"

    @staticmethod
    def _replica_count(requested: int | None, saved: dict[str, Any]) -> int:
        if requested is not None and requested < 0:
            raise ClusterError("the number of replicas must be 0 or more")
        if not saved:
            return 1 if requested is None else requested
        # Never shrink an existing cluster: asking for fewer replicas keeps the others.
        return max(requested or 0, int(saved["replicas"]))

    # -- configuration --

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    def exists(self) -> bool:
        return self.config_path.is_file()

    def _load_config(self) -> dict[str, Any]:
        try:
            data = json.loads((self.dir / CONFIG_FILE).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ClusterError(f"unreadable {self.dir / CONFIG_FILE}: {exc}") from None
        return data if isinstance(data, dict) else {}

    def _save_config(self) -> None:
        data = {
            "port": self.port,
            "replicas": self.replica_count,
            "dbname": self.dbname,
            "bindir": str(self.bindir),
        }
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.config_path)

    def _require_exists(self) -> None:
        if not self.exists():
            raise ClusterError(f"no cluster in {self.dir} (run `up` first)")

    @property
    def bindir(self) -> Path:
        """Server binaries: the explicit/env choice, else the cluster's own, else a search."""
        if self._bindir is None:
            saved = self._saved_bindir
            if not os.environ.get("PGREPLICA_PG_BINDIR") and saved and _has_server(saved):
                self._bindir = Path(saved)
            else:
                self._bindir = find_bindir()
        return self._bindir

    @property
    def user(self) -> _OsUser:
        if self._user is None:
            self._user = _OsUser.detect()
        return self._user

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

    def _run(self, cmd: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a server binary (as the postgres OS user when we are root)."""
        full = self.user.wrap([str(self.bindir / cmd[0]), *cmd[1:]])
        logger.debug("running %s", shlex.join(full))
        # PG* variables (PGPORT, PGDATA, PGOPTIONS, ...) would quietly retarget the tools.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
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
        """An autocommit psycopg connection to node ``name`` as the superuser."""
        node = self.node(name)
        try:
            return psycopg.connect(
                node.conninfo(dbname or "postgres"), autocommit=True, connect_timeout=3
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

    # -- process state --

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

    # -- building --

    def _prepare_dirs(self) -> None:
        """Create the cluster directories, owned by and reachable for the server's user."""
        for path in (self.dir, self.dir / "logs", self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            self.user.own(path)
        if self.user.name:
            self._make_traversable(self.dir)

    def _make_traversable(self, path: Path) -> None:
        """The postgres user must be able to walk down to the data dirs (e.g. under /root)."""
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                logger.warning(
                    "making %s traversable (o+x) for the %s user", parent, self.user.name
                )
                os.chmod(parent, mode | stat.S_IXOTH)

    def _install_conf(self, node: Node, role: Role) -> None:
        """Copy pgconf/ into the data dir and point postgresql.conf's include at ``role``."""
        confdir = node.datadir / "pgreplica"
        confdir.mkdir(exist_ok=True)
        self.user.own(confdir)
        for name in ("primary.conf", "replica.conf"):
            shutil.copyfile(PGCONF_DIR / name, confdir / name)
            self.user.own(confdir / name)
        shutil.copyfile(PGCONF_DIR / "pg_hba.conf", node.datadir / "pg_hba.conf")
        self.user.own(node.datadir / "pg_hba.conf")
        self._set_role_include(node, role)

    def _set_role_include(self, node: Node, role: Role) -> None:
        conf = node.datadir / "postgresql.conf"
        text = conf.read_text()
        line = f"include 'pgreplica/{role}.conf'  # managed by django_pgreplica.testing.cluster"
        if _INCLUDE_RE.search(text):
            text = _INCLUDE_RE.sub(line, text)
        else:
            text = text.rstrip("\n") + "\n\n" + line + "\n"
        conf.write_text(text)

    def _initdb(self) -> None:
        node = self.primary
        logger.info("initdb %s", node.datadir)
        self._run(
            [
                "initdb",
                "-D",
                str(node.datadir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-locale",
                "--encoding=UTF8",
                "--no-sync",  # a throwaway dev cluster; skips seconds of fsync
            ]
        )
        self._install_conf(node, "primary")

    def _drop_slot(self, slot: str, timeout: float = 10) -> None:
        """Drop ``slot`` on the primary, waiting for a departing walsender to let go of it."""
        deadline = time.monotonic() + timeout
        sql = (
            "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots "
            "WHERE slot_name = %s AND NOT active"
        )
        while True:
            self._query(self.primary, sql, [slot])
            if not self._query(
                self.primary, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [slot]
            ):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"replication slot {slot!r} stays in use on the primary")
            time.sleep(0.05)

    def _clone(self, node: Node) -> None:
        """pg_basebackup ``node`` from the primary with its own slot and recovery settings."""
        assert node.slot is not None
        logger.info("cloning %s from the primary (slot %s)", node.name, node.slot)
        self._drop_slot(node.slot)  # a leftover from a replica that was removed or promoted
        conninfo = f"{self.primary.conninfo()} application_name={node.name}"
        self._run(
            [
                "pg_basebackup",
                "-D",
                str(node.datadir),
                "-d",
                conninfo,
                "-R",
                "-X",
                "stream",
                "-C",
                "-S",
                node.slot,
                "--checkpoint=fast",  # spread (the default) waits on checkpoint_timeout
                "--no-sync",
            ]
        )
        self._install_conf(node, "replica")

    def _ensure_database(self) -> None:
        exists = self._query(
            self.primary, "SELECT 1 FROM pg_database WHERE datname = %s", [self.dbname]
        )
        if not exists:
            logger.info("creating database %s", self.dbname)
            with self.connect("primary") as conn:
                conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(self.dbname)))

    # -- lifecycle --

    def up(self, *, timeout: float = 30) -> None:
        """Create, start or repair the cluster until every replica streams.

        Idempotent: existing data dirs are reused and started, missing replicas are
        cloned, promoted replicas are re-cloned and paused replay is resumed.
        """
        bindir = self.bindir  # fail on missing binaries before touching the disk
        with self._locked():
            if not self.exists() and any(p.name != ".lock" for p in self.dir.iterdir()):
                raise ClusterError(f"{self.dir} is not empty and holds no {CONFIG_FILE}: refusing")
            logger.debug("server binaries in %s", bindir)
            self._check_ports()
            self._prepare_dirs()
            self._save_config()  # first, so `down` can clean up a half-built cluster
            if not (self.primary.datadir / "PG_VERSION").exists():
                shutil.rmtree(self.primary.datadir, ignore_errors=True)
                self._initdb()
            self._install_conf(self.primary, "primary")
            self._start(self.primary)
            self._ensure_database()
            for node in self.replicas:
                self._up_replica(node)
            self.wait_streaming(timeout=timeout)

    def _check_ports(self) -> None:
        """Fail before building anything when a port of a stopped node is taken."""
        for node in self.nodes:
            if not self.is_running(node.name):
                self._ensure_port_free(node)

    @staticmethod
    def _ensure_port_free(node: Node) -> None:
        if port_in_use(node.port):
            raise ClusterError(
                f"port {node.port} ({node.name}) is already in use by another process: "
                "stop it or pick another --port"
            )

    def _up_replica(self, node: Node) -> None:
        datadir = node.datadir
        if (datadir / "PG_VERSION").exists() and not (datadir / "standby.signal").exists():
            logger.info("%s was promoted: re-cloning it", node.name)
            self._stop(node)
            shutil.rmtree(datadir)
        if not (datadir / "PG_VERSION").exists():
            shutil.rmtree(datadir, ignore_errors=True)  # a half-finished clone
            self._clone(node)
        else:
            self._install_conf(node, "replica")
        self._start(node)
        self._query(node, "SELECT pg_wal_replay_resume()")

    def down(self) -> None:
        """Stop every node and delete the cluster directory."""
        if not self.exists():
            if self.dir.exists() and any(p.name != ".lock" for p in self.dir.iterdir()):
                raise ClusterError(f"{self.dir} holds no {CONFIG_FILE}: not deleting it")
            logger.info("no cluster in %s: nothing to stop", self.dir)
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        with self._locked():
            # Another process may have added replicas since this object was made.
            self.replica_count = max(self.replica_count, int(self._load_config()["replicas"]))
            for node in reversed(self.nodes):
                self._stop(node)
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            shutil.rmtree(self.dir)

    def _start(self, node: Node) -> None:
        if self.is_running(node.name):
            return
        self._ensure_port_free(node)
        self._clear_stale_lockfiles(node)
        logger.info("starting %s on port %d", node.name, node.port)
        options = " ".join(
            [
                f"-p {node.port}",
                f"-c listen_addresses={HOST}",
                f"-c unix_socket_directories={shlex.quote(str(self.socket_dir))}",
                f"-c cluster_name={node.name}",
            ]
        )
        node.logfile.touch()
        self.user.own(node.logfile)
        try:
            self._run(["pg_ctl", "start", "-w", "-t", "60", *self._pgdata(node), "-o", options])
        except ClusterError:
            raise ClusterError(
                f"{node.name} failed to start on port {node.port}; last lines of "
                f"{node.logfile}:\n{_log_tail(node.logfile)}"
            ) from None

    @staticmethod
    def _pgdata(node: Node) -> list[str]:
        return ["-D", str(node.datadir), "-l", str(node.logfile)]

    def _stop(self, node: Node) -> None:
        if not self.is_running(node.name):
            return
        logger.info("stopping %s", node.name)
        try:
            self._run(["pg_ctl", "stop", "-w", "-t", "30", "-m", "fast", "-D", str(node.datadir)])
        except ClusterError:
            logger.warning("%s did not stop cleanly: killing it", node.name)
            self.kill(node.name)

    # -- fault helpers --

    def start(self, name: str, *, timeout: float = 30) -> None:
        """Start node ``name``; a replica is back only once it streams from the primary."""
        node = self.node(name)
        self._start(node)
        if node.role == "replica" and self.is_running("primary"):
            in_recovery = self._query(node, "SELECT pg_is_in_recovery()")[0]
            if in_recovery:
                self.wait_streaming(timeout=timeout, names=[name])

    def stop(self, name: str) -> None:
        """Fast shutdown of node ``name``; returns once its postmaster has exited."""
        self._stop(self.node(name))

    def kill(self, name: str) -> float | None:
        """SIGKILL the postmaster of ``name``; returns once it and its children are gone.

        The result is when the signal was sent (``time.monotonic()``), None if not running.
        """
        pid = self.pid(name)
        if pid is None:
            return None
        children = _children(pid)
        logger.info("killing %s (pid %d)", name, pid)
        os.kill(pid, signal.SIGKILL)
        sent_at = time.monotonic()
        _wait_gone([pid], timeout=10)
        # Orphaned backends exit when they notice the postmaster died; stragglers would keep
        # the shared memory busy and block the next start.
        for straggler in _wait_gone(children, timeout=5):
            with contextlib.suppress(ProcessLookupError):
                os.kill(straggler, signal.SIGKILL)
        _wait_gone(children, timeout=5)
        self._clear_stale_lockfiles(self.node(name))
        return sent_at

    def pause_replay(self, name: str) -> None:
        """Stop applying WAL on replica ``name``; it keeps receiving, so lag builds up."""
        self._query(self._replica(name), "SELECT pg_wal_replay_pause()")

    def resume_replay(self, name: str) -> None:
        self._query(self._replica(name), "SELECT pg_wal_replay_resume()")

    def promote(self, name: str) -> None:
        """Promote replica ``name`` to a primary of its own (split brain: the old one stays up)."""
        node = self._replica(name)
        logger.info("promoting %s", name)
        self._run(["pg_ctl", "promote", "-w", "-t", "60", "-D", str(node.datadir)])
        # A promoted node takes writes: drop the replica-only default_transaction_read_only.
        self._set_role_include(node, "primary")
        self._query(node, "SELECT pg_reload_conf()")

    def rebuild(self, name: str, *, timeout: float = 30) -> None:
        """Throw away replica ``name``'s data and re-clone it from the primary."""
        node = self._replica(name)
        if not self.is_running("primary"):
            raise ClusterError("the primary is not running: start it before rebuilding a replica")
        with self._locked():
            self._stop(node)
            shutil.rmtree(node.datadir, ignore_errors=True)
            self._clone(node)
            self._start(node)
        self.wait_streaming(timeout=timeout, names=[name])

    def _replica(self, name: str) -> Node:
        node = self.node(name)
        if node.role != "replica":
            raise ClusterError(f"{name} is not a replica")
        return node

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
                tails = "\n".join(f"  {log}:\n{_log_tail(log, 4)}" for log in logs)
                raise ClusterError(
                    f"{', '.join(missing)} not streaming after {timeout:.0f}s "
                    f"(try `rebuild NAME`):\n{tails}"
                )
            time.sleep(0.05)

    def wait_replayed(self, timeout: float = 10, names: Sequence[str] | None = None) -> None:
        """Wait until replicas have replayed the primary's current WAL insert position."""
        row = self._query(self.primary, WAL_POSITION_SQL)
        target = wal_target(row)
        deadline = time.monotonic() + timeout
        for name in names if names is not None else self._recovering_replicas():
            while True:
                replayed = self._query(self.node(name), "SELECT pg_last_wal_replay_lsn()::text")[0]
                if replayed is not None and parse_lsn(replayed) >= target:
                    break
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"{name} has not replayed up to {row[0]} after {timeout:.0f}s"
                    )
                time.sleep(0.02)

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
        """The DATABASE_* variables testproject/settings.py reads."""
        return {
            "DATABASE_HOST": HOST,
            "DATABASE_PORT": str(self.port),
            "DATABASE_NAME": self.dbname,
            "DATABASE_USER": SUPERUSER,
            "DATABASE_REPLICAS": ",".join(f"{HOST}:{node.port}" for node in self.replicas),
        }


# --- command line ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir", default=DEFAULT_DIR, help=f"cluster directory (default: {DEFAULT_DIR})"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    parser = argparse.ArgumentParser(
        prog="python -m django_pgreplica.testing.cluster",
        description="A local PostgreSQL primary with streaming replicas, for dev and tests.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", parents=[common], help="create or start the cluster")
    up.add_argument("--replicas", type=int, default=None, help="number of replicas (default: 1)")
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"primary port (default: {DEFAULT_PORT}); replica N uses port+N",
    )
    up.add_argument(
        "--dbname", default=None, help=f"database to create (default: {DEFAULT_DBNAME})"
    )
    sub.add_parser("down", parents=[common], help="stop the cluster and delete its directory")
    status = sub.add_parser(
        "status", parents=[common], help="show the nodes; exit 1 unless all are healthy"
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("env", parents=[common], help="print `export DATABASE_...=` lines for a shell")
    for name, text in [
        ("pause-replay", "stop applying WAL on a replica"),
        ("resume-replay", "resume applying WAL on a replica"),
        ("stop", "fast shutdown of a node"),
        ("start", "start a node (a replica: until it streams)"),
        ("kill", "SIGKILL a node's postmaster"),
        ("promote", "promote a replica to primary"),
        ("rebuild", "re-clone a replica from the primary"),
    ]:
        cmd = sub.add_parser(name, parents=[common], help=text)
        cmd.add_argument("name", help="node name: primary, replica1, replica2, ...")
    return parser


def _print_status(statuses: list[NodeStatus], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{**asdict(s), "healthy": s.healthy} for s in statuses], indent=2))
        return
    print(f"{'NODE':<10} {'PORT':>6} {'PID':>8}  STATE")
    for s in statuses:
        if not s.running:
            state = "stopped"
        elif s.role == "primary" or not s.in_recovery:
            state = "primary" if s.in_recovery is False else "running"
            state += " (promoted)" if s.role == "replica" and s.in_recovery is False else ""
        else:
            state = "streaming" if s.streaming else "not streaming"
            state += ", replay paused" if s.replay_paused else ""
        print(f"{s.name:<10} {s.port:>6} {s.pid or '-':>8}  {state}")


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "up":
        cluster = Cluster(args.dir, port=args.port, replicas=args.replicas, dbname=args.dbname)
        started = time.monotonic()
        cluster.up()
        logger.info("cluster up in %.1fs", time.monotonic() - started)
        shell = f"python -m django_pgreplica.cluster env --dir {shlex.quote(str(cluster.dir))}"
        logger.info('for a shell: eval "$(%s)"', shell)
        _print_status(cluster.status(), as_json=False)
        return 0
    cluster = Cluster(args.dir)
    if args.command == "down":
        cluster.down()
        return 0
    cluster._require_exists()
    if args.command == "status":
        statuses = cluster.status()
        _print_status(statuses, args.json)
        return 0 if all(s.healthy for s in statuses) else 1
    if args.command == "env":
        for key, value in cluster.env().items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    actions = {
        "pause-replay": cluster.pause_replay,
        "resume-replay": cluster.resume_replay,
        "stop": cluster.stop,
        "start": cluster.start,
        "kill": cluster.kill,
        "promote": cluster.promote,
        "rebuild": cluster.rebuild,
    }
    actions[args.command](args.name)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: one-line errors on stderr and a non-zero exit, never a traceback."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="pgreplica: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _run_command(args)
    except ClusterError as exc:
        print(f"pgreplica: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
