"""Settings for the library's own tests: only what django-pgreplica and the tests need.

The demo shop's app (``testproject.shop``) supplies the models and views the tests read and
write through; its environment-driven settings (``testproject/settings.py``) are the demo's
and are not used here. The pytest plugin points ``default`` and the replica aliases at its
own cluster, so the addresses below are placeholders.
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "django-pgreplica-tests"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "testproject.urls"
STATIC_URL = "static/"
LOGIN_URL = "admin:login"

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
    "django_pgreplica.middleware.StickyPrimaryMiddleware",  # outermost, as documented
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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


def _database(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": port,
        "NAME": "pgreplica",
        "USER": "postgres",
        **extra,
    }


# Placeholders: django_pgreplica.testing.plugin repoints these at its cluster.
DATABASES = {
    "default": _database(64432, OPTIONS={"connect_timeout": 5}),
    "replica": _database(64433, OPTIONS={"connect_timeout": 2}, TEST={"MIRROR": "default"}),
    "replica2": _database(64434, OPTIONS={"connect_timeout": 2}, TEST={"MIRROR": "default"}),
}
DATABASE_ROUTERS = ["django_pgreplica.routers.ReplicaRouter"]
PGREPLICA: dict[str, Any] = {"PRIMARY": "default", "REPLICAS": ["replica", "replica2"]}

# Celery: a real broker for the tests that start a worker; the demo's app reads these.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULE = {
    "pgreplica-monitor-replication": {
        "task": "django_pgreplica.tasks.monitor_replication",
        "schedule": 60.0,
    },
}

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_pgreplica": {"level": "INFO"}},
}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Shared replica health (PGREPLICA["CACHE"]) in the tests that turn it on. Its own key
    # prefix per test run (inherited by the processes it starts): another stack on the same
    # Redis, whose replicas are also called "replica", must not tell this one about its own.
    "shared": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": os.environ.setdefault(
            "PGREPLICA_TEST_CACHE_PREFIX", f"pgreplica-tests-{os.getpid()}"
        ),
    },
}
