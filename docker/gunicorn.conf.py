"""gunicorn settings for the compose demo: ``gunicorn --config docker/gunicorn.conf.py``.

Prometheus counters live in each worker process, and /metrics is not served on the web
port (docs/security.md): each worker serves its registry — django-prometheus's metrics
and django_pgreplica's collector — on the first free port of METRICS_PORTS, through
django-prometheus's PROMETHEUS_METRICS_EXPORT_PORT_RANGE (testproject/settings.py reads
it from the environment set below), and Prometheus scrapes every port
(ops/prometheus/prometheus.yml). A restarted worker takes over the port its predecessor
freed. Only the workers get these variables: a ``manage.py`` run in the container opens
no metrics port.
"""

from __future__ import annotations

bind = "0.0.0.0:8000"
workers = 2
timeout = 30
accesslog = "-"
METRICS_PORTS = range(8001, 8009)
raw_env = [
    f"PROMETHEUS_METRICS_EXPORT_PORT_RANGE={METRICS_PORTS.start}-{METRICS_PORTS.stop - 1}",
    # Every interface of the container; compose publishes only port 8000 to the host.
    "PROMETHEUS_METRICS_EXPORT_ADDRESS=0.0.0.0",
]
