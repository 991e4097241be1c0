"""Bad input gets a clear refusal, and no secret leaks, on the secure cluster.

The leak check gives the aliases real passwords, then makes connections fail with a wrong
one (a canary): no log record, command output, admin page or /metrics body may contain a
password or a DSN. Forged and oversized tokens are ignored; malformed thresholds and an
unknown --database are usage errors (UNKNOWN, exit 3). The refusals tested elsewhere are
not repeated: forged tokens (tests/integration/test_middleware.py), the admin page for
anonymous, non-staff and unpermitted staff users (tests/integration/admin/test_admin.py),
bad --watch, --critical-bytes and --warning-seconds values
(tests/integration/test_replication_status.py), a write on a replica alias (test_django.py).
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import OperationalError, connections
from django.test import Client

from django_pgreplica import health
from django_pgreplica.consistency import scope
from django_pgreplica.testing.cluster import APP_USER, Cluster
from testproject.shop.models import Product
from tests.integration.secure.conftest import pointed_at
from tests.support import pgreplica_settings

ROOT = Path(__file__).resolve().parents[3]
CANARY = f"Canary-{secrets.token_hex(8)}"  # the wrong password: never to be seen again
DSN_SHAPES = ("password=", f":{CANARY}@", "PASSWORD")


@pytest.fixture
def superuser(cluster: Cluster) -> Iterator[User]:
    User.objects.filter(username="leakcheck").delete()
    user = User.objects.create_superuser("leakcheck", "l@example.com", secrets.token_hex(8))
    cluster.wait_replayed()
    yield user
    user.delete()


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Each record as a handler would write it, traceback included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def run_status(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("replication_status", *args, stdout=out, stderr=err)
    assert isinstance(exited.value.code, int)
    return exited.value.code, out.getvalue() + err.getvalue()


def command_line(cluster: Cluster, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """replication_status from a shell, with testproject's settings from `cluster env`."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("DATABASE_")}
    return subprocess.run(
        [sys.executable, "testproject/manage.py", "replication_status", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=base | cluster.env() | {"DJANGO_SETTINGS_MODULE": "testproject.settings"} | env,
    )  # fmt: skip


def test_no_password_or_dsn_in_logs_output_pages_or_metrics(
    cluster: Cluster, lamp: Product, superuser: User, caplog: pytest.LogCaptureFixture
) -> None:
    real = cluster.secure_files.passwords()[APP_USER]
    caplog.set_level(logging.DEBUG)
    seen: dict[str, str] = {}
    # replica2 gets the canary: every connection to it fails authentication.
    with pointed_at(cluster, replica2={"PASSWORD": CANARY}):
        with pgreplica_settings(HEALTH_CHECK_INTERVAL=0.1, FAILURE_THRESHOLD=2):
            admin = Client()
            admin.force_login(superuser)
            for number in range(20):  # reads: replica2 fails, falls back, gets probed
                with scope():
                    assert Product.objects.get(pk=lamp.pk).name == "Lamp", number
            seen["text"] = run_status()[1]
            code, seen["json"] = run_status("--json")
            assert code == 2  # replica2 is unreachable for it: CRITICAL
            page = admin.get("/admin/replication/")
            assert page.status_code == 200
            seen["admin"] = page.content.decode()
            metrics = Client().get("/metrics")
            assert metrics.status_code == 200
            seen["metrics"] = metrics.content.decode()
            health.registry.reset()  # stop probing with the canary
    # every alias, the monitoring ones too: the wrong password
    cli = command_line(cluster, DATABASE_PASSWORD=CANARY, DATABASE_MONITOR_PASSWORD=CANARY)
    assert cli.returncode == 3, cli.stdout + cli.stderr  # the primary refuses it: UNKNOWN
    seen["command line"] = cli.stdout + cli.stderr
    seen["log"] = everything_logged(caplog)
    # The failures happened and were reported: the places a leak would be were exercised.
    assert 'password authentication failed for user "app"' in seen["log"]
    assert 'password authentication failed for user "monitor"' in seen["command line"]
    assert "replica2: unreachable" in seen["text"]
    replicas = {item["alias"]: item for item in json.loads(seen["json"])["replicas"]}
    assert replicas["replica2"]["reachable"] is False and replicas["replica"]["reachable"]
    assert "unreachable" in seen["admin"]
    assert 'django_pgreplica_replica_up{replica="replica2"} 0.0' in seen["metrics"]
    for where, text in seen.items():
        for secret in (CANARY, real):
            assert secret not in text, f"a password in the {where}"
        for shape in DSN_SHAPES:
            assert shape not in text, f"{shape!r} (a DSN?) in the {where}"


@pytest.mark.parametrize(
    "value",
    [
        "A" * 100_000,  # far larger than any token: refused in constant work, not parsed
        "eyJ" + "x" * 5000 + ":1tAbCd:" + "y" * 43,  # the shape of a signed value, forged
        ".eJxLy0kFAAQ6AgI:1tAbCd:" + "z" * 43,  # a "compressed" payload (never unpacked)
        "\x00\x01\x02" * 1000,
    ],
    ids=["huge", "forged-signature", "forged-compressed", "binary"],
)
def test_forged_and_oversized_tokens_are_ignored(lamp: Product, value: str) -> None:
    client = Client()
    client.cookies["pgreplica"] = value
    response = client.get("/whoami-db/", HTTP_X_PGREPLICA_TOKEN=value)
    assert response.status_code == 200
    assert response.json()["database"] in {"replica", "replica2"}  # no pin on the primary
    assert value not in response.content.decode()
    written = client.post(
        "/api/orders/",
        {"product": "lamp", "email": "f@example.com"},
        content_type="application/json",
        HTTP_X_PGREPLICA_TOKEN=value,
    )
    assert written.status_code == 201
    fresh = written.headers["X-PgReplica-Token"]  # a real token replaces the forged one
    assert fresh != value and len(fresh) < 200


@pytest.mark.parametrize(
    "args",
    [
        ["--warning-seconds", "nan"],
        ["--critical-seconds", ""],
        ["--critical-bytes", "-5MB"],
        ["--critical-bytes", "12 parsecs"],
        ["--watch", "-1"],
    ],
)
def test_malformed_thresholds_are_usage_errors(args: list[str]) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("replication_status", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert raised.value.returncode == 3
    assert args[0] in str(raised.value)


def test_an_absurdly_large_threshold_is_a_usage_error() -> None:
    with pytest.raises(CommandError) as raised:
        call_command("replication_status", "--critical-bytes", "9" * 400, stdout=io.StringIO())
    assert raised.value.returncode == 3


@pytest.mark.parametrize("refusal", ["wrong password", "untrusted certificate"])
def test_a_login_the_primary_refuses_fails_at_once(cluster: Cluster, refusal: str) -> None:
    tls = cluster.secure_files
    broken: dict[str, Any] = {"PASSWORD": CANARY}
    if refusal == "untrusted certificate":  # a server certificate is no CA: verify fails
        sslrootcert = str(tls.server_dir("replica1") / "server.crt")
        broken = {
            "OPTIONS": {"connect_timeout": 2, **tls.client_params(), "sslrootcert": sslrootcert}
        }
    with pointed_at(cluster, default=broken), pgreplica_settings(PRIMARY_WAIT_SECONDS=1.0):
        started = time.monotonic()
        with pytest.raises(OperationalError):
            connections["default"].ensure_connection()
        assert time.monotonic() - started < 0.5


def test_an_unknown_database_is_refused_from_the_command_line(cluster: Cluster) -> None:
    done = command_line(cluster, "--database", "replica9")
    assert done.returncode == 3
    assert "'replica9' is not a replica alias" in done.stderr
    assert "Traceback" not in done.stderr
