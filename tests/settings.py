"""Settings for the library's own tests: only what django-pgreplica and the tests need.

The demo shop's app (``testproject.shop``) supplies the models and views the tests read and
write through; its environment-driven settings (``testproject/settings.py``) are the demo's
and are not used here. The pytest plugin points ``default`` and the replica aliases at its
own cluster, so the addresses below are placeholders.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import django

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

# A worker process a test starts reaches the same test databases (the plugin repoints them
# only in the pytest process) and may run with other PGREPLICA values (JSON objects).
for _alias, _params in json.loads(os.environ.get("PGREPLICA_TEST_DATABASES", "{}")).items():
    DATABASES[_alias].update(_params)
PGREPLICA.update(json.loads(os.environ.get("PGREPLICA_TEST_OVERRIDES", "{}")))

# django.tasks with a real worker (db_worker): django-tasks-db's database backend, with the
# django-tasks backport before Django 6. Its own alias: "default" stays the immediate one.
_TASKS = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
if importlib.util.find_spec("django_tasks_db") and importlib.util.find_spec(_TASKS):
    if _TASKS == "django_tasks":
        INSTALLED_APPS.append(_TASKS)  # the backport is an app; django.tasks is not
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {
        "default": {"BACKEND": f"{_TASKS}.backends.immediate.ImmediateBackend"},
        "database": {"BACKEND": "django_tasks_db.DatabaseBackend"},
    }

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
