"""gunicorn settings for the compose demo: ``gunicorn --config docker/gunicorn.conf.py``.

Prometheus counters live in each worker process: scraping ``:8000/metrics`` reaches a
random worker, so counters seem to jump back and forth. Each worker therefore also serves
its own registry on the first free port from METRICS_PORTS, and Prometheus scrapes every
port (ops/prometheus/prometheus.yml). A restarted worker takes over the port its
predecessor freed. Same idea as django-prometheus's PROMETHEUS_METRICS_EXPORT_PORT_RANGE.
"""

from __future__ import annotations

from typing import Any

bind = "0.0.0.0:8000"
workers = 2
timeout = 30
accesslog = "-"
METRICS_PORTS = range(8001, 8009)


def post_worker_init(worker: Any) -> None:
    from prometheus_client import start_http_server

    for port in METRICS_PORTS:
        try:
            start_http_server(port, addr="0.0.0.0")
        except OSError:
            continue  # taken by a sibling worker
        worker.log.info("worker %s: metrics on :%d/metrics", worker.pid, port)
        return
    worker.log.warning("worker %s: no free metrics port in %s", worker.pid, METRICS_PORTS)
