"""Share of a writing client's reads that replicas serve: lsn mode vs time mode.

A client places one order (a write), then reads every 50 ms for 5 s while the replica is
healthy. In lsn mode it returns to the replica as soon as the replica has replayed its
write; in time mode it stays on the primary for STICKY_SECONDS (5 s). Runs the demo shop
in-process against a local cluster.

    .venv/bin/python benchmarks/read_your_writes_share.py [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=65442)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()

    from benchmarks.demo_setup import demo_on_cluster

    demo_on_cluster("bench-ryw", args.port)
    from django.conf import settings
    from django.test import Client, override_settings

    def one_run(mode: str) -> tuple[int, int]:
        client = Client()
        config = {**settings.PGREPLICA, "READ_YOUR_WRITES": mode, "STICKY_SECONDS": 5.0}
        with override_settings(PGREPLICA=config):
            response = client.post(
                "/api/orders/",
                {"product": "bench", "email": "bench@example.com"},
                content_type="application/json",
            )
            assert response.status_code == 201, response.content
            replica = total = 0
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                time.sleep(args.interval)
                served = client.get("/whoami-db/").json()["database"]
                total += 1
                replica += served != settings.PGREPLICA["PRIMARY"]
        return replica, total

    print(
        f"one write, then a read every {args.interval * 1000:.0f} ms for {args.duration:g} s; "
        f"{args.runs} runs per mode, replica healthy"
    )
    print(f"{'mode':6} {'reads':>6} {'replica':>8} {'share':>7}")
    for mode in ("lsn", "time"):
        replica = total = 0
        for _ in range(args.runs):
            r, t = one_run(mode)
            replica, total = replica + r, total + t
        print(f"{mode:6} {total:6d} {replica:8d} {replica / total:7.1%}")


if __name__ == "__main__":
    main()
