"""Whole-request cost of django-pgreplica: the demo shop with and without it.

Two variants of the same site, same views, same two database aliases:

``plain``      no django_pgreplica app, router or middleware: every query goes to default
``pgreplica``  the demo as shipped: StickyPrimaryMiddleware + ReplicaRouter, reads on the
               replica, a WAL-position query after each write for the client's token

Each variant runs in its own process (settings are per process) and calls the WSGI
application in a loop: request_started/finished, every middleware, the view, its queries
against the local cluster, the response. Connections are kept (CONN_MAX_AGE=None, no
health checks), so connection setup is not measured. Rounds alternate the variants so
machine noise hits both alike; the table shows the median of the rounds.

    .venv/bin/python benchmarks/request_overhead.py [--requests 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from django_pgreplica.testing.cluster import Cluster, free_base_port  # noqa: E402

VARIANTS = ("plain", "pgreplica")
BLOCKS = 10  # each endpoint's requests are spread over this many interleaved blocks


def endpoints(order_id: int, slug: str) -> dict[str, tuple[str, str, bytes, dict[str, str]]]:
    """name -> (method, path, body, extra WSGI headers)."""
    order = json.dumps({"product": slug, "quantity": 1, "email": "bench@example.com"}).encode()
    return {
        "GET /bench/noop/ (no query)": ("GET", "/bench/noop/", b"", {}),
        "GET /bench/noop/ + token": ("GET", "/bench/noop/", b"", {"token": ""}),
        "GET /api/orders/<id>/ (sync)": ("GET", f"/api/orders/{order_id}/", b"", {}),
        "GET /api/orders/<id>/ + token": ("GET", f"/api/orders/{order_id}/", b"", {"token": ""}),
        "GET /api/products/<slug>/ (async)": ("GET", f"/api/products/{slug}/", b"", {}),
        "GET / (HTML list)": ("GET", "/", b"", {}),
        "POST /api/orders/ (write)": ("POST", "/api/orders/", order, {}),
    }


# --- child ------------------------------------------------------------------------------


def make_environ(method: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if body:
        environ["CONTENT_TYPE"] = "application/json"
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def fresh_token() -> str:
    """A valid token the replica has already replayed: read-your-writes routing runs (and
    the replica is still chosen). Dated a little ahead so it outlives the run."""
    from django_pgreplica.consistency import ConsistencyToken, current_wal_lsn, encode_token

    lsn = current_wal_lsn("default")
    return encode_token(ConsistencyToken(written_at=time.time() + 50, lsn=lsn))


def run_child(variant: str, requests: int, order_id: int, slug: str) -> dict[str, float]:
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()
    token = fresh_token() if variant == "pgreplica" else "ignored"
    if variant == "pgreplica":
        from django_pgreplica.testing.plugin import wait_for_replay

        wait_for_replay()
    status: list[str] = []

    def start_response(code: str, headers: Any, exc_info: Any = None) -> Callable[..., Any]:
        status.append(code)
        return lambda data: None

    def call(spec: tuple[str, str, bytes, dict[str, str]]) -> None:
        method, path, body, headers = spec
        headers = {"X-PgReplica-Token": token} if "token" in headers else headers
        response = app(make_environ(method, path, body, headers), start_response)
        try:
            for _ in response:
                pass
        finally:
            response.close()  # fires request_finished

    specs = endpoints(order_id, slug)
    for spec in specs.values():  # warm up, and fail loudly on a broken endpoint
        for _ in range(50):
            status.clear()
            call(spec)
            if not status or status[0][:3] not in ("200", "201"):
                raise RuntimeError(f"{variant} {spec[:2]} answered {status}")
    totals = dict.fromkeys(specs, 0.0)
    per_block = max(1, requests // BLOCKS)
    for _ in range(BLOCKS):
        for name, spec in specs.items():
            started = time.perf_counter()
            for _ in range(per_block):
                call(spec)
            totals[name] += time.perf_counter() - started
    return {name: total / (per_block * BLOCKS) * 1e6 for name, total in totals.items()}


# --- parent -----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="per endpoint and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=59452, help="first base port to try")
    parser.add_argument("--dir", type=Path, default=ROOT / ".pgreplica" / "bench-req")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                        "request_overhead.json")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--order-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--slug", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = run_child(args.child, args.requests, args.order_id, args.slug)
        print(json.dumps(result))
        return 0

    cluster = Cluster(args.dir)
    if cluster.exists():
        cluster.down()
    cluster = Cluster(args.dir, port=free_base_port(args.port, 2), replicas=1)
    samples: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    try:
        cluster.up()
        env = {
            **os.environ,
            **cluster.env(),
            "DJANGO_SETTINGS_MODULE": "benchmarks.bench_settings",
            "PYTHONPATH": str(ROOT),
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "PGREPLICA_BENCH_CONN_MAX_AGE": "none",
            "PGREPLICA_BENCH_HEALTH_CHECKS": "0",
        }
        manage = [sys.executable, str(ROOT / "testproject" / "manage.py")]
        subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, cwd=ROOT)
        subprocess.run([*manage, "seed_demo", "--no-admin"], env=env, check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        cluster.execute("primary", "UPDATE shop_product SET stock = 1000000000")
        slug = cluster.execute("primary", "SELECT slug FROM shop_product ORDER BY id LIMIT 1")[0][0]
        order_id = cluster.execute(
            "primary",
            "INSERT INTO shop_order (product_id, quantity, email, created_at) "
            "SELECT id, 1, 'bench@example.com', now() FROM shop_product WHERE slug = %s "
            "RETURNING id",
            [slug],
        )[0][0]
        cluster.wait_replayed()
        for round_no in range(args.rounds):
            for variant in VARIANTS if round_no % 2 == 0 else reversed(VARIANTS):
                print(f"round {round_no + 1}/{args.rounds}: {variant}", file=sys.stderr,
                      flush=True)  # fmt: skip
                out = subprocess.run(
                    [sys.executable, __file__, "--child", variant, "--requests",
                     str(args.requests), "--order-id", str(order_id), "--slug", slug],
                    env={**env, "PGREPLICA_BENCH_VARIANT": variant}, cwd=ROOT, check=True,
                    capture_output=True, text=True,
                )  # fmt: skip
                result = json.loads(out.stdout.strip().splitlines()[-1])
                for name, micros in result.items():
                    samples[variant].setdefault(name, []).append(micros)
    finally:
        if not args.keep:
            cluster.down()

    import platform

    print(
        f"python {platform.python_version()}, Django WSGI handler in-process, "
        f"{args.rounds} rounds x {args.requests} requests per endpoint; median µs/request"
    )
    print(f"{'endpoint':36} {'plain':>8} {'pgreplica':>10} {'overhead':>9} {'':>7}")
    report: dict[str, Any] = {"requests": args.requests, "rounds": args.rounds, "endpoints": {}}
    for name in samples["plain"]:
        plain = statistics.median(samples["plain"][name])
        ours = statistics.median(samples["pgreplica"][name])
        print(
            f"{name:36} {plain:8.0f} {ours:10.0f} {ours - plain:+9.0f} "
            f"{(ours - plain) / plain:+7.1%}"
        )
        report["endpoints"][name] = {
            "plain_us": round(plain, 1),
            "pgreplica_us": round(ours, 1),
            "overhead_us": round(ours - plain, 1),
            "samples": {v: [round(x, 1) for x in samples[v][name]] for v in VARIANTS},
        }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
