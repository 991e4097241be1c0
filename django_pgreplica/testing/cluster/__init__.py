"""A local PostgreSQL primary with N streaming replicas, for development, tests and demos.

``python -m django_pgreplica.testing.cluster up`` builds one with ``initdb`` and
``pg_basebackup -R -X stream -C -S <slot>`` (one physical slot per replica), using the
settings in ``django_pgreplica/pgconf/``. The other commands take only ``--dir``: the port,
replica count and database name are kept in ``<dir>/cluster.json``. The older spelling
``python -m django_pgreplica.cluster`` is an alias of the same command line.

Layout of a cluster directory::

    cluster.json   port, replicas, dbname, bindir
    primary/       data directory of node "primary" (port BASE)
    replica1/ ...  data directory of node "replicaN" (port BASE + N)
    logs/NAME.log  server log of each node
    run/           unix sockets (listen_addresses is 127.0.0.1 only)

Typical use::

    python -m django_pgreplica.testing.cluster up --replicas 2  # ~2 s new, ~0.2 s reused
    eval "$(python -m django_pgreplica.testing.cluster env)"    # DATABASE_HOST/PORT/NAME/...
    python -m django_pgreplica.testing.cluster status [--json]  # exit 1 unless all healthy
    python -m django_pgreplica.testing.cluster pause-replay replica1
    python -m django_pgreplica.testing.cluster down             # stop, delete the directory

``up --secure`` makes a cluster as compose.yaml runs it (``pgconf/secure/``: TLS with
certificates it makes with the openssl CLI, SCRAM passwords, the ``app``, ``replicator`` and
``monitor`` roles); its ``env`` is then the application role's, with ``verify-full``. See
:mod:`.secure`.

``pause-replay NAME`` has siblings ``resume-replay``, ``stop``, ``start``, ``kill``,
``promote`` and ``rebuild``; ``--help`` lists them.

Needs PostgreSQL 13 or newer (server binaries found on PATH, through ``pg_config`` or in
``/usr/lib/postgresql/*/bin``; ``$PGREPLICA_PG_BINDIR`` overrides the search).

The same :class:`Cluster` API backs the fault helpers the tests use (pause replay, stop,
kill, promote, rebuild). PostgreSQL refuses to run as root, so when invoked as root every
server binary runs as the ``postgres`` OS user through ``runuser``.

Modules: :mod:`.binaries` (finding the server), :mod:`.processes` (ports, pids, OS user),
:mod:`.nodes` (:class:`Node`, :class:`NodeStatus`), :mod:`.base` (directory, commands, SQL),
:mod:`.building` (initdb, clone, pgconf/), :mod:`.status` (status, waiting),
:mod:`.cluster` (:class:`Cluster`: up, down, faults), :mod:`.cli` (:func:`main`).

``python -m django_pgreplica.testing.cluster patroni up|down|status|env|switchover|
kill-leader|hang|resume|wait-leader|wait-healthy`` runs a Patroni cluster instead (etcd +
N Patroni members, same ``pgconf/`` settings): :class:`PatroniCluster` in :mod:`.patroni`,
with :mod:`.patroni_setup` (ports, executables, configuration), :mod:`.patroni_status`
(:class:`PatroniStatus`, :class:`MemberStatus`) and :mod:`.patroni_cli`.
"""

from __future__ import annotations

from ...lsn import parse_lsn, record_end_lsn
from .base import CONFIG_FILE, DEFAULT_DBNAME, DEFAULT_DIR, DEFAULT_PORT
from .binaries import INSTALL_HINT, SERVER_BINARIES, find_bindir
from .building import PGCONF_DIR
from .cli import main
from .cluster import Cluster
from .errors import ClusterError
from .nodes import HOST, SUPERUSER, Node, NodeStatus, Role
from .patroni import HangTarget, KilledLeader, PatroniCluster
from .patroni_setup import DEFAULT_PATRONI_DIR, DEFAULT_PATRONI_PORT, SyncMode
from .patroni_status import MemberStatus, PatroniStatus
from .processes import free_base_port, pid_alive, port_in_use
from .secure import APP_USER, MONITOR_USER, REPLICATION_USER, SECURE_PGCONF_DIR, SecureFiles

__all__ = [
    "APP_USER",
    "CONFIG_FILE",
    "DEFAULT_DBNAME",
    "DEFAULT_DIR",
    "DEFAULT_PATRONI_DIR",
    "DEFAULT_PATRONI_PORT",
    "DEFAULT_PORT",
    "HOST",
    "INSTALL_HINT",
    "MONITOR_USER",
    "PGCONF_DIR",
    "REPLICATION_USER",
    "SECURE_PGCONF_DIR",
    "SERVER_BINARIES",
    "SUPERUSER",
    "Cluster",
    "ClusterError",
    "HangTarget",
    "KilledLeader",
    "MemberStatus",
    "Node",
    "NodeStatus",
    "PatroniCluster",
    "PatroniStatus",
    "Role",
    "SecureFiles",
    "SyncMode",
    "find_bindir",
    "free_base_port",
    "main",
    "parse_lsn",
    "pid_alive",
    "port_in_use",
    "record_end_lsn",
]
