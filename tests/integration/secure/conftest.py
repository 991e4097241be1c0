"""The secure cluster: ``cluster up --secure``, i.e. the files compose.yaml mounts
(pgconf/secure/: hostssl + scram-sha-256, TLS with certificates made by make-certs.sh, the
roles of roles.sql), on a real PostgreSQL, with Django pointed at it as compose points it:
the application role, ``sslmode=verify-full`` against the cluster's CA.

The cluster is its own (``.pgreplica/secure-test``, ports from 64700) and reused by the next
run like the plugin's (``PGREPLICA_CLUSTER_KEEP=0`` removes it at the end). The Django
aliases are repointed for each module and restored after it, so the suite's other tests
keep the plugin's cluster. These tests use no test database: they read and write the
cluster's own ``pgreplica`` database, which the application role owns and migrates.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from django_pgreplica.testing.cluster import (
    APP_USER,
    Cluster,
    ClusterError,
    free_base_port,
)

ROOT = Path(__file__).resolve().parents[3]
SECURE_DIR = ROOT / ".pgreplica" / "secure-test"
FIRST_PORT = 64700
NODES = {"default": "primary", "replica": "replica1", "replica2": "replica2"}  # alias -> node


def alias_settings(cluster: Cluster, node: str, user: str = APP_USER) -> dict[str, Any]:
    """What compose gives an alias: the role's password, TLS checked against the CA."""
    files = cluster.secure_files
    return {
        "HOST": "127.0.0.1",
        "PORT": str(cluster.node(node).port),
        "NAME": cluster.dbname,
        "USER": user,
        "PASSWORD": files.passwords()[user],
        "OPTIONS": {"connect_timeout": 2, **files.client_params()},
    }


@contextmanager
def pointed_at(cluster: Cluster, user: str = APP_USER, **per_alias: Any) -> Iterator[None]:
    """Point the aliases at ``cluster`` as ``user`` (``per_alias``: extra keys of one
    alias), in place as the plugin does; the settings before are restored afterwards."""
    saved = {alias: copy.deepcopy(settings.DATABASES[alias]) for alias in NODES}
    try:
        for alias, node in NODES.items():
            settings.DATABASES[alias].update(
                alias_settings(cluster, node, user), **per_alias.get(alias, {})
            )
            connections[alias].close()
        yield
    finally:
        for alias, previous in saved.items():
            connections[alias].close()
            settings.DATABASES[alias].clear()
            settings.DATABASES[alias].update(previous)


@pytest.fixture(scope="session")
def secure_cluster(django_db_blocker: Any) -> Iterator[Cluster]:
    """The running secure cluster, its database migrated by the application role."""
    directory = Path(os.environ.get("PGREPLICA_SECURE_CLUSTER_DIR") or SECURE_DIR)
    port = None if (directory / "cluster.json").exists() else free_base_port(FIRST_PORT, 3)
    try:
        cluster = Cluster(directory, port=port, replicas=2, secure=True)
        cluster.up()
    except ClusterError as exc:
        pytest.fail(f"secure test cluster in {directory}: {exc}", pytrace=False)
    # The app owns its database: its migrations create the tables (no superuser needed).
    with pointed_at(cluster), django_db_blocker.unblock():
        call_command("migrate", database="default", interactive=False, verbosity=0)
    yield cluster
    if os.environ.get("PGREPLICA_CLUSTER_KEEP", "1").lower() in ("0", "false", "no"):
        cluster.down()


@pytest.fixture(scope="module")
def secure_databases(secure_cluster: Cluster) -> Iterator[Cluster]:
    with pointed_at(secure_cluster):
        yield secure_cluster


@pytest.fixture(autouse=True)
def _secure_db_access(secure_databases: Cluster, django_db_blocker: Any) -> Iterator[None]:
    """Database access for these tests, which commit to the secure cluster directly."""
    with django_db_blocker.unblock():
        yield
    for alias in NODES:
        connections[alias].close()


@pytest.fixture
def cluster(secure_databases: Cluster) -> Iterator[Cluster]:
    """The cluster, with every node back up and streaming after a test that broke it."""
    yield secure_databases
    for node in secure_databases.status():
        if not node.running:
            secure_databases.start(node.name)
        elif node.replay_paused:
            secure_databases.resume_replay(node.name)
    secure_databases.wait_streaming(timeout=30)


@pytest.fixture
def empty_shop(secure_databases: Cluster) -> None:
    """No products or orders left by an earlier test or run (rows here are committed)."""
    from testproject.shop.models import Order, Product

    Order.objects.all().delete()
    Product.objects.all().delete()
    secure_databases.wait_replayed()


@pytest.fixture
def lamp(empty_shop: None, cluster: Cluster) -> Any:
    """One product, replayed on both replicas."""
    from django_pgreplica.consistency import scope
    from testproject.shop.models import Product

    with scope():
        product = Product.objects.create(
            name="Lamp", slug="lamp", price=Decimal("10.00"), stock=100
        )
    cluster.wait_replayed()
    return product
