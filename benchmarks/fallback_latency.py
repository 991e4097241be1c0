"""Time from a replica's death (SIGKILL) to the first read served by the primary instead.

A reader thread loops over "requests": Django's request_started/finished connection
handling (``close_old_connections``) around a fresh routing scope that runs one ORM read,
``SELECT ..., inet_server_port()``, so the port tells which server really answered (after a
mid-query fallback the ORM still believes it read the replica). The main thread SIGKILLs
the replica's postmaster at a random moment; the trial measures the time from the signal
to the first read answered by the primary, and counts failed reads around it (the
contract: none). Then the replica is started again and the next trial begins with fresh
per-process health state.

Three connection policies, each in its own process (settings are per process):

``fresh``            CONN_MAX_AGE=0: a new connection per request (Django's default)
``persistent``       CONN_MAX_AGE=60, CONN_HEALTH_CHECKS off: the dead socket is found by
                     the query itself (mid-query fallback)
``persistent+check`` CONN_MAX_AGE=60, CONN_HEALTH_CHECKS on: Django's own health check
                     finds the dead socket at the request's first use of the connection

    .venv/bin/python benchmarks/fallback_latency.py [--trials 10] [--modes fresh,persistent]

Target: under 1 s (results and method: docs/benchmarks.md, "Fallback latency").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from django_pgreplica.testing.cluster import Cluster, free_base_port  # noqa: E402

MODES: dict[str, dict[str, str]] = {
    "fresh": {"PGREPLICA_BENCH_CONN_MAX_AGE": "0", "PGREPLICA_BENCH_HEALTH_CHECKS": "0"},
    "persistent": {"PGREPLICA_BENCH_CONN_MAX_AGE": "60", "PGREPLICA_BENCH_HEALTH_CHECKS": "0"},
    "persistent+check": {
        "PGREPLICA_BENCH_CONN_MAX_AGE": "60",
        "PGREPLICA_BENCH_HEALTH_CHECKS": "1",
    },
}
READ_SQL = "SELECT id, inet_server_port() AS server_port FROM shop_product ORDER BY id LIMIT 1"
REPLICA_NODE = "replica1"


@dataclass
class Trial:
    first_primary_ms: float | None  # SIGKILL -> first read answered by the primary
    failed_reads: int  # reads that raised in the 2 s after the kill
    max_read_ms: float  # slowest read in that window
    reads_in_window: int
    errors: list[str] = field(default_factory=list)


# --- child: one connection policy -------------------------------------------------------


class Reader(threading.Thread):
    """Reads in a loop, one routing scope per read, like one request each."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.samples: list[tuple[float, float, int | None, str | None]] = []

    def run(self) -> None:
        from django.db import close_old_connections, connections

        from django_pgreplica.consistency import scope
        from testproject.shop.models import Product

        while not self.stop.is_set():
            close_old_connections()  # request_started
            started = time.monotonic()
            port: int | None = None
            error: str | None = None
            try:
                with scope():
                    row: Any = next(iter(Product.objects.raw(READ_SQL)))
                    port = row.server_port  # an extra column of the raw query
            except Exception as exc:
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            finally:
                close_old_connections()  # request_finished
            self.samples.append((started, time.monotonic(), port, error))
            time.sleep(0.001)
        connections.close_all()


def run_child(trials: int, cluster_dir: Path) -> list[Trial]:
    import django

    django.setup()
    from django_pgreplica import health

    cluster = Cluster(cluster_dir)
    primary_port = cluster.port
    replica_port = cluster.node(REPLICA_NODE).port
    results: list[Trial] = []
    for _ in range(trials):
        cluster.start(REPLICA_NODE)
        cluster.wait_replayed(timeout=30)
        health.registry.reset()  # each trial starts from a healthy, closed circuit
        reader = Reader()
        reader.start()
        deadline = time.monotonic() + 30
        while True:  # warm: the last reads all came from the replica
            recent = reader.samples[-20:]
            if len(recent) == 20 and all(s[2] == replica_port for s in recent):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"reads never settled on the replica: {recent[-3:]}")
            time.sleep(0.02)
        time.sleep(random.uniform(0.05, 0.3))  # strike at a random point of a read
        # Cluster.kill returns when the SIGKILL was sent, after waiting for the processes.
        sent: list[float | None] = []
        killer = threading.Thread(target=lambda out=sent: out.append(cluster.kill(REPLICA_NODE)))
        killer.start()
        time.sleep(2.0)
        reader.stop.set()
        reader.join(timeout=30)
        killer.join()
        killed_at = sent[0]
        assert killed_at is not None, "the replica was not running"
        window = [s for s in reader.samples if s[1] >= killed_at and s[0] <= killed_at + 2.0]
        primary = [s[1] for s in window if s[2] == primary_port]
        failed = [s for s in window if s[3] is not None]
        results.append(
            Trial(
                first_primary_ms=(min(primary) - killed_at) * 1000 if primary else None,
                failed_reads=len(failed),
                max_read_ms=max(((s[1] - s[0]) * 1000 for s in window), default=0.0),
                reads_in_window=len(window),
                errors=sorted({s[3] for s in failed if s[3]})[:3],
            )
        )
    cluster.start(REPLICA_NODE)
    return results


# --- parent: cluster and report ---------------------------------------------------------


def bench_env(cluster: Cluster, mode: str) -> dict[str, str]:
    return {
        **os.environ,
        **cluster.env(),
        **MODES[mode],
        "DJANGO_SETTINGS_MODULE": "benchmarks.bench_settings",
        "PYTHONPATH": str(ROOT),
        "DJANGO_DEBUG": "0",
        "CELERY_TASK_ALWAYS_EAGER": "1",
        # one replica alias only: the fallback must go to the primary, not the other replica
        "DATABASE_REPLICAS": f"127.0.0.1:{cluster.node(REPLICA_NODE).port}",
    }


def summarize(trials: list[Trial]) -> dict[str, Any]:
    times = sorted(t.first_primary_ms for t in trials if t.first_primary_ms is not None)
    return {
        "trials": len(trials),
        "fell_back": len(times),
        "min_ms": round(times[0], 1) if times else None,
        "median_ms": round(statistics.median(times), 1) if times else None,
        "max_ms": round(times[-1], 1) if times else None,
        "under_1s": sum(1 for t in times if t < 1000),
        "failed_reads": sum(t.failed_reads for t in trials),
        "max_read_ms": round(max((t.max_read_ms for t in trials), default=0.0), 1),
        "errors": sorted({e for t in trials for e in t.errors})[:5],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--port", type=int, default=59462, help="first base port to try")
    parser.add_argument("--dir", type=Path, default=ROOT / ".pgreplica" / "bench-fallback")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                        "fallback_latency.json")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # runs inside bench_env(); prints its trials as JSON
        trials = run_child(args.trials, args.dir)
        print(json.dumps([asdict(t) for t in trials]))
        return 0

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    cluster = Cluster(args.dir)
    if cluster.exists():
        cluster.down()
    cluster = Cluster(args.dir, port=free_base_port(args.port, 2), replicas=1)
    report: dict[str, Any] = {"trials_per_mode": args.trials, "modes": {}}
    try:
        cluster.up()
        env = bench_env(cluster, "fresh")
        manage = [sys.executable, str(ROOT / "testproject" / "manage.py")]
        subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, cwd=ROOT)
        subprocess.run([*manage, "seed_demo", "--no-admin"], env=env, check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        for mode in modes:
            print(f"{mode}: {args.trials} trials ...", file=sys.stderr, flush=True)
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--trials", str(args.trials),
                 "--dir", str(args.dir)],
                env=bench_env(cluster, mode), cwd=ROOT, check=True, capture_output=True,
                text=True,
            )  # fmt: skip
            trials = [Trial(**t) for t in json.loads(out.stdout.strip().splitlines()[-1])]
            report["modes"][mode] = {
                "summary": summarize(trials),
                "trials": [asdict(t) for t in trials],
            }
    finally:
        if not args.keep:
            cluster.down()

    print(f"SIGKILL of the replica -> first read served by the primary; {args.trials} trials")
    print(
        f"{'connections':18} {'min ms':>7} {'median':>7} {'max ms':>7} {'< 1 s':>6} "
        f"{'failed reads':>12} {'slowest read ms':>15}"
    )
    for mode, data in report["modes"].items():
        s = data["summary"]
        print(
            f"{mode:18} {s['min_ms'] or 0:7.1f} {s['median_ms'] or 0:7.1f} {s['max_ms'] or 0:7.1f} "
            f"{s['under_1s']:>3}/{s['trials']:<2} {s['failed_reads']:12d} {s['max_read_ms']:15.1f}"
        )
        for error in s["errors"]:
            print(f"{'':18} error: {error[:110]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
