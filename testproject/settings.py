"""Settings for the demo shop that exercises django-pgreplica.

Everything environment-specific comes from environment variables so the same file serves
the local cluster (``python -m django_pgreplica.testing.cluster env`` prints the exports), docker
compose and the test suite. Defaults match ``scripts/demo``: a primary on 127.0.0.1:61432
and two streaming replicas on 61433/61434.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DJANGO_DEBUG", True)
# The fallback key is for the demo only; any real deployment sets DJANGO_SECRET_KEY.
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-pgreplica-demo-key-do-not-use-in-production"
)
# In DEBUG any Host is accepted: `scripts/demo --bind 0.0.0.0` is reached by other names.
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get(
        "DJANGO_ALLOWED_HOSTS", "*" if DEBUG else "localhost,127.0.0.1,[::1]"
    ).split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "django_pgreplica",
    "testproject.shop",
]

MIDDLEWARE = [
    # Outermost: its response phase runs after SessionMiddleware saved the session, so the
    # read-your-writes token it hands out covers that last write too.
    "django_pgreplica.middleware.StickyPrimaryMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves static files (admin CSS) under gunicorn too, where DEBUG is off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"
ASGI_APPLICATION = "testproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Databases ---------------------------------------------------------------------------
# "default" is the primary and takes every write. Each host:port in DATABASE_REPLICAS
# becomes a streaming-replica alias: "replica", then "replica2", "replica3", ...
#
# ENGINE: the stock backend. "django_prometheus.db.backends.postgresql" works as well (it
# adds per-alias query metrics); django-pgreplica supports both. DATABASE_ENGINE switches.
DB_ENGINE = os.environ.get("DATABASE_ENGINE", "django.db.backends.postgresql")
DB_HOST = os.environ.get("DATABASE_HOST", "127.0.0.1")
DB_PORT = os.environ.get("DATABASE_PORT", "61432")
DB_NAME = os.environ.get("DATABASE_NAME", "pgreplica")
DB_USER = os.environ.get("DATABASE_USER", "postgres")
DB_PASSWORD = os.environ.get("DATABASE_PASSWORD", "")
DB_REPLICAS = [
    item.strip()
    for item in os.environ.get("DATABASE_REPLICAS", "127.0.0.1:61433,127.0.0.1:61434").split(",")
    if item.strip()
]
# TLS for every alias: compose (and `cluster up --secure`) set verify-full with their private
# CA, so a server is trusted only with a certificate for the host name it is reached by.
DB_TLS = {
    option: value
    for option, value in (
        ("sslmode", os.environ.get("DATABASE_SSLMODE", "")),
        ("sslrootcert", os.environ.get("DATABASE_SSLROOTCERT", "")),
    )
    if value
}


def replica_alias(index: int) -> str:
    return "replica" if index == 0 else f"replica{index + 1}"


def split_host_port(item: str, default_port: str) -> tuple[str, str]:
    # rpartition keeps bracketed IPv6 hosts ("[::1]:5433") intact.
    host, sep, port = item.rpartition(":")
    if not sep or not port.isdigit():
        return item, default_port
    return host.strip("[]"), port


DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        "ENGINE": DB_ENGINE,
        "HOST": DB_HOST,
        "PORT": DB_PORT,
        "NAME": DB_NAME,
        "USER": DB_USER,
        "PASSWORD": DB_PASSWORD,
        "OPTIONS": {"connect_timeout": 5, **DB_TLS},
    },
}
for _index, _item in enumerate(DB_REPLICAS):
    _host, _port = split_host_port(_item, DB_PORT)
    DATABASES[replica_alias(_index)] = {
        "ENGINE": DB_ENGINE,
        "HOST": _host,
        "PORT": _port,
        "NAME": DB_NAME,
        "USER": DB_USER,
        "PASSWORD": DB_PASSWORD,
        # psycopg waits up to 130 s for a blackholed host when unset; a short timeout keeps a
        # dead replica from hanging requests before its circuit opens.
        "OPTIONS": {"connect_timeout": 2, **DB_TLS},
        # A physical standby holds the primary's data: tests must not create a separate test
        # database on it, only read the primary's (which it replicates).
        "TEST": {"MIRROR": "default"},
    }

# A Patroni cluster (or any set of members one of which is the primary): DATABASE_HOST and
# DATABASE_PORT list every member ("h1,h2,h3" and "p1,p2,p3"). libpq then connects the
# primary alias to whichever member takes writes, and DATABASE_REPLICAS=members makes one
# replica alias over every member that is a standby, a random one per connection.
if "," in DB_HOST:
    DATABASES["default"]["OPTIONS"]["target_session_attrs"] = "read-write"
    if os.environ.get("DATABASE_REPLICAS") == "members":
        for _alias in [alias for alias in DATABASES if alias != "default"]:
            del DATABASES[_alias]
        DATABASES["replica"] = {
            **DATABASES["default"],
            "OPTIONS": {
                **DATABASES["default"]["OPTIONS"],
                "connect_timeout": 2,
                "target_session_attrs": "standby",
                "load_balance_hosts": "random",
            },
            "TEST": {"MIRROR": "default"},
        }

# Connections that outlive a request, for every alias (benchmarks/patroni_failover.py):
# DATABASE_CONN_MAX_AGE (seconds, "none": forever) or DATABASE_POOL=1 (Django's psycopg
# pool, which needs CONN_MAX_AGE 0; DATABASE_POOL_MAX_SIZE: its max_size). A kept
# connection is checked before reuse (CONN_HEALTH_CHECKS), as deployments that keep them
# do, unless DATABASE_CONN_HEALTH_CHECKS=0.
_conn_max_age = os.environ.get("DATABASE_CONN_MAX_AGE", "0").strip().lower()
_pooled = env_bool("DATABASE_POOL", False)
if _conn_max_age != "0" or _pooled:
    for _db in DATABASES.values():
        _db["CONN_MAX_AGE"] = None if _conn_max_age == "none" else int(_conn_max_age)
        _db["CONN_HEALTH_CHECKS"] = env_bool("DATABASE_CONN_HEALTH_CHECKS", True)
        if _pooled:
            _size = os.environ.get("DATABASE_POOL_MAX_SIZE")  # psycopg_pool's default: 4
            _db["OPTIONS"] = {**_db["OPTIONS"], "pool": {"max_size": int(_size)} if _size else True}

# DATABASE_MONITOR_USER (and DATABASE_MONITOR_PASSWORD): replication monitoring (the admin
# page, /metrics, replication_status, the beat task) connects as this role, pg_monitor only,
# through an alias of its own per server ("<alias>-monitor"), so the application's role
# needs no monitoring grant (PGREPLICA["MONITORING_DATABASES"]).
MONITORING_DATABASES: dict[str, str] = {}
if os.environ.get("DATABASE_MONITOR_USER"):
    for _alias in list(DATABASES):
        _options = {k: v for k, v in DATABASES[_alias]["OPTIONS"].items() if k != "pool"}
        DATABASES[f"{_alias}-monitor"] = {
            **DATABASES[_alias],
            "USER": os.environ["DATABASE_MONITOR_USER"],
            "PASSWORD": os.environ.get("DATABASE_MONITOR_PASSWORD", ""),
            "OPTIONS": _options,
            "CONN_MAX_AGE": 0,
            "TEST": {"MIRROR": "default"},
        }
        MONITORING_DATABASES[_alias] = f"{_alias}-monitor"

DATABASE_ROUTERS = ["django_pgreplica.routers.ReplicaRouter"]

PGREPLICA: dict[str, Any] = {
    "PRIMARY": "default",
    "REPLICAS": [
        alias
        for alias in DATABASES
        if alias != "default" and alias not in MONITORING_DATABASES.values()
    ],
    "READ_YOUR_WRITES": os.environ.get("PGREPLICA_READ_YOUR_WRITES", "lsn"),
    "STICKY_SECONDS": 5.0,
    "MAX_LAG_SECONDS": 30.0,
    "HEALTH_CHECK_INTERVAL": 1.0,
    "FAILURE_THRESHOLD": 5,
    "RESET_TIMEOUT": 60.0,
    "LAG_WARNING_SECONDS": 5.0,
    "LAG_CRITICAL_SECONDS": 30.0,
    "LAG_CRITICAL_BYTES": 100 * 1024 * 1024,
    "MONITORING_DATABASES": MONITORING_DATABASES,
}

# Shared replica health and fleet-wide routing counts (PGREPLICA["CACHE"]) when a Redis URL
# is given: what one worker learns about a replica spares the others, and /metrics from any
# worker counts the reads of all of them.
PGREPLICA_CACHE_URL = os.environ.get("PGREPLICA_CACHE_URL", "")
CACHES: dict[str, Any] = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if PGREPLICA_CACHE_URL:
    CACHES["pgreplica"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": PGREPLICA_CACHE_URL,
        "KEY_PREFIX": os.environ.get("PGREPLICA_CACHE_PREFIX", "demo"),
    }
    PGREPLICA["CACHE"] = "pgreplica"

# --- /metrics -----------------------------------------------------------------------------
# On a port of its own when one is given (django-prometheus's export port, started in each
# process that loads Django: set these for the web server only), and then not on the site's
# port (testproject/urls.py): Prometheus reaches it, visitors don't. Under gunicorn each
# worker takes the first free port of the range ("8001-8008"), docker/gunicorn.conf.py.
if _ports := os.environ.get("PROMETHEUS_METRICS_EXPORT_PORT_RANGE", ""):
    _first, _, _last = _ports.partition("-")
    PROMETHEUS_METRICS_EXPORT_PORT_RANGE = range(int(_first), int(_last or _first) + 1)
if _port := os.environ.get("PROMETHEUS_METRICS_EXPORT_PORT", ""):
    PROMETHEUS_METRICS_EXPORT_PORT = int(_port)
PROMETHEUS_METRICS_EXPORT_ADDRESS = os.environ.get("PROMETHEUS_METRICS_EXPORT_ADDRESS", "127.0.0.1")

# Behind HTTPS, DJANGO_SECURE_COOKIES=1: the session, CSRF and read-your-writes cookies
# (PGREPLICA["COOKIE_SECURE"] follows SESSION_COOKIE_SECURE) are never sent in clear.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []  # demo credentials are admin/admin

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
WHITENOISE_USE_FINDERS = True  # no collectstatic step needed for the demo

LOGIN_URL = "admin:login"

# --- Celery ------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# Tests and one-off scripts can run tasks inline without a broker.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULE = {
    "pgreplica-monitor-replication": {
        "task": "django_pgreplica.tasks.monitor_replication",
        "schedule": 60.0,
    },
}

# --- Logging -----------------------------------------------------------------------------
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        # Replaces Django's own console logger, which would print every line twice here.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Routing decisions, circuit transitions and lag alerts.
        "django_pgreplica": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "testproject": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
