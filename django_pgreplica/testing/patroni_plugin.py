"""pytest support: a real Patroni cluster (etcd + Patroni members) for failover tests.

Opt in from a conftest (``pytest_plugins = ["django_pgreplica.testing.patroni_plugin"]``)
or with ``-p django_pgreplica.testing.patroni_plugin``. Then:

- ``pgreplica_patroni`` (session): a running
  :class:`~django_pgreplica.testing.cluster.PatroniCluster` in ``$PGREPLICA_PATRONI_DIR``
  (default ``<rootdir>/.pgreplica/patroni-test``) on base port ``$PGREPLICA_PATRONI_PORT``
  (default: the first free layout from 65130), with ``$PGREPLICA_PATRONI_MEMBERS``
  members (default 3) in synchronous mode. A new cluster takes ~10-16 s, so it is made
  once per session; it is stopped and deleted at the end unless
  ``PGREPLICA_PATRONI_KEEP=1`` (then the next run reuses it in ~1 s).
- ``pgreplica_patroni_healthy`` (function): the same cluster for a test that breaks it
  (``switchover``, ``kill_leader``, ``hang``): afterwards every member is resumed, stopped
  processes are started and the fixture waits until the cluster is healthy again.

It does not touch ``DATABASES``: point aliases at ``cluster.env()`` values yourself (a
libpq multi-host ``HOST``/``PORT`` with ``target_session_attrs``). When etcd or Patroni is
missing the fixture fails, never skips, saying what to install (``ensure_patroni`` in
``scripts/_patroni.sh`` installs both). Faults are cluster-wide: do not share one cluster
between pytest-xdist workers that break it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import ClusterError, PatroniCluster
from .cluster.directory import chosen_port
from .cluster.patroni import PATRONI_CONFIG_FILE
from .cluster.patroni_setup import free_patroni_port

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TEST_PATRONI_PORT",
    "pgreplica_patroni",
    "pgreplica_patroni_healthy",
    "start_test_patroni",
]

DEFAULT_TEST_PATRONI_PORT = 65130  # the dev tool's default is 65100


def start_test_patroni(rootdir: Path) -> PatroniCluster:
    """Start or reuse the test Patroni cluster; ClusterError says what is missing."""
    directory = Path(
        os.environ.get("PGREPLICA_PATRONI_DIR") or rootdir / ".pgreplica" / "patroni-test"
    )
    members = int(os.environ.get("PGREPLICA_PATRONI_MEMBERS") or 3)
    config = directory / PATRONI_CONFIG_FILE
    port = chosen_port(
        "PGREPLICA_PATRONI_PORT",
        config,
        lambda: free_patroni_port(DEFAULT_TEST_PATRONI_PORT, members),
    )
    cluster = PatroniCluster(directory, port=port, members=None if config.exists() else members)
    started = time.monotonic()
    cluster.up()
    logger.info("pgreplica Patroni test cluster ready in %.1fs", time.monotonic() - started)
    return cluster


def _keep() -> bool:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return True  # a sibling worker may still use it
    return os.environ.get("PGREPLICA_PATRONI_KEEP", "0").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def pgreplica_patroni(request: pytest.FixtureRequest) -> Iterator[PatroniCluster]:
    """The running Patroni test cluster (a :class:`PatroniCluster`), healthy at start."""
    try:
        cluster = start_test_patroni(Path(request.config.rootpath))
    except ClusterError as exc:
        pytest.fail(f"django_pgreplica Patroni cluster: {exc}", pytrace=False)
    yield cluster
    if not _keep():
        cluster.down()


@pytest.fixture
def pgreplica_patroni_healthy(pgreplica_patroni: PatroniCluster) -> Iterator[PatroniCluster]:
    """The session's Patroni cluster, brought back to health after the test."""
    yield pgreplica_patroni
    try:
        pgreplica_patroni.heal()
    except ClusterError as exc:
        pytest.fail(f"the Patroni cluster did not heal after the test: {exc}", pytrace=False)
