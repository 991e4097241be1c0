"""The demo shop under gunicorn against the Patroni test cluster, with aliases as a Patroni
site has them: the primary is every member with ``target_session_attrs=read-write``, the
replica alias every member with ``target_session_attrs=standby`` and random load balancing
(``DATABASE_REPLICAS=members`` in ``testproject.settings``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from django_pgreplica.testing.cluster import PatroniCluster
from tests.integration.servers import ROOT, Server, start_server, stop

PRODUCT = "switchover-beans"


def site_env(cluster: PatroniCluster, **extra: str) -> dict[str, str]:
    env = cluster.env()
    return {
        "DATABASE_HOST": env["DATABASE_HOSTS"],
        "DATABASE_PORT": env["DATABASE_PORTS"],
        "DATABASE_NAME": env["DATABASE_NAME"],
        "DATABASE_USER": env["DATABASE_USER"],
        "DATABASE_PASSWORD": "",
        "DATABASE_REPLICAS": "members",
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "testproject" / "manage.py"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def gunicorn(workers: int, threads: int) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", "testproject.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
            "--worker-class", "gthread", "--timeout", "60",
        ]  # fmt: skip

    return command


@contextlib.contextmanager
def running_site(
    cluster: PatroniCluster, log: Path, *, workers: int, threads: int, **extra: str
) -> Iterator[Server]:
    """The shop migrated, with PRODUCT in stock, served by gunicorn until the block ends."""
    env = site_env(cluster, **extra)
    manage(env, "migrate", "--noinput")
    manage(
        env, "shell", "-c",
        "from testproject.shop.models import Product; "
        f"Product.objects.update_or_create(slug={PRODUCT!r}, "
        "defaults=dict(name='Beans', price=3, stock=10**9))",
    )  # fmt: skip
    server = start_server("gunicorn", gunicorn(workers, threads), log, **env)
    try:
        yield server
    finally:
        stop(server)
