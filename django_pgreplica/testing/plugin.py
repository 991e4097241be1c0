"""pytest support: a real primary + streaming replicas for pytest-django test runs.

Opt in from a conftest (``pytest_plugins = ["django_pgreplica.testing.plugin"]``) or with
``-p django_pgreplica.testing.plugin``. Then:

- ``pgreplica_cluster`` (session): starts or reuses a
  :class:`~django_pgreplica.testing.cluster.Cluster` in ``$PGREPLICA_CLUSTER_DIR`` (default
  ``<rootdir>/.pgreplica/test``) on base port ``$PGREPLICA_CLUSTER_PORT`` (default: first
  free from 64432), one replica per ``REPLICAS`` alias. It is left running for the next run
  unless ``PGREPLICA_CLUSTER_KEEP=0``.
- ``django_db_modify_db_settings`` points the primary and replica aliases at the cluster
  (replicas become ``TEST["MIRROR"]`` of the primary), so any test that uses the database
  runs against real streaming replication.
- :func:`wait_for_replay` and :func:`replay_paused` (defined in :mod:`.aliases`, imported
  from here) work on Django aliases; the ``pgreplica`` fixture bundles them with alias-based
  fault helpers and heals the cluster afterwards.

Tests that read from a replica need committed data: ``django_db(transaction=True)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .aliases import REPLICA_CONNECT_TIMEOUT, configured_aliases, replay_paused, wait_for_replay
from .cluster import CONFIG_FILE, Cluster, ClusterError, free_base_port
from .cluster.directory import chosen_port

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TEST_PORT",
    "PgReplica",
    "configure_databases",
    "django_db_modify_db_settings",
    "pgreplica",
    "pgreplica_cluster",
    "replay_paused",
    "start_test_cluster",
    "wait_for_replay",
]

DEFAULT_TEST_PORT = 64432

# --- pointing Django at the cluster ---------------------------------------------------


def configure_databases(cluster: Cluster) -> None:
    """Point the primary alias and the replica aliases (in order) at ``cluster``'s nodes.

    The ``DATABASES`` dicts are changed in place: ``django.db.connections`` holds the same
    objects, so connections opened later see the new values.
    """
    from django.conf import settings
    from django.db import connections

    primary, replicas = configured_aliases()
    targets = [(primary, cluster.primary), *zip(replicas, cluster.replicas, strict=False)]
    for alias, node in targets:
        db = settings.DATABASES[alias]
        db.update(HOST="127.0.0.1", PORT=str(node.port), NAME=cluster.dbname, USER="postgres")
        if alias != primary:
            db.setdefault("TEST", {})["MIRROR"] = primary
            db.setdefault("OPTIONS", {}).setdefault("connect_timeout", REPLICA_CONNECT_TIMEOUT)
        connections[alias].close()  # a connection opened before now went elsewhere


def start_test_cluster(rootdir: Path, replicas: int) -> Cluster:
    """Start or reuse the test cluster; ClusterError says what is missing when it can't."""
    directory = Path(os.environ.get("PGREPLICA_CLUSTER_DIR") or rootdir / ".pgreplica" / "test")
    port = chosen_port(
        "PGREPLICA_CLUSTER_PORT",
        directory / CONFIG_FILE,
        lambda: free_base_port(DEFAULT_TEST_PORT, replicas + 1),
    )
    cluster = Cluster(directory, port=port, replicas=replicas)
    started = time.monotonic()
    cluster.up()
    logger.info("pgreplica test cluster ready in %.1fs", time.monotonic() - started)
    return cluster


_running: list[Cluster] = []  # the session's cluster, once its fixture has set it up


def _keep_cluster() -> bool:
    # An xdist worker never stops the shared cluster: its siblings may still use it.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return True
    return os.environ.get("PGREPLICA_CLUSTER_KEEP", "1").lower() not in ("0", "false", "no")


@pytest.fixture(scope="session")
def pgreplica_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The running test cluster (a :class:`~django_pgreplica.testing.cluster.Cluster`)."""
    _, replicas = configured_aliases()
    try:
        cluster = start_test_cluster(Path(request.config.rootpath), len(replicas))
    except ClusterError as exc:
        pytest.fail(f"django_pgreplica test cluster: {exc}", pytrace=False)
    _running.append(cluster)
    yield cluster
    _running.remove(cluster)
    if not _keep_cluster():
        cluster.down()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None,
    pgreplica_cluster: Cluster,
) -> None:
    """pytest-django's hook point, overridden: the test databases live on the cluster."""
    configure_databases(pgreplica_cluster)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Make pytest-django's database setup cluster-aware, whatever the plugin order.

    Among plugins the last registered fixture definition wins, and ``-p`` registers this
    module before pytest-django's entry point: then pytest-django's own
    ``django_db_modify_db_settings`` runs instead of the override above, so the databases
    are configured here (a project's own override in a conftest is left alone). After
    ``django_db_setup``, replicas get time to replay the new test databases, so no test
    meets "database does not exist" on a replica.
    """
    name = fixturedef.argname
    if name == "django_db_modify_db_settings" and fixturedef.func.__module__.startswith(
        "pytest_django."
    ):
        configure_databases(request.getfixturevalue("pgreplica_cluster"))
    result = yield
    if name == "django_db_setup" and _running:
        _running[-1].wait_replayed(timeout=30)
    return result


# --- the pgreplica fixture ------------------------------------------------------------


class PgReplica:
    """Cluster access by Django alias, for one test; faults are healed on teardown."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.faulted = False

    def node_name(self, alias_or_node: str) -> str:
        """Cluster node for a Django alias (``"replica"`` -> ``"replica1"``); node names pass."""
        primary, replicas = configured_aliases()
        if alias_or_node == primary:
            return "primary"
        if alias_or_node in replicas:
            return f"replica{replicas.index(alias_or_node) + 1}"
        return self.cluster.node(alias_or_node).name

    def wait_for_replay(self, aliases: Sequence[str] | None = None, timeout: float = 10.0) -> None:
        wait_for_replay(aliases, timeout)

    def replay_paused(self, alias: str) -> contextlib.AbstractContextManager[None]:
        return replay_paused(alias)

    def _fault(self, action: str, alias: str) -> None:
        self.faulted = True
        getattr(self.cluster, action)(self.node_name(alias))

    def pause_replay(self, alias: str) -> None:
        self._fault("pause_replay", alias)

    def resume_replay(self, alias: str) -> None:
        self._fault("resume_replay", alias)

    def stop(self, alias: str) -> None:
        self._fault("stop", alias)

    def start(self, alias: str) -> None:
        self._fault("start", alias)

    def kill(self, alias: str) -> None:
        self._fault("kill", alias)

    def promote(self, alias: str) -> None:
        self._fault("promote", alias)

    def rebuild(self, alias: str) -> None:
        self._fault("rebuild", alias)

    def heal(self) -> None:
        """Back to a primary with every replica streaming, and fresh Django connections."""
        from django.db import connections

        self.cluster.up()  # starts stopped nodes, re-clones promoted ones, resumes replay
        for alias in connections:
            with contextlib.suppress(Exception):
                connections[alias].close()
        self.faulted = False


@pytest.fixture
def pgreplica(pgreplica_cluster: Cluster) -> Iterator[PgReplica]:
    """Alias-based cluster helpers; the cluster is healed after a test that broke it."""
    helper = PgReplica(pgreplica_cluster)
    yield helper
    if helper.faulted:
        helper.heal()
