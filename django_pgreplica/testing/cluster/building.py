"""Making nodes: ``initdb``, ``pg_basebackup``, the settings in ``pgconf/``, start and stop.

Each node's data directory gets a copy of ``django_pgreplica/pgconf/`` (``primary.conf``,
``replica.conf``, ``pg_hba.conf``) and one include line in its ``postgresql.conf`` naming
its role; ports, ``listen_addresses`` and the socket directory go on the ``pg_ctl`` command
line. ``docs/postgresql.md`` gives the reason for each setting (the files are those
settings sized for a laptop). A ``secure`` cluster gets ``pgconf/secure/`` on top: its
``pg_hba.conf``, and an include of ``secure/<role>.conf`` (which includes the dev file of
the role); its certificate paths go on the command line too (see :mod:`.secure`).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import stat
import time
from pathlib import Path

from psycopg import sql as pgsql

from .base import ClusterBase
from .errors import ClusterError
from .nodes import HOST, SUPERUSER, Node, Role, log_tail
from .processes import port_in_use
from .secure import REPLICATION_USER, SECURE_PGCONF_DIR, psql_version

logger = logging.getLogger(__name__)

__all__ = ["PGCONF_DIR", "ClusterBuilder"]

PGCONF_DIR = Path(__file__).resolve().parents[2] / "pgconf"
# The include line this tool owns in each node's postgresql.conf; its target says the role.
_INCLUDE_RE = re.compile(
    r"^include 'pgreplica/(?:secure/)?(primary|replica)\.conf'.*$", re.MULTILINE
)
SECURE_CONF_FILES = ("primary.conf", "replica.conf", "security.conf")


class ClusterBuilder(ClusterBase):
    """Creating, configuring, starting and stopping single nodes."""

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
        hba = PGCONF_DIR / "pg_hba.conf"
        if self.secure:
            # The same layout as compose's mounts: secure/ beside the dev files it includes.
            (confdir / "secure").mkdir(exist_ok=True)
            self.user.own(confdir / "secure")
            for name in SECURE_CONF_FILES:
                shutil.copyfile(SECURE_PGCONF_DIR / name, confdir / "secure" / name)
                self.user.own(confdir / "secure" / name)
            hba = SECURE_PGCONF_DIR / "pg_hba.conf"
        shutil.copyfile(hba, node.datadir / "pg_hba.conf")
        self.user.own(node.datadir / "pg_hba.conf")
        self._set_role_include(node, role)

    def _set_role_include(self, node: Node, role: Role) -> None:
        conf = node.datadir / "postgresql.conf"
        text = conf.read_text()
        target = f"secure/{role}" if self.secure else role
        line = f"include 'pgreplica/{target}.conf'  # managed by django_pgreplica.testing.cluster"
        if _INCLUDE_RE.search(text):
            text = _INCLUDE_RE.sub(line, text)
        else:
            text = text.rstrip("\n") + "\n\n" + line + "\n"
        conf.write_text(text)

    def _initdb(self) -> None:
        node = self.primary
        logger.info("initdb %s", node.datadir)
        auth = ["--auth=trust"]
        pwfile = self.secure_files.secrets_dir / "initdb-password"
        if self.secure:
            # The superuser's password, read by initdb from a file only it (postgres) reads.
            self.secure_files.write_secret(pwfile, self.secure_files.passwords()[SUPERUSER] + "\n")
            auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            self._run(
                [
                    "initdb",
                    "-D",
                    str(node.datadir),
                    "-U",
                    SUPERUSER,
                    *auth,
                    "--no-locale",
                    "--encoding=UTF8",
                    "--no-sync",  # a throwaway dev cluster; skips seconds of fsync
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._install_conf(node, "primary")

    def _prepare_secure(self) -> None:
        """Certificates for every node and the replication passfile (idempotent)."""
        if not self.secure:
            return
        files = self.secure_files
        files.make_certs([node.name for node in self.nodes])
        files.write_passfile()

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
        if self.secure:
            # -R copies these into primary_conninfo: TLS checked against the host name,
            # the password read from the passfile (so never written into the data dir).
            files = self.secure_files
            conninfo = " ".join(
                [
                    f"host={HOST} port={self.primary.port} user={REPLICATION_USER}",
                    f"application_name={node.name}",
                    *(f"{key}={value}" for key, value in files.client_params().items()),
                    f"passfile={files.passfile}",
                ]
            )
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
        if self.secure:
            self._ensure_roles()
            return
        exists = self._query(
            self.primary, "SELECT 1 FROM pg_database WHERE datname = %s", [self.dbname]
        )
        if not exists:
            logger.info("creating database %s", self.dbname)
            with self.connect("primary") as conn:
                conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(self.dbname)))

    def _ensure_roles(self) -> None:
        """pgconf/secure/roles.sql, as compose runs it: the roles and the app's database.
        Run on every ``up`` (it is idempotent), so a reused cluster has the file's roles."""
        files = self.secure_files
        psql = self.bindir / "psql"
        if psql_version(psql) < (15,):
            raise ClusterError(f"--secure needs psql 15 or newer for roles.sql (\\getenv): {psql}")
        params = {"host": HOST, "port": self.primary.port, "user": SUPERUSER, "dbname": "postgres"}
        params |= files.client_params()
        conninfo = " ".join(f"{key}={value}" for key, value in params.items())
        env = {"PGPASSWORD": files.passwords()[SUPERUSER], **files.role_env(self.dbname)}
        self._run(
            ["psql", "-X", "-q", "-d", conninfo, "-f", str(SECURE_PGCONF_DIR / "roles.sql")],
            env=env,
        )

    # -- ports --

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

    # -- starting and stopping one node --

    def _start(self, node: Node) -> None:
        if self.is_running(node.name):
            return
        self._ensure_port_free(node)
        self._clear_stale_lockfiles(node)
        logger.info("starting %s on port %d", node.name, node.port)
        secure = self.secure_files.server_settings(node.name) if self.secure else {}
        options = " ".join(
            [
                f"-p {node.port}",
                f"-c listen_addresses={HOST}",
                f"-c unix_socket_directories={shlex.quote(str(self.socket_dir))}",
                f"-c cluster_name={node.name}",
                *(f"-c {shlex.quote(f'{key}={value}')}" for key, value in secure.items()),
            ]
        )
        node.logfile.touch()
        self.user.own(node.logfile)
        try:
            self._run(["pg_ctl", "start", "-w", "-t", "60", *self._pgdata(node), "-o", options])
        except ClusterError:
            raise ClusterError(
                f"{node.name} failed to start on port {node.port}; last lines of "
                f"{node.logfile}:\n{log_tail(node.logfile)}"
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
