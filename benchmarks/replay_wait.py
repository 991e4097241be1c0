"""REPLAY_WAIT_SECONDS: what a bounded wait for replay buys a client that reads right after
it writes.

Clients each place an order every ``--period`` (200 ms) and read it back at once, through
the demo shop's JSON API in-process (middleware, token, router), against a local primary
with one streaming replica. For each wait (0, 10, 50, 100 ms by default) it prints the
share of read-backs the replica served, the primary's read-backs per second, and the
read-back latency p50/p99 (the wait included).

    .venv/bin/python benchmarks/replay_wait.py [--clients 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waits", default="0,10,50,100", help="milliseconds, comma-separated")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--period", type=float, default=0.2, help="seconds between writes")
    parser.add_argument("--port", type=int, default=65452)
    args = parser.parse_args()

    from benchmarks.demo_setup import demo_on_cluster

    demo_on_cluster("bench-wait", args.port)
    from django.conf import settings
    from django.test import Client, override_settings

    from testproject.shop import services

    services.enqueue_confirmation = lambda order: None  # no Celery round trip in the loop

    def run(wait_ms: float) -> tuple[int, int, list[float]]:
        latencies: list[float] = []
        replica = total = 0
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def client_loop() -> None:
            nonlocal replica, total
            client = Client()
            while time.monotonic() < stop:
                started = time.monotonic()
                response = client.post(
                    "/api/orders/",
                    {"product": "bench", "email": "bench@example.com"},
                    content_type="application/json",
                )
                order = response.json()["id"]
                read_at = time.monotonic()
                served = client.get(f"/api/orders/{order}/").json()["database"]
                took = time.monotonic() - read_at
                with lock:
                    latencies.append(took)
                    total += 1
                    replica += served != "default"
                time.sleep(max(0.0, args.period - (time.monotonic() - started)))

        config = {
            **settings.PGREPLICA,
            "REPLICAS": ["replica"],
            "REPLAY_WAIT_SECONDS": wait_ms / 1000,
        }
        with override_settings(PGREPLICA=config):
            threads = [threading.Thread(target=client_loop) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return replica, total, latencies

    print(
        f"{args.clients} clients, each writing every {args.period * 1000:.0f} ms and reading "
        f"the write back at once, {args.seconds:g} s per wait; local cluster, 1 replica"
    )
    print(f"{'wait':>6} {'reads':>6} {'replica':>8} {'primary/s':>10} {'p50 ms':>7} {'p99 ms':>7}")
    for text in args.waits.split(","):
        wait_ms = float(text)
        replica, total, latencies = run(wait_ms)
        primary_rate = (total - replica) / args.seconds
        print(
            f"{wait_ms:4.0f}ms {total:6d} {replica / total:8.1%} {primary_rate:10.1f} "
            f"{statistics.median(latencies) * 1000:7.2f} {percentile(latencies, 0.99) * 1000:7.2f}"
        )


if __name__ == "__main__":
    main()
