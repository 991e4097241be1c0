"""Django on the secure cluster, connected as compose connects it (the application role,
``sslmode=verify-full``): routing, read-your-writes tokens, fallback, a refused write on a
replica alias, and ``replication_status`` as the monitoring role."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import InternalError, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from django_pgreplica.consistency import scope
from django_pgreplica.routers import ReplicaRouter
from django_pgreplica.testing.cluster import APP_USER, MONITOR_USER, Cluster
from testproject.shop.models import Product
from tests.integration.secure.conftest import NODES, pointed_at
from tests.support import pgreplica_settings

ROOT = Path(__file__).resolve().parents[3]
FAST_PROBES: dict[str, Any] = {"HEALTH_CHECK_INTERVAL": 0.1, "RAMP_SECONDS": 0}


def read() -> str:
    """One request's read: the alias whose connection ran it."""
    with scope():
        alias = ReplicaRouter().db_for_read(Product)
        with CaptureQueriesContext(connections[alias]) as ran:
            assert list(Product.objects.values_list("name", flat=True)) == ["Lamp"]
        assert len(ran) == 1, f"{alias} ran nothing: the read went elsewhere"
        return alias


def until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_every_alias_is_the_app_role_over_verified_tls() -> None:
    for alias in NODES:
        options = connections[alias].settings_dict["OPTIONS"]
        assert options["sslmode"] == "verify-full"
        connections[alias].ensure_connection()
        raw = connections[alias].connection
        assert raw is not None and raw.pgconn.ssl_in_use
        row = raw.execute(
            "SELECT current_user, s.ssl, r.rolsuper FROM pg_stat_ssl s, pg_roles r "
            "WHERE s.pid = pg_backend_pid() AND r.rolname = current_user"
        ).fetchone()
        assert row == (APP_USER, True, False), alias


def test_writes_go_to_the_primary_and_reads_to_a_replica(lamp: Product) -> None:
    assert lamp._state.db == "default"
    assert {read() for _ in range(10)} <= {"replica", "replica2"}


def test_a_write_on_a_replica_alias_is_refused(lamp: Product) -> None:
    """Even past the router (an explicit using()): the standby refuses, clearly."""
    with pytest.raises(InternalError, match="read-only transaction"):
        Product.objects.using("replica").filter(pk=lamp.pk).update(stock=0)
    with pytest.raises(InternalError, match="read-only transaction"):
        with connections["replica2"].cursor() as cursor:
            cursor.execute("DELETE FROM shop_product")
    assert Product.objects.using("default").get(pk=lamp.pk).stock == 100


def test_a_client_reads_its_own_writes_while_replay_stands_still(
    lamp: Product, cluster: Cluster
) -> None:
    writer, stranger = Client(), Client()
    for node in ("replica1", "replica2"):
        cluster.pause_replay(node)
    with pgreplica_settings(STICKY_SECONDS=0.1):
        response = writer.post(
            "/api/orders/",
            {"product": "lamp", "quantity": 3, "email": "w@example.com"},
            content_type="application/json",
        )
        assert response.status_code == 201, response.content
        token = response.headers["X-PgReplica-Token"]
        assert response.cookies["pgreplica"]["httponly"]
        time.sleep(0.2)  # past any time pin: only the LSN in the token holds the client
        order = f"/api/orders/{response.json()['id']}/"
        assert stranger.get(order).status_code == 404  # the replicas lack it
        assert writer.get(order).status_code == 200  # cookie
        by_header = Client().get(order, HTTP_X_PGREPLICA_TOKEN=token)
        assert by_header.status_code == 200 and by_header.json()["database"] == "default"
    for node in ("replica1", "replica2"):
        cluster.resume_replay(node)
    cluster.wait_replayed()
    assert stranger.get(order).status_code == 200


def test_a_stopped_replica_costs_no_failed_read_and_comes_back(
    lamp: Product, cluster: Cluster
) -> None:
    with pgreplica_settings(**FAST_PROBES):
        assert read() in {"replica", "replica2"}
        cluster.stop("replica1")
        assert {read() for _ in range(20)} <= {"replica2", "default"}
        cluster.start("replica1")
        until(lambda: read() == "replica", 10)


def status_json(*args: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("replication_status", "--json", *args, stdout=out, stderr=io.StringIO())
    assert isinstance(exited.value.code, int)
    return exited.value.code, json.loads(out.getvalue())


def test_replication_status_as_the_monitoring_role(cluster: Cluster) -> None:
    """pg_monitor and nothing else is enough for the whole report, over verify-full."""
    with pointed_at(cluster, user=MONITOR_USER):
        connections["default"].ensure_connection()
        assert connections["default"].connection.info.user == MONITOR_USER
        code, report = status_json()
    assert code == 0, report
    # Both hidden (None) from a role without pg_monitor; the lags may be None when idle.
    assert [r["state"] for r in report["replicas"]] == ["streaming", "streaming"]
    assert [r["sync_state"] for r in report["replicas"]] == ["async", "async"]
    assert not [finding for finding in report["audit"] if finding["code"] == "W108"]


def test_replication_status_command_line_as_the_monitoring_role(cluster: Cluster) -> None:
    """As a monitoring host runs it: testproject's settings from `cluster env`, with the
    monitoring role's name and password instead of the application's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DATABASE_")}
    env |= cluster.env() | {"DJANGO_SETTINGS_MODULE": "testproject.settings"}
    env |= {"DATABASE_USER": env["MONITOR_USER"], "DATABASE_PASSWORD": env["MONITOR_PASSWORD"]}
    done = subprocess.run(
        [sys.executable, "testproject/manage.py", "replication_status"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Replication status: OK" in done.stdout
    assert "streaming" in done.stdout and "W108" not in done.stdout


def status_as_the_app(cluster: Cluster, **extra: str) -> tuple[int, dict[str, Any]]:
    """replication_status --json run as the application (testproject's settings from
    `cluster env`), the way the admin page and /metrics of that app observe replication."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DATABASE_")}
    env |= cluster.env() | {"DJANGO_SETTINGS_MODULE": "testproject.settings"} | extra
    done = subprocess.run(
        [sys.executable, "testproject/manage.py", "replication_status", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_the_app_monitors_replication_as_the_monitoring_role(cluster: Cluster) -> None:
    """The application's role has no pg_monitor: through MONITORING_DATABASES (testproject:
    DATABASE_MONITOR_USER, as compose sets it) the report sees everything; without it the
    primary hides the replicas' states from the app (audit W108)."""
    code, report = status_as_the_app(cluster)
    assert code == 0, report
    assert [r["state"] for r in report["replicas"]] == ["streaming", "streaming"]
    assert not [finding for finding in report["audit"] if finding["code"] == "W108"]

    code, report = status_as_the_app(cluster, DATABASE_MONITOR_USER="")
    assert [finding for finding in report["audit"] if finding["code"] == "W108"], report
