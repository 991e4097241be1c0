"""Nanoseconds per ``db_for_read``: Django without a router, django-multidb-router's
``PinningReplicaRouter`` and django-pgreplica's ``ReplicaRouter``, in one process,
interleaved so machine noise hits all three alike.

Needs a replica to be healthy (ours probes it): starts or reuses a local cluster.

    .venv/bin/python benchmarks/router_overhead.py [--calls 200000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(port: int) -> None:
    import django
    from django.conf import settings

    def db(p: int, **extra: Any) -> dict[str, Any]:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": p,
            "NAME": "pgreplica",
            "USER": "postgres",
            "OPTIONS": {"connect_timeout": 2},
            **extra,
        }

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_pgreplica"],
        DATABASES={"default": db(port), "replica": db(port + 1)},
        PGREPLICA={"PRIMARY": "default", "REPLICAS": ["replica"]},
        REPLICA_DATABASES=["replica"],
        MIDDLEWARE=[],
        SECRET_KEY="bench",
        USE_TZ=True,
    )
    django.setup()


def per_call_ns(fn: Any, model: Any, calls: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        fn(model)
    return (time.perf_counter_ns() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--port", type=int, default=65432)
    args = parser.parse_args()

    from django_pgreplica.testing.cluster import Cluster

    cluster = Cluster(ROOT / ".pgreplica" / "bench", port=args.port, replicas=1)
    cluster.up()
    configure(args.port)

    from django.contrib.auth.models import User
    from django.db.utils import ConnectionRouter
    from multidb import PinningReplicaRouter

    from django_pgreplica.consistency import scope
    from django_pgreplica.routers import ReplicaRouter

    routers = {
        "django (no router)": ConnectionRouter([]),
        "multidb PinningReplicaRouter": ConnectionRouter([PinningReplicaRouter()]),
        "pgreplica ReplicaRouter": ConnectionRouter([ReplicaRouter()]),
    }
    with scope():  # one long "request": the replica is chosen once, then health is cached
        assert routers["pgreplica ReplicaRouter"].db_for_read(User) == "replica"
        assert routers["multidb PinningReplicaRouter"].db_for_read(User) == "replica"
        samples: dict[str, list[float]] = {name: [] for name in routers}
        for _ in range(args.rounds):
            for name, router in routers.items():
                samples[name].append(per_call_ns(router.db_for_read, User, args.calls))

    import platform

    print(
        f"python {platform.python_version()}, {platform.machine()}, "
        f"{args.rounds} rounds x {args.calls} calls, median ns per db_for_read"
    )
    print(f"{'router':32} {'median':>8} {'min':>8}")
    for name, values in samples.items():
        print(f"{name:32} {statistics.median(values):8.0f} {min(values):8.0f}")


if __name__ == "__main__":
    main()
