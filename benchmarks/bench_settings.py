"""Settings for the benchmarks and the load test: the demo shop's, plus a few switches.

Environment variables (all optional):

- ``PGREPLICA_BENCH_VARIANT``: ``pgreplica`` (default: the demo shop as it is) or ``plain``
  (the same site and aliases without django_pgreplica: no app, no router, no middleware,
  so every query goes to ``default``), for ``request_overhead.py``.
- ``PGREPLICA_BENCH_CONN_MAX_AGE``: Django's CONN_MAX_AGE for every alias (default 0, as in
  the demo); ``none`` keeps connections forever.
- ``PGREPLICA_BENCH_HEALTH_CHECKS``: ``1``/``0``, Django's CONN_HEALTH_CHECKS (default: on
  when connections are kept, as most deployments that keep them run).
- ``PGREPLICA_BENCH_PGBOUNCER=1``: the aliases point at PgBouncer in transaction pooling
  mode, where a server-side cursor (``QuerySet.iterator()``) cannot outlive its transaction.
"""

from __future__ import annotations

import os

from testproject.settings import *  # noqa: F403
from testproject.settings import DATABASES, INSTALLED_APPS, LOGGING, MIDDLEWARE

VARIANT = os.environ.get("PGREPLICA_BENCH_VARIANT", "pgreplica")
if VARIANT not in ("pgreplica", "plain"):
    raise ValueError(f"PGREPLICA_BENCH_VARIANT must be pgreplica or plain, not {VARIANT!r}")

_max_age = os.environ.get("PGREPLICA_BENCH_CONN_MAX_AGE", "0").strip().lower()
CONN_MAX_AGE: int | None = None if _max_age == "none" else int(_max_age)
PGBOUNCER = os.environ.get("PGREPLICA_BENCH_PGBOUNCER", "") == "1"
_checks = os.environ.get("PGREPLICA_BENCH_HEALTH_CHECKS", "")
HEALTH_CHECKS = CONN_MAX_AGE != 0 if _checks == "" else _checks == "1"

for _db in DATABASES.values():
    _db["CONN_MAX_AGE"] = CONN_MAX_AGE
    # Django checks a reused connection at its first use in each request (SELECT 1).
    _db["CONN_HEALTH_CHECKS"] = HEALTH_CHECKS
    if PGBOUNCER:
        _db["DISABLE_SERVER_SIDE_CURSORS"] = True

ROOT_URLCONF = "benchmarks.bench_urls"

if VARIANT == "plain":
    INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "django_pgreplica"]
    MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("django_pgreplica.")]
    DATABASE_ROUTERS: list[str] = []
    PGREPLICA: dict[str, object] = {}

# Under load, the access log of every 200 would drown the warnings that matter.
LOGGING = {
    **LOGGING,
    "loggers": {
        **LOGGING["loggers"],
        "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
