"""Private clusters for the cluster-tool and plugin tests.

Several engineers and CI run the suite at once in the same tree: every test process gets
its own cluster directory (named after its pid) and the first free ports from a base, and
clears up what runs that died left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from django_pgreplica.testing.cluster import Cluster, ClusterError, free_base_port, pid_alive

WORKDIR = Path(__file__).resolve().parents[1] / ".pgreplica"


def private_dir(prefix: str) -> Path:
    """``.pgreplica/<prefix>-<pid>``, after removing those of processes that are gone."""
    WORKDIR.mkdir(exist_ok=True)
    for stale in WORKDIR.glob(f"{prefix}-*"):
        pid = stale.name.rsplit("-", 1)[1]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(ClusterError):
                Cluster(stale).down()
            shutil.rmtree(stale, ignore_errors=True)
    return WORKDIR / f"{prefix}-{os.getpid()}"


def start_private(prefix: str, first_port: int, replicas: int, nodes: int, **kw: str) -> Cluster:
    """A fresh cluster on free ports; retried when a concurrent run takes them first."""
    directory = private_dir(prefix)
    for attempt in range(3):
        cluster = Cluster(
            directory, port=free_base_port(first_port, nodes), replicas=replicas, **kw
        )
        try:
            cluster.up()
            return cluster
        except ClusterError:
            cluster.down()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
