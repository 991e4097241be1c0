"""Nanoseconds per ``db_for_read``: Django without a router, django-multidb-router's
``PinningReplicaRouter`` and django-pgreplica's ``ReplicaRouter``, in one process,
interleaved so machine noise hits all three alike, both inside a request (a routing scope)
and outside any (a script, a management command).

Needs a replica to be healthy (ours probes it): starts or reuses a local cluster, and
django-multidb-router (``.venv/bin/pip install django-multidb-router``; not a dependency).

    .venv/bin/python benchmarks/router_overhead.py [--calls 200000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import contextlib
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
    places = {"inside a request": scope, "outside any request": contextlib.nullcontext}
    samples: dict[tuple[str, str], list[float]] = {
        (place, name): [] for place in places for name in routers
    }
    for _ in range(args.rounds):
        for place, context in places.items():
            with context():  # a long "request": the replica is chosen once
                assert routers["pgreplica ReplicaRouter"].db_for_read(User) == "replica"
                assert routers["multidb PinningReplicaRouter"].db_for_read(User) == "replica"
                for name, router in routers.items():
                    ns = per_call_ns(router.db_for_read, User, args.calls)
                    samples[place, name].append(ns)

    import platform

    print(
        f"python {platform.python_version()}, {platform.machine()}, "
        f"{args.rounds} rounds x {args.calls} calls, median ns per db_for_read"
    )
    print(f"{'where':20} {'router':32} {'median':>8} {'min':>8}")
    for (place, name), values in samples.items():
        print(f"{place:20} {name:32} {statistics.median(values):8.0f} {min(values):8.0f}")


if __name__ == "__main__":
    main()
