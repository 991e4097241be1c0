"""A local Patroni cluster: etcd plus N Patroni members, for failover development and tests.

``python -m django_pgreplica.testing.cluster patroni up`` starts one etcd (Debian's
``etcd-server``; Patroni talks to its v3 API, which etcd 3.4 serves by default) and
``--members`` Patroni daemons (default 3). Patroni bootstraps the first leader with
``initdb`` and clones the others with ``pg_basebackup``; every member runs the settings of
``django_pgreplica/pgconf/`` (see :func:`~.patroni_setup.pgconf_parameters`). PostgreSQL
refuses to run as root, so as root etcd, Patroni and PostgreSQL all run as the
``postgres`` OS user.

Ports, from ``--port`` BASE (default 65100): member ``pgN``'s PostgreSQL on BASE+N-1, its
REST API on BASE+10+N-1, etcd's client port BASE+20 and peer port BASE+21.

Layout of a cluster directory::

    patroni.json        port, members, dbname, synchronous mode, bindir
    etcd/               etcd's data; etcd.pid
    pgN/patroni.yml     member pgN's Patroni configuration; pgN/patroni.pid
    pgN/data/           its PostgreSQL data directory
    logs/               etcd.log, pgN.log (Patroni), pgN.postgres.log (PostgreSQL)

Faults: :meth:`~PatroniCluster.switchover` (planned), :meth:`~PatroniCluster.kill_leader`
(SIGKILL of the leader's postmaster: Patroni fails over at once, ``primary_start_timeout``
is 0) and :meth:`~PatroniCluster.hang` / :meth:`~PatroniCluster.resume` (SIGSTOP/SIGCONT).
``hang`` freezes a whole member as a stalled host would: its Patroni first (so it cannot
react), then its postmaster and every backend. TCP connections to it still open (the kernel
accepts them) but nothing answers; its leader lock expires after ``ttl`` (20 s) and a
replica takes over. ``resume`` thaws them in the opposite order and Patroni, finding the
lock gone, turns its PostgreSQL into a replica (pg_rewind, or a re-clone). ``only=``
freezes just one of the two. ``"postgres"``: Patroni's own queries hang, so it stops
renewing the lock and the member fails over as above. ``"patroni"``: PostgreSQL keeps
serving while the lock expires, so a replica is promoted while the old primary still
runs (split brain: there is no watchdog). In synchronous mode the old primary's commits
then wait for a standby that has left; with ``synchronous="off"`` they succeed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql as pgsql

from .directory import ClusterDirectory
from .errors import ClusterError
from .nodes import HOST, SUPERUSER
from .patroni_setup import (
    DEFAULT_PATRONI_DIR,
    DEFAULT_PATRONI_PORT,
    PatroniLayout,
    SyncMode,
    find_etcd,
    find_patroni,
    member_config,
)
from .patroni_status import MemberStatus, PatroniStatus, rest_call
from .processes import children, pid_alive, port_in_use, wait_gone

logger = logging.getLogger(__name__)

__all__ = ["PATRONI_CONFIG_FILE", "HangTarget", "KilledLeader", "PatroniCluster"]

PATRONI_CONFIG_FILE = "patroni.json"
DEFAULT_MEMBERS = 3
DEFAULT_DBNAME = "pgreplica"

HangTarget = Literal["member", "postgres", "patroni"]

# Popen objects of the daemons this process started: kept so that they are reaped (no
# zombies, no ResourceWarning) when they exit while we still run.
_spawned: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class KilledLeader:
    """What :meth:`PatroniCluster.kill_leader` did: whom, and when (``time.monotonic()``)."""

    name: str
    sent_at: float


class PatroniCluster(ClusterDirectory):
    """etcd and members ``pg1..pgN`` under ``dir``; ports from ``port`` (see the module doc).

    Arguments left as None come from ``<dir>/patroni.json`` when it exists, else from the
    defaults, so ``PatroniCluster(dir)`` alone addresses an existing cluster.
    """

    config_file = PATRONI_CONFIG_FILE
    kind = "Patroni cluster"
    up_command = "patroni up"

    def __init__(
        self,
        dir: str | os.PathLike[str] = DEFAULT_PATRONI_DIR,
        *,
        port: int | None = None,
        members: int | None = None,
        dbname: str | None = None,
        synchronous: SyncMode | None = None,
        bindir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.dir = Path(dir).expanduser().absolute()
        saved = self._load_config()
        for key, wanted in (("port", port), ("members", members), ("synchronous", synchronous)):
            if wanted is not None and saved and saved[key] != wanted:
                raise ClusterError(
                    f"the Patroni cluster in {self.dir} has {key} {saved[key]}, not {wanted}: "
                    "run `patroni down` first"
                )
        self.layout = PatroniLayout(
            port if port is not None else int(saved.get("port", DEFAULT_PATRONI_PORT)),
            members if members is not None else int(saved.get("members", DEFAULT_MEMBERS)),
        )
        self.dbname: str = dbname or str(saved.get("dbname", DEFAULT_DBNAME))
        self.synchronous: SyncMode = synchronous or saved.get("synchronous", "on")
        self._init_tools(bindir, saved)

    def __repr__(self) -> str:
        return f"<PatroniCluster {self.dir} port={self.port} members={self.layout.members}>"

    @property
    def port(self) -> int:
        return self.layout.base

    @property
    def names(self) -> list[str]:
        return self.layout.names

    # -- configuration and directories --

    def _save_config(self) -> None:
        data = {
            "port": self.port,
            "members": self.layout.members,
            "dbname": self.dbname,
            "synchronous": self.synchronous,
            "bindir": str(self.bindir),
        }
        self._write_config(data)

    @property
    def socket_dir(self) -> Path:
        """``<dir>/run``, unless that is too long for a unix socket path (~107 bytes)."""
        local = self.dir / "run"
        if len(str(local)) + len("/.s.PGSQL.65535.lock") < 100:
            return local
        digest = hashlib.sha1(str(self.dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"pgreplica-patroni-{digest}"

    def logfile(self, name: str) -> Path:
        """The log of member ``name``'s Patroni, or of ``"etcd"``.

        PostgreSQL's own log is ``NAME.postgres.log`` beside it.
        """
        return self.dir / "logs" / f"{name}.log"

    def _member_dir(self, name: str) -> Path:
        self.layout.index(name)  # a clear error for an unknown name
        return self.dir / name

    def _prepare_dirs(self) -> None:
        dirs = [self.dir, self.dir / "logs", self.socket_dir, *map(self._member_dir, self.names)]
        for path in dirs:
            path.mkdir(parents=True, exist_ok=True)
            self.user.own(path)
        if self.user.name:  # postgres must be able to walk down to its directories
            for parent in self.dir.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    logger.warning("making %s traversable (o+x) for %s", parent, self.user.name)
                    os.chmod(parent, mode | 0o001)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize up/down between processes (pytest-xdist workers, shells)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- processes --

    def _pid_from(self, pidfile: Path, marker: str) -> int | None:
        """The pid in ``pidfile`` if that process is alive and its command line has ``marker``.

        The marker (a path of this cluster) guards against a recycled pid.
        """
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            return None
        return pid if marker in cmdline and pid_alive(pid) else None

    def etcd_pid(self) -> int | None:
        return self._pid_from(self.dir / "etcd.pid", str(self.dir / "etcd"))

    def patroni_pid(self, name: str) -> int | None:
        member_dir = self._member_dir(name)
        return self._pid_from(member_dir / "patroni.pid", str(member_dir / "patroni.yml"))

    def postgres_pid(self, name: str) -> int | None:
        """The postmaster of member ``name`` (Patroni starts it detached, in its own session)."""
        datadir = self._member_dir(name) / "data"
        return self._pid_from(datadir / "postmaster.pid", str(datadir))

    def _spawn(self, cmd: Sequence[str], log: Path, pidfile: Path) -> None:
        """Start a daemon as the server's OS user, in a session of its own."""
        log.touch()
        self.user.own(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PATRONI_"))}
        if self.user.name:
            home = pwd.getpwuid(self.user.uid).pw_dir
            env.update(HOME=home, USER=self.user.name, LOGNAME=self.user.name)
        root = self.user.name is not None
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=pidfile.parent,
                env=env,
                start_new_session=True,  # a Ctrl-C in the shell that ran `up` spares it
                user=self.user.uid if root else None,
                group=self.user.gid if root else None,
                extra_groups=[] if root else None,
            )
        _spawned[:] = [p for p in _spawned if p.poll() is None] + [proc]
        pidfile.write_text(f"{proc.pid}\n")

    def _check_can_run(self, executable: Path) -> None:
        """Fail early, in one line, when the server's OS user cannot run ``executable``."""
        if not self.user.name:
            return
        test = ["test", "-r", str(executable), "-a", "-x", str(executable)]
        result = subprocess.run(
            test, user=self.user.uid, group=self.user.gid, extra_groups=[], check=False
        )
        if result.returncode != 0:
            raise ClusterError(
                f"the {self.user.name} OS user cannot run {executable}: make it and its "
                "directories readable (chmod -R o+rX, parents o+x; ensure_patroni does this)"
            )

    @staticmethod
    def _signal(pids: Sequence[int], sig: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    @staticmethod
    def _is_stopped(pid: int | None) -> bool:
        """Whether ``pid`` is stopped by a signal (state T in /proc)."""
        if pid is None:
            return False
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
        except (OSError, IndexError):
            return False

    def _postgres_tree(self, name: str) -> list[int]:
        """The postmaster of ``name`` and its children (backends, walsenders, ...)."""
        pid = self.postgres_pid(name)
        return [pid, *children(pid)] if pid else []

    # -- lifecycle --

    def up(self, *, timeout: float = 90) -> None:
        """Create, start or repair the cluster until it is healthy and the leader takes writes.

        Idempotent: a running process is left alone, a stopped one is started, a hung one
        resumed; Patroni itself re-clones or rewinds a member that cannot rejoin.
        """
        patroni, etcd, bindir = find_patroni(), find_etcd(), self.bindir
        self._check_can_run(patroni)
        deadline = time.monotonic() + timeout
        with self._locked():
            self._prepare_dirs()
            self._save_config()
            for name in self.names:
                self.resume(name)
            self._check_ports()
            self._start_etcd(etcd)
            for name in self.names:
                self._start_member(name, patroni, bindir)
        leader = self.wait_for_leader(timeout=max(1.0, deadline - time.monotonic()))
        self._ensure_database(leader)
        self.wait_until_healthy(timeout=max(1.0, deadline - time.monotonic()))

    def _check_ports(self) -> None:
        """Fail before starting anything when a port of a stopped process is taken."""
        taken: list[int] = []
        if self.etcd_pid() is None:
            taken += [self.layout.etcd_client_port, self.layout.etcd_peer_port]
        for name in self.names:
            if self.postgres_pid(name) is None:
                taken.append(self.layout.pg_port(name))
            if self.patroni_pid(name) is None:
                taken.append(self.layout.api_port(name))
        busy = [port for port in taken if port_in_use(port)]
        if busy:
            raise ClusterError(
                f"port {', '.join(map(str, busy))} already in use by another process: "
                "stop it or pick another --port"
            )

    def _start_etcd(self, etcd: Path) -> None:
        if self.etcd_pid() is None:
            client = f"http://{HOST}:{self.layout.etcd_client_port}"
            peer = f"http://{HOST}:{self.layout.etcd_peer_port}"
            logger.info("starting etcd on port %d", self.layout.etcd_client_port)
            cmd = [
                str(etcd),
                "--name=pgreplica",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=pgreplica={peer}",
                f"--initial-cluster-token=pgreplica-{self.port}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-outputs=stderr",
            ]
            self._spawn(cmd, self.logfile("etcd"), self.dir / "etcd.pid")
        deadline = time.monotonic() + 20
        while not self._etcd_healthy():
            if self.etcd_pid() is None or time.monotonic() > deadline:
                raise ClusterError(f"etcd did not start: see {self.logfile('etcd')}")
            time.sleep(0.1)

    def _etcd_healthy(self) -> bool:
        url = f"http://{HOST}:{self.layout.etcd_client_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _start_member(self, name: str, patroni: Path, bindir: Path) -> None:
        member_dir = self._member_dir(name)
        config = member_config(
            self.layout,
            name,
            cluster_dir=self.dir,
            bindir=bindir,
            socket_dir=self.socket_dir,
            sync=self.synchronous,
        )
        config_file = member_dir / "patroni.yml"
        config_file.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        self.user.own(config_file)
        if self.patroni_pid(name) is not None:
            return
        logger.info(
            "starting Patroni member %s (PostgreSQL port %d)", name, self.layout.pg_port(name)
        )
        self._spawn(
            [str(patroni), str(config_file)], self.logfile(name), member_dir / "patroni.pid"
        )

    def _ensure_database(self, leader: str) -> None:
        with self.connect(leader) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.dbname])
            if found.fetchone() is None:
                logger.info("creating database %s", self.dbname)
                conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(self.dbname)))

    def down(self) -> None:
        """Stop every process and delete the cluster directory.

        Nothing is kept, so there is no point in a graceful switchover dance: Patroni is
        killed first (it would fail over as its peers stop), then each PostgreSQL gets an
        immediate shutdown, which still releases its shared memory, then etcd stops.
        """
        if not self.exists():
            if self.dir.exists() and any(p.name != ".lock" for p in self.dir.iterdir()):
                raise ClusterError(f"{self.dir} holds no {PATRONI_CONFIG_FILE}: not deleting it")
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        with self._locked():
            patronis = [pid for pid in map(self.patroni_pid, self.names) if pid]
            self._signal(patronis, signal.SIGKILL)
            wait_gone(patronis, timeout=10)
            for name in self.names:
                self._stop_postgres(name)
            etcd = self.etcd_pid()
            if etcd:
                self._signal([etcd], signal.SIGTERM)
                self._signal(wait_gone([etcd], timeout=10), signal.SIGKILL)
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            shutil.rmtree(self.dir)
        _spawned[:] = [p for p in _spawned if p.poll() is None]

    def _stop_postgres(self, name: str) -> None:
        tree = self._postgres_tree(name)
        if not tree:
            return
        self._signal(tree, signal.SIGCONT)  # a hung member must wake to shut down
        self._signal(tree[:1], signal.SIGQUIT)
        self._signal(wait_gone(tree, timeout=10), signal.SIGKILL)
        wait_gone(tree, timeout=5)

    # -- talking to members --

    def conninfo(self, name: str, dbname: str | None = None) -> str:
        port = self.layout.pg_port(name)
        return f"host={HOST} port={port} user={SUPERUSER} dbname={dbname or 'postgres'}"

    def connect(self, name: str, dbname: str | None = None) -> psycopg.Connection[Any]:
        """An autocommit psycopg connection to member ``name`` as the superuser."""
        try:
            return psycopg.connect(self.conninfo(name, dbname), autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            port = self.layout.pg_port(name)
            raise ClusterError(f"cannot connect to {name} on port {port}: {exc}") from None

    def execute(
        self,
        name: str,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        dbname: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement on member ``name`` (in ``dbname``, default the cluster's)."""
        with self.connect(name, dbname or self.dbname) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description is not None else []

    def accepts_writes(self, name: str, timeout: float = 3) -> bool:
        """Whether a write committed on ``name`` is acknowledged within ``timeout`` seconds.

        The probe writes a transactional WAL record (an xid alone would commit without
        one, and skip the wait), so its commit waits for a synchronous standby as any
        application write would. A wait still running at ``timeout`` is cancelled, and
        PostgreSQL's "canceling wait for synchronous replication" warning says no.
        """
        try:
            conn = psycopg.connect(
                self.conninfo(name), autocommit=True, connect_timeout=max(1, round(timeout))
            )
        except psycopg.Error:
            return False
        warnings: list[str] = []
        conn.add_notice_handler(lambda diag: warnings.append(diag.message_primary or ""))
        timer = threading.Timer(timeout, conn.cancel_safe)
        timer.start()
        try:
            with conn:
                # An error on a standby ("cannot execute ... during recovery").
                conn.execute("SELECT pg_logical_emit_message(true, 'pgreplica', 'probe')")
            return not warnings
        except psycopg.Error:
            return False
        finally:
            timer.cancel()

    # -- status and waiting --

    def _cluster_view(self, name: str) -> dict[str, Any] | None:
        """Member ``name``'s ``GET /cluster``; None when it does not answer."""
        if self._is_stopped(self.patroni_pid(name)):
            return None  # a frozen Patroni would only time out
        try:
            code, body = rest_call(self.layout.api_port(name), "/cluster", timeout=2)
        except ClusterError:
            return None
        return body if code == 200 and isinstance(body, dict) else None

    def status(self) -> PatroniStatus:
        """Each member's role, state, timeline and lag, as Patroni's DCS view has them."""
        with ThreadPoolExecutor(max_workers=len(self.names)) as pool:
            views = dict(zip(self.names, pool.map(self._cluster_view, self.names), strict=True))
        answered = {name: view for name, view in views.items() if view}
        leaders = [
            m.get("name")
            for view in answered.values()
            for m in view.get("members", [])
            if m.get("role") == "leader"
        ]
        # Each answer is that member's cached read of etcd: prefer the leader's own.
        fallback: dict[str, Any] = next(iter(answered.values()), {"members": []})
        view = next((answered[n] for n in leaders if n in answered), fallback)
        known = {m["name"]: m for m in view.get("members", []) if isinstance(m, dict)}
        leader = next((n for n, m in known.items() if m.get("role") == "leader"), None)
        members = [
            self._member_status(name, known.get(name), views[name] is not None)
            for name in self.names
        ]
        return PatroniStatus(
            etcd_running=self.etcd_pid() is not None and self._etcd_healthy(),
            leader=leader,
            members=members,
            sync_required=self.synchronous != "off" and len(self.names) > 1,
        )

    def _member_status(
        self, name: str, data: dict[str, Any] | None, reachable: bool
    ) -> MemberStatus:
        patroni_pid, postgres_pid = self.patroni_pid(name), self.postgres_pid(name)
        data = data or {}
        lag = data.get("replay_lag", data.get("lag"))
        if data.get("role") == "leader":
            lag = 0
        return MemberStatus(
            name=name,
            pg_port=self.layout.pg_port(name),
            api_port=self.layout.api_port(name),
            patroni_pid=patroni_pid,
            postgres_pid=postgres_pid,
            reachable=reachable,
            hung=self._is_stopped(patroni_pid) or self._is_stopped(postgres_pid),
            role=data.get("role"),
            state=data.get("state"),
            timeline=data.get("timeline") if isinstance(data.get("timeline"), int) else None,
            lag=lag if isinstance(lag, int) else None,
        )

    def leader(self) -> str:
        """The member etcd names as leader; ClusterError when there is none right now."""
        found = self.status().leader
        if found is None:
            raise ClusterError("the Patroni cluster has no leader right now")
        return found

    def wait_for_leader(self, timeout: float = 60, exclude: Sequence[str] = ()) -> str:
        """Wait until a leader (not one of ``exclude``) takes writes; return its name."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            leader = status.leader
            if leader and leader not in exclude and self.accepts_writes(leader, timeout=2):
                return leader
            if time.monotonic() > deadline:
                other = " other than " + ", ".join(exclude) if exclude else ""
                if leader in exclude:
                    problems = f"the leader is still {leader}"
                else:
                    problems = "; ".join(status.problems) or f"leader {leader} refuses writes"
                raise ClusterError(
                    f"no leader{other} accepting writes after {timeout:.0f}s ({problems}); "
                    f"logs in {self.dir / 'logs'}"
                )
            time.sleep(0.2)

    def wait_until_healthy(self, timeout: float = 60) -> PatroniStatus:
        """Wait until one leader runs and every other member streams on its timeline."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.healthy:
                return status
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"Patroni cluster not healthy after {timeout:.0f}s: "
                    f"{'; '.join(status.problems)}; logs in {self.dir / 'logs'}"
                )
            time.sleep(0.2)

    def wait_replayed(self, timeout: float = 10) -> None:
        """Wait until every streaming member has replayed the leader's current position."""
        leader = self.leader()
        target = self.execute(leader, "SELECT pg_current_wal_lsn()::text", dbname="postgres")[0][0]
        deadline = time.monotonic() + timeout
        pending = [m.name for m in self.status().replicas if m.state == "streaming"]
        while pending:
            pending = [
                name
                for name in pending
                if not self.execute(
                    name,
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                    [target],
                    dbname="postgres",
                )[0][0]
            ]
            if pending and time.monotonic() > deadline:
                raise ClusterError(
                    f"{', '.join(pending)} not replayed to {target} in {timeout:.0f}s"
                )
            time.sleep(0.02)

    def env(self) -> dict[str, str]:
        """DATABASE_* variables: the leader now, and every member for libpq multi-host use.

        DATABASE_HOST/PORT name the current leader and DATABASE_REPLICAS the others, like
        the plain cluster's ``env``; DATABASE_HOSTS/PORTS list every member, for a libpq
        ``host=... port=...`` with ``target_session_attrs=read-write`` that follows failover.
        """
        status = self.status()
        if status.leader is None:
            raise ClusterError("the Patroni cluster has no leader right now (see `patroni status`)")
        return {
            "DATABASE_HOST": HOST,
            "DATABASE_PORT": str(self.layout.pg_port(status.leader)),
            "DATABASE_NAME": self.dbname,
            "DATABASE_USER": SUPERUSER,
            "DATABASE_REPLICAS": ",".join(f"{HOST}:{m.pg_port}" for m in status.replicas),
            "DATABASE_HOSTS": ",".join(HOST for _ in self.names),
            "DATABASE_PORTS": ",".join(str(self.layout.pg_port(n)) for n in self.names),
        }

    # -- faults --

    def switchover(self, candidate: str | None = None, *, timeout: float = 60) -> str:
        """Planned switchover to ``candidate`` (any eligible one when None).

        Returns the new leader once it takes writes; the old leader rejoins as a replica
        in the background (:meth:`wait_until_healthy` waits for that). In synchronous mode
        ``on`` Patroni only switches over to the synchronous standby.
        """
        leader = self.leader()
        if candidate is not None:
            self.layout.index(candidate)
            if candidate == leader:
                raise ClusterError(f"{candidate} is already the leader")
        body = {"leader": leader, **({"candidate": candidate} if candidate else {})}
        started = time.monotonic()
        code, answer = rest_call(
            self.layout.api_port(leader), "/switchover", body=body, timeout=timeout
        )
        if code != 200:
            detail = answer if isinstance(answer, str) else json.dumps(answer)
            if "sync_standby" in detail:
                sync = [m.name for m in self.status().members if m.role == "sync_standby"]
                detail += f" (synchronous mode: Patroni switches over only to {', '.join(sync)})"
            raise ClusterError(f"Patroni refused the switchover from {leader}: {detail}")
        remaining = max(1.0, timeout - (time.monotonic() - started))
        new_leader = self.wait_for_leader(timeout=remaining, exclude=[leader])
        if candidate and new_leader != candidate:
            raise ClusterError(f"switched over to {new_leader} instead of {candidate}")
        return new_leader

    def kill_leader(self) -> KilledLeader:
        """SIGKILL the leader's postmaster; returns once it and its backends are gone.

        Patroni then fails over (``primary_start_timeout`` 0): :meth:`wait_for_leader`
        with ``exclude=[killed.name]`` waits for the new leader.
        """
        leader = self.leader()
        pid = self.postgres_pid(leader)
        if pid is None:
            raise ClusterError(f"the leader {leader} has no running postmaster")
        backends = children(pid)
        logger.info("killing %s's postmaster (pid %d)", leader, pid)
        os.kill(pid, signal.SIGKILL)
        sent_at = time.monotonic()
        wait_gone([pid], timeout=10)
        # Orphaned backends exit when they notice; stragglers would hold shared memory.
        self._signal(wait_gone(backends, timeout=5), signal.SIGKILL)
        return KilledLeader(leader, sent_at)

    def hang(self, name: str, only: HangTarget = "member") -> None:
        """SIGSTOP member ``name``: Patroni and PostgreSQL (``only``: just one of them)."""
        if only not in ("member", "postgres", "patroni"):
            raise ClusterError(f"hang what? {only!r} (member, postgres or patroni)")
        patroni = self.patroni_pid(name)
        pids = [patroni] if patroni and only != "postgres" else []
        if only != "patroni":
            pids += self._postgres_tree(name)
        if not pids:
            raise ClusterError(f"{name} has no running process to hang")
        logger.info("hanging %s (SIGSTOP %s)", name, " ".join(map(str, pids)))
        self._signal(pids, signal.SIGSTOP)  # Patroni first: it must not see PostgreSQL freeze

    def resume(self, name: str) -> None:
        """SIGCONT member ``name``'s processes (PostgreSQL first); harmless when not hung."""
        pids = [*reversed(self._postgres_tree(name)), self.patroni_pid(name)]
        self._signal([pid for pid in pids if pid], signal.SIGCONT)

    def heal(self, *, timeout: float = 90) -> None:
        """Resume every member and wait until the cluster is healthy again (= :meth:`up`)."""
        self.up(timeout=timeout)
