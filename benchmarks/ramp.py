"""What a recovered, cold replica's first seconds cost with different ramps (RAMP_SECONDS).

A local cluster with two replicas, a table (``bench_ramp``, ~210 MB by default) far
larger than the replicas' ``shared_buffers`` (set to 32 MB here), and reads at a steady,
open-loop rate through the router: one point lookup by random primary key per "request"
(a routing scope, Django's ``close_old_connections()`` around it, persistent connections
with ``CONN_HEALTH_CHECKS``), on a pool of threads in this process. Latency is measured
from each read's scheduled start, so a replica that cannot keep up shows as queueing.

Per trial: warm-up with both replicas healthy; replica1 is stopped (``pg_ctl -m fast``)
until its circuit opens; then it is made cold the way a restarted host is: its shared
buffers are empty (restart) and every file of its data directory is evicted from the OS
page cache (``posix_fadvise(POSIX_FADV_DONTNEED)``, replica1's files only, so the primary
and replica2 stay warm as on separate hosts); it is started again and the trial measures
the 30 s after the router sees it back. Variants: ``RAMP_SECONDS`` 0 (no ramp), 5, 10,
30 with the linear curve, and 10 with a quadratic ("slow start") curve, which the
benchmark patches into the breaker.

    .venv/bin/python benchmarks/ramp.py [--rate 200] [--repeat 2] [--variants ...]
    .venv/bin/python benchmarks/ramp.py --riops 100 --hot-share 0.8 \
        --out benchmarks/results/ramp-slowdisk

``--riops`` makes replica1's storage slow: its postmaster (and so every backend) starts in
a cgroup v1 blkio group capped at that many read IOPS on the data directory's disk (root
only); ``--hot-share`` sends that share of the reads to the first ``--hot-rows`` rows, a
hot set that has to warm up. ``--down`` removes the cluster at the end.

Results: ``benchmarks/results/ramp.json`` and ``ramp.txt`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WINDOW = 30.0  # seconds after recovery that count
TAIL = 6.0  # measured after the window, to see the share settle


@dataclass
class Read:
    scheduled: float  # monotonic
    took: float  # seconds from scheduled start to answer (queueing included)
    service: float  # seconds from the thread taking it to the answer
    port: int  # which server answered (0: failed)


@dataclass
class Trial:
    curve: str
    ramp: float
    reads: list[Read] = field(default_factory=list)
    down_at: float = 0.0
    opened_at: float = 0.0
    recovered_at: float = 0.0
    blocks: dict[str, int] = field(default_factory=dict)
    reopened: int = 0


def _weight_quadratic(self: Any, now: float) -> float:
    """CircuitBreaker.weight with a quadratic ramp: RAMP_START + (1 - RAMP_START) * p**2."""
    from django_pgreplica.health.breaker import RAMP_START

    if self._c.opened:
        return 0.0
    progress = self.ramp_progress(now)
    return 1.0 if progress >= 1.0 else float(RAMP_START + (1.0 - RAMP_START) * progress**2)


def evict(datadir: Path) -> tuple[int, int]:
    """Drop ``datadir``'s files from the OS page cache: (files, bytes)."""
    files = size = 0
    for path in datadir.rglob("*"):
        if not path.is_file():
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)  # only clean pages can be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            files += 1
            size += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return files, size


BLKIO = Path("/sys/fs/cgroup/blkio")


@contextlib.contextmanager
def throttled(riops: int) -> Iterator[None]:
    """Run the block in a blkio cgroup whose reads are capped at ``riops`` per second on the
    data directory's disk, so the processes started meanwhile (replica1's postmaster, which
    its backends inherit) read from "slow storage". 0: no cap."""
    if not riops:
        yield
        return
    group = BLKIO / "pgreplica-ramp-bench"
    group.mkdir(exist_ok=True)
    device = os.stat(ROOT).st_dev
    (group / "blkio.throttle.read_iops_device").write_text(
        f"{os.major(device)}:{os.minor(device)} {riops}\n"
    )
    (group / "cgroup.procs").write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        (BLKIO / "cgroup.procs").write_text(f"{os.getpid()}\n")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Driver:
    """Reads at ``rate`` per second, open loop, on ``threads`` threads."""

    def __init__(
        self, rate: float, threads: int, keys: Callable[[], int], read: Callable[[int], int]
    ) -> None:
        self.rate, self.keys, self.read = rate, keys, read
        self.jobs: queue.Queue[float | None] = queue.Queue()
        self.done: list[Read] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        self._clock = threading.Thread(target=self._schedule, daemon=True)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._clock.start()

    def stop(self) -> None:
        self._stop.set()
        self._clock.join()
        for _ in self._threads:
            self.jobs.put(None)
        for thread in self._threads:
            thread.join()

    def take(self) -> list[Read]:
        with self._lock:
            done, self.done = self.done, []
        return done

    def _schedule(self) -> None:
        step = 1.0 / self.rate
        due = time.monotonic()
        while not self._stop.is_set():
            due += step
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.jobs.put(due)

    def _work(self) -> None:
        from django.db import close_old_connections

        while True:
            due = self.jobs.get()
            if due is None:
                close_old_connections()
                return
            started = time.monotonic()
            try:
                port = self.read(self.keys())
            except Exception:
                port = 0
            ended = time.monotonic()
            with self._lock:
                self.done.append(Read(due, ended - due, ended - started, port))


def setup(port: int, rows: int, shared_buffers: str) -> Any:
    from django_pgreplica.testing.cluster import Cluster

    cluster = Cluster(ROOT / ".pgreplica" / "bench-ramp", port=port, replicas=2)
    cluster.up()
    for node in cluster.replicas:
        auto = node.datadir / "postgresql.auto.conf"
        line = f"shared_buffers = '{shared_buffers}'"
        text = auto.read_text() if auto.exists() else ""
        if line not in text:
            auto.write_text(text + line + "\n")
            cluster.stop(node.name)
            cluster.start(node.name)
    have = cluster.execute(
        "primary",
        "SELECT count(*) FROM pg_class WHERE relname = 'bench_ramp'",
        dbname=cluster.dbname,
    )
    if not have or not have[0][0]:
        print(f"creating bench_ramp ({rows:,} rows) ...", flush=True)
        with cluster.connect("primary", cluster.dbname) as conn:
            conn.autocommit = True
            conn.execute("CREATE TABLE bench_ramp (id bigint PRIMARY KEY, pad text NOT NULL)")
            conn.execute(
                "INSERT INTO bench_ramp SELECT i, repeat(md5(i::text), 16) "
                "FROM generate_series(1, %s) AS i",
                [rows],
            )
            conn.execute("VACUUM ANALYZE bench_ramp")
        cluster.wait_replayed(timeout=300)
    return cluster


def run_trial(
    cluster: Any, curve: str, ramp: float, args: argparse.Namespace, driver: Driver
) -> Trial:
    from django.conf import settings
    from django.test import override_settings

    from django_pgreplica.health import breaker as breaker_module
    from django_pgreplica.health.breaker import CircuitBreaker, CircuitState
    from django_pgreplica.health.replica import registry

    linear = CircuitBreaker.weight
    if curve == "quadratic":
        CircuitBreaker.weight = _weight_quadratic  # type: ignore[method-assign]
    config = {
        **settings.PGREPLICA,
        "REPLICAS": ["replica", "replica2"],
        "RAMP_SECONDS": ramp,
        "FAILURE_THRESHOLD": 3,
        "CACHE": None,
    }
    trial = Trial(curve, ramp)
    replica1 = cluster.node("replica1")
    try:
        with override_settings(PGREPLICA=config):
            driver.take()
            time.sleep(args.warm)
            trial.reads.extend(driver.take())  # the warm baseline
            trial.down_at = time.monotonic()
            cluster.stop("replica1")
            health = registry.get("replica")
            deadline = time.monotonic() + 60
            while health.breaker.state(time.monotonic()) is not CircuitState.OPEN:
                if time.monotonic() > deadline:
                    raise RuntimeError("replica1's circuit never opened")
                time.sleep(0.05)
            trial.opened_at = time.monotonic()
            files, size = evict(replica1.datadir)
            print(f"  evicted {files} files ({size / 2**20:.0f} MiB) of replica1", flush=True)
            with throttled(args.riops):  # the postmaster and its backends inherit it
                cluster.start("replica1")
            while health.breaker.state(time.monotonic()) is CircuitState.OPEN:
                if time.monotonic() > deadline + 60:
                    raise RuntimeError("replica1 never came back")
                time.sleep(0.01)
            recovered = health.breaker._c.recovered_at
            assert recovered is not None
            trial.recovered_at = recovered
            trial.blocks["before"] = _blocks(cluster)
            was_open = False  # re-opened while ramping: a failure then counts as a flap
            while time.monotonic() < recovered + WINDOW:
                is_open = health.breaker.state(time.monotonic()) is CircuitState.OPEN
                trial.reopened += is_open and not was_open
                was_open = is_open
                time.sleep(0.005)
            trial.blocks["window"] = _blocks(cluster)
            time.sleep(TAIL)
            trial.reads.extend(driver.take())
            assert breaker_module.RAMP_START > 0
    finally:
        CircuitBreaker.weight = linear  # type: ignore[method-assign]
    return trial


def _blocks(cluster: Any) -> int:
    """Blocks replica1's backends read from outside shared_buffers so far."""
    rows = cluster.execute(
        "replica1",
        "SELECT blks_read FROM pg_stat_database WHERE datname = current_database()",
        dbname=cluster.dbname,
    )
    return int(rows[0][0]) if rows else 0


def summarise(trial: Trial, ports: dict[int, str]) -> dict[str, Any]:
    t0 = trial.recovered_at
    base = [r for r in trial.reads if r.scheduled < trial.down_at]
    window = [r for r in trial.reads if t0 <= r.scheduled < t0 + WINDOW]
    on = [r for r in window if ports.get(r.port) == "replica"]
    other = [r for r in window if ports.get(r.port) == "replica2"]
    primary = [r for r in window if ports.get(r.port) == "default"]
    failed = [r for r in trial.reads if r.port == 0]
    base_on = [r.took for r in base if ports.get(r.port) == "replica"]

    bins: list[float] = []  # replica1's share of reads, per second after recovery
    for second in range(int(WINDOW + TAIL)):
        chunk = [r for r in trial.reads if t0 + second <= r.scheduled < t0 + second + 1]
        bins.append(
            sum(ports.get(r.port) == "replica" for r in chunk) / len(chunk) if chunk else 0.0
        )
    full = 0.5  # two healthy replicas: half the reads each
    # the first second from which replica1's share, averaged over 3 s, reaches 90% of full
    full_at = next(
        (float(s) for s, share in enumerate(_smooth(bins)) if share >= 0.9 * full),
        float("nan"),
    )
    cold: list[dict[str, float]] = []  # replica1's latency per 5 s after recovery
    for start in range(0, int(WINDOW), 5):
        took = [r.took * 1000 for r in on if t0 + start <= r.scheduled < t0 + start + 5]
        cold.append(
            {
                "from_s": float(start),
                "reads": float(len(took)),
                "p50_ms": percentile(took, 50),
                "p99_ms": percentile(took, 99),
            }
        )
    first: list[dict[str, float]] = []  # and per second for the first 10 s
    for second in range(10):
        took = [r.took * 1000 for r in on if t0 + second <= r.scheduled < t0 + second + 1]
        first.append(
            {"from_s": float(second), "reads": float(len(took)), "p99_ms": percentile(took, 99)}
        )
    ms = 1000.0
    return {
        "reopened": trial.reopened,
        "curve": trial.curve,
        "ramp_seconds": trial.ramp,
        "down_for_s": round(t0 - trial.down_at, 2),
        "baseline_replica1_p50_ms": percentile(base_on, 50) * ms,
        "baseline_replica1_p99_ms": percentile(base_on, 99) * ms,
        "window_reads": len(window),
        "recovered_reads": len(on),
        "recovered_share": len(on) / len(window) if window else 0.0,
        "shifted_reads": round(full * len(window) - len(on)),
        "recovered_p50_ms": percentile([r.took for r in on], 50) * ms,
        "recovered_p99_ms": percentile([r.took for r in on], 99) * ms,
        "recovered_max_ms": max((r.took for r in on), default=float("nan")) * ms,
        "recovered_over_20ms": sum(r.took > 0.020 for r in on),
        "recovered_over_100ms": sum(r.took > 0.100 for r in on),
        "overall_p50_ms": percentile([r.took for r in window], 50) * ms,
        "overall_p99_ms": percentile([r.took for r in window], 99) * ms,
        "replica2_reads_per_s": len(other) / WINDOW,
        "replica2_p99_ms": percentile([r.took for r in other], 99) * ms,
        "primary_reads": len(primary),
        "failed_reads": len(failed),
        "full_share_after_s": full_at,
        "replica1_disk_blocks_in_window": trial.blocks.get("window", 0)
        - trial.blocks.get("before", 0),
        "share_per_second": [round(b, 3) for b in bins],
        "recovered_latency_per_5s": cold,
        "recovered_latency_first_10s": first,
    }


def _smooth(values: list[float], width: int = 3) -> Iterator[float]:
    """Moving averages over ``width`` seconds (binomial noise of ~100 reads a second)."""
    for i in range(max(1, len(values) - width + 1)):
        chunk = values[i : i + width]
        yield sum(chunk) / len(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=63500)
    parser.add_argument("--rate", type=float, default=200.0, help="reads per second")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--shared-buffers", default="32MB")
    parser.add_argument("--warm", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--variants", default="linear:0,linear:5,linear:10,linear:30,quadratic:10")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ramp"))
    parser.add_argument("--down", action="store_true", help="remove the cluster at the end")
    parser.add_argument("--verbose", action="store_true", help="log the router's warnings")
    parser.add_argument(
        "--riops",
        type=int,
        default=0,
        help="slow storage: cap replica1's reads at this many IOPS (cgroup v1 blkio, root)",
    )
    parser.add_argument("--hot-share", type=float, default=0.0, help="share of reads on...")
    parser.add_argument("--hot-rows", type=int, default=8000, help="... the first N rows")
    args = parser.parse_args()

    cluster = setup(args.port, args.rows, args.shared_buffers)
    os.environ.update(cluster.env())
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.bench_settings"
    os.environ["PGREPLICA_BENCH_CONN_MAX_AGE"] = "none"
    os.environ["PGREPLICA_BENCH_HEALTH_CHECKS"] = "1"
    import logging

    import django

    django.setup()
    if not args.verbose:
        logging.getLogger("django_pgreplica").setLevel(logging.ERROR)
    from django.db import close_old_connections, models
    from django.db.models.expressions import RawSQL

    from django_pgreplica.consistency import scope

    class RampRow(models.Model):
        id = models.BigIntegerField(primary_key=True)
        pad = models.TextField()
        objects: models.Manager[RampRow] = models.Manager()

        class Meta:
            app_label = "shop"
            managed = False
            db_table = "bench_ramp"

        def __str__(self) -> str:
            return str(self.id)

    def read(key: int) -> int:
        close_old_connections()  # request_started
        try:
            with scope():
                row = (
                    RampRow.objects.filter(pk=key)
                    .annotate(port=RawSQL("inet_server_port()", ()))
                    .values_list("port", "pad")
                    .get()
                )
            return int(row[0])
        finally:
            close_old_connections()  # request_finished

    ports = {cluster.port: "default", cluster.port + 1: "replica", cluster.port + 2: "replica2"}
    variants = [(v.split(":")[0], float(v.split(":")[1])) for v in args.variants.split(",")]
    print(
        f"{args.rate:g} reads/s on {args.threads} threads, {args.rows:,} rows, replicas' "
        f"shared_buffers {args.shared_buffers}; replica1 read IOPS cap {args.riops or 'none'}; "
        f"{args.hot_share:.0%} of reads on the first {args.hot_rows:,} rows; load average "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )

    def keys() -> int:
        if args.hot_share and random.random() < args.hot_share:
            return random.randint(1, args.hot_rows)
        return random.randint(1, args.rows)

    driver = Driver(args.rate, args.threads, keys, read)
    driver.start()
    results: list[dict[str, Any]] = []
    try:
        time.sleep(5)  # connections and plans, then the first trial's warm-up
        for round_ in range(args.repeat):
            order = variants if round_ % 2 == 0 else list(reversed(variants))
            for curve, ramp in order:
                print(f"round {round_ + 1}: {curve} {ramp:g} s", flush=True)
                trial = run_trial(cluster, curve, ramp, args, driver)
                summary = summarise(trial, ports)
                summary["round"] = round_ + 1
                summary["load_average"] = os.getloadavg()[0]
                results.append(summary)
                print(
                    "  recovered: {recovered_reads} reads ({recovered_share:.1%}), "
                    "p50 {recovered_p50_ms:.2f} ms p99 {recovered_p99_ms:.2f} ms; overall p99 "
                    "{overall_p99_ms:.2f} ms; shifted {shifted_reads}; 90% share after "
                    "{full_share_after_s} s; disk blocks {replica1_disk_blocks_in_window}; "
                    "re-opened {reopened}".format(**summary),
                    flush=True,
                )
    finally:
        driver.stop()
    Path(args.out + ".json").write_text(
        json.dumps(
            {
                "rate": args.rate,
                "threads": args.threads,
                "rows": args.rows,
                "shared_buffers": args.shared_buffers,
                "replica1_read_iops_cap": args.riops or None,
                "hot_share": args.hot_share,
                "hot_rows": args.hot_rows if args.hot_share else None,
                "window_s": WINDOW,
                "trials": results,
            },
            indent=1,
        )
        + "\n"
    )
    table = format_table(results)
    Path(args.out + ".txt").write_text(table)
    print(table)
    if args.down:
        cluster.down()


def format_table(results: list[dict[str, Any]]) -> str:
    keys = sorted({(r["curve"], r["ramp_seconds"]) for r in results}, key=lambda k: (k[0], k[1]))
    lines = [
        "variant | trials | warm p50/p99 ms | recovered share | recovered p50 ms | recovered "
        "p99 ms | its p99 first 5 s | overall p50 ms | overall p99 ms | replica2 reads/s | "
        "primary reads | shifted reads | 90% share after s | cold blocks read | re-opened | "
        "its reads > 20 ms | > 100 ms",
    ]
    for curve, ramp in keys:
        rows = [r for r in results if (r["curve"], r["ramp_seconds"]) == (curve, ramp)]

        def med(name: str, rows: list[dict[str, Any]] = rows) -> float:
            return float(statistics.median(r[name] for r in rows))

        first5 = statistics.median(r["recovered_latency_per_5s"][0]["p99_ms"] for r in rows)
        lines.append(
            f"{curve} {ramp:g} s | {len(rows)} | {med('baseline_replica1_p50_ms'):.2f}/"
            f"{med('baseline_replica1_p99_ms'):.2f} | {med('recovered_share'):.1%} | "
            f"{med('recovered_p50_ms'):.2f} | {med('recovered_p99_ms'):.2f} | {first5:.2f} | "
            f"{med('overall_p50_ms'):.2f} | {med('overall_p99_ms'):.2f} | "
            f"{med('replica2_reads_per_s'):.1f} | {med('primary_reads'):.0f} | "
            f"{med('shifted_reads'):.0f} | {med('full_share_after_s'):.1f} | "
            f"{med('replica1_disk_blocks_in_window'):.0f} | "
            f"{sum(r['reopened'] for r in rows)} of {len(rows)} | "
            f"{med('recovered_over_20ms'):.0f} | {med('recovered_over_100ms'):.0f}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
