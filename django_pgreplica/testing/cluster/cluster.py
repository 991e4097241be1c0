"""The :class:`Cluster`: bring it up, tear it down, and break it on purpose.

``up`` is idempotent and repairs what the fault helpers (and crashed runs) leave behind:
stopped nodes are started, promoted replicas re-cloned, paused replay resumed. The fault
helpers (``stop``, ``start``, ``kill``, ``pause_replay``, ``resume_replay``, ``promote``,
``rebuild``) back the CLI commands of the same names and the pytest plugin's ``pgreplica``
fixture.
"""

from __future__ import annotations

import logging
import shutil

from .base import CONFIG_FILE
from .building import ClusterBuilder
from .errors import ClusterError
from .nodes import Node
from .status import ClusterStatus

logger = logging.getLogger(__name__)

__all__ = ["Cluster"]


class Cluster(ClusterStatus, ClusterBuilder):
    """A primary on ``port`` and replicas ``replica1..N`` on ``port + 1..N`` under ``dir``.

    Arguments left as None come from ``<dir>/cluster.json`` when it exists, else from the
    defaults, so ``Cluster(dir)`` alone addresses an existing cluster. Reporting and waiting
    come from :class:`~.status.ClusterStatus`, node building from
    :class:`~.building.ClusterBuilder`, the rest from :class:`~.base.ClusterBase`.
    """

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
            self._prepare_secure()
            if not (self.primary.datadir / "PG_VERSION").exists():
                shutil.rmtree(self.primary.datadir, ignore_errors=True)
                self._initdb()
            self._install_conf(self.primary, "primary")
            self._start(self.primary)
            self._ensure_database()
            for node in self.replicas:
                self._up_replica(node)
            self.wait_streaming(timeout=timeout)

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

    # -- fault helpers (kill is in ClusterBase: stopping a node falls back to it) --

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
