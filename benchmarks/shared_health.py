"""A hung replica (SIGSTOP) and several worker processes: how many reads wait for
``connect_timeout``, with and without shared health (``PGREPLICA["CACHE"]``, Redis).

Each worker is a process of its own (as under gunicorn) reading in a loop with Django's
default connections (CONN_MAX_AGE=0: every read connects). After a warm-up the replica's
postmaster is stopped for ``--hang`` seconds, then resumed. Printed per run: reads that took
longer than 1 s (they waited for the hung replica), failed reads (none expected), and how
long after SIGCONT the replica served again.

    .venv/bin/python benchmarks/shared_health.py [--workers 4,8] [--hang 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def worker(env: dict[str, str], cache: bool, until: float, out: Any) -> None:
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.db import close_old_connections
    from django.test import override_settings

    from django_pgreplica.consistency import scope
    from django_pgreplica.routers import ReplicaRouter
    from testproject.shop.models import Product

    config = {**settings.PGREPLICA, "REPLICAS": ["replica"], "CACHE": "shared" if cache else None}
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "shared": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        },
    }
    slow = failed = 0
    served: list[tuple[float, str]] = []
    with override_settings(PGREPLICA=config, CACHES=caches):
        while time.time() < until:
            started = time.monotonic()
            try:
                with scope():
                    alias = ReplicaRouter().db_for_read(Product)
                    list(Product.objects.all()[:1])
            except Exception:
                failed += 1
                continue
            finally:
                close_old_connections()  # the end of a request: CONN_MAX_AGE=0 closes them
            took = time.monotonic() - started
            slow += took > 1.0
            served.append((time.time(), alias))
            time.sleep(0.01)
    out.put((slow, failed, served))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", default="4,8")
    parser.add_argument("--hang", type=float, default=8.0)
    parser.add_argument("--port", type=int, default=65462)
    args = parser.parse_args()

    from benchmarks.demo_setup import demo_on_cluster

    cluster = demo_on_cluster("bench-shared", args.port)
    env = {**cluster.env(), "DJANGO_SETTINGS_MODULE": "testproject.settings"}
    context = multiprocessing.get_context("spawn")
    print(f"hung replica for {args.hang:g} s, connect_timeout 2 s, HEALTH_CHECK_INTERVAL 1 s")
    print(
        f"{'workers':>7} {'CACHE':>6} {'reads':>6} {'waited>1s':>10} "
        f"{'failed':>7} {'back after':>11}"
    )
    for count in (int(n) for n in args.workers.split(",")):
        for cache in (False, True):
            if cache:
                import redis

                redis.Redis.from_url(
                    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
                ).delete("pgreplica:health:replica", "pgreplica:health:lead:replica")
            warm, hang = 3.0, args.hang
            until = time.time() + warm + hang + 6.0
            out = context.Queue()
            procs = [
                context.Process(target=worker, args=(env, cache, until, out)) for _ in range(count)
            ]
            for proc in procs:
                proc.start()
            time.sleep(warm + 2.0)  # spawn + django.setup
            pid = cluster.pid("replica1")
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            time.sleep(hang)
            os.kill(pid, signal.SIGCONT)
            resumed = time.time()
            results = [out.get() for _ in procs]
            for proc in procs:
                proc.join()
            slow = sum(r[0] for r in results)
            failed = sum(r[1] for r in results)
            reads = sum(len(r[2]) for r in results)
            back = [
                t - resumed
                for r in results
                for t, alias in r[2]
                if alias == "replica" and t > resumed
            ]
            first_back = f"{min(back):.2f} s" if back else "never"
            print(
                f"{count:7d} {'yes' if cache else 'no':>6} {reads:6d} {slow:10d} "
                f"{failed:7d} {first_back:>11}"
            )


if __name__ == "__main__":
    main()
