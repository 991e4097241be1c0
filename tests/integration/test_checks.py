"""System checks: each misconfiguration gets its id; the shipped settings pass clean."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_pgreplica.routers import ReplicaRouter
from tests.support import pgreplica_settings

ROUTER = "django_pgreplica.routers.ReplicaRouter"
STICKY = "django_pgreplica.middleware.StickyPrimaryMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"


def ids() -> set[str]:
    return {m.id for m in run_checks() if m.id and m.id.startswith("django_pgreplica.")}


def test_project_settings_pass() -> None:
    assert ids() == set()
    call_command("check", stdout=StringIO())


def test_checks_are_registered_with_manage_py_check() -> None:
    with pgreplica_settings(PRIMARY="nope"), pytest.raises(SystemCheckError) as error:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "django_pgreplica.E002" in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"PRIMARY": "nope"}, "django_pgreplica.E002"),
        ({"REPLICAS": ["ghost"]}, "django_pgreplica.E003"),
        ({"REPLICAS": 5}, "django_pgreplica.E006"),
        ({"REPLICAS": ["default"]}, "django_pgreplica.E004"),
        ({"READ_YOUR_WRITES": "always"}, "django_pgreplica.E006"),
        ({"STICKY_SECONDS": 0}, "django_pgreplica.E006"),
        ({"STICKY_SECONDS": "5"}, "django_pgreplica.E006"),
        ({"MAX_LAG_SECONDS": -1}, "django_pgreplica.E006"),
        ({"FAILURE_THRESHOLD": 0}, "django_pgreplica.E006"),
        ({"FAILURE_THRESHOLD": 2.5}, "django_pgreplica.E006"),
        ({"RESET_TIMEOUT": -3}, "django_pgreplica.E006"),
        ({"LAG_CRITICAL_BYTES": -1}, "django_pgreplica.E006"),
        ({"METRICS_CACHE_SECONDS": "5s"}, "django_pgreplica.E006"),
        ({"SAMPLE_RETENTION_HOURS": "a day"}, "django_pgreplica.E006"),
        ({"COOKIE_SAMESITE": "bogus"}, "django_pgreplica.E006"),
        ({"COOKIE_SECURE": "yes"}, "django_pgreplica.E006"),
        ({"COOKIE_NAME": ""}, "django_pgreplica.E006"),
        ({"REPLICA_APPLICATION_NAMES": ["replica1"]}, "django_pgreplica.E006"),
        ({"COOKIE_SAMESITE": "None", "COOKIE_SECURE": False}, "django_pgreplica.W009"),
        ({"STICKY_SECOND": 5}, "django_pgreplica.W001"),
        ({"CACHE": "nope"}, "django_pgreplica.E007"),
        ({"MONITORING_DATABASES": {"default": "ghost"}}, "django_pgreplica.E009"),
        ({"MONITORING_DATABASES": {"ghost": "default"}}, "django_pgreplica.E009"),
        ({"MONITORING_DATABASES": {"default": "replica"}}, "django_pgreplica.E009"),
        ({"MONITORING_DATABASES": ["default"]}, "django_pgreplica.E006"),
        ({"CACHE": "local"}, "django_pgreplica.W010"),
        ({"READ_YOUR_WRITES_SCOPE": "user"}, "django_pgreplica.E008"),
        ({"READ_YOUR_WRITES_SCOPE": "device"}, "django_pgreplica.E006"),
        ({"REPLICAS": []}, "django_pgreplica.W006"),
        ({"LAG_WARNING_SECONDS": 60, "LAG_CRITICAL_SECONDS": 30}, "django_pgreplica.W007"),
    ],
)
def test_bad_settings(overrides: dict[str, Any], expected: str) -> None:
    with pgreplica_settings(**overrides):
        assert expected in ids()


def test_pgreplica_must_be_a_dict() -> None:
    with override_settings(PGREPLICA=["default"]):
        assert "django_pgreplica.E001" in ids()


def test_user_scope_with_a_shared_cache_is_fine() -> None:
    with pgreplica_settings(READ_YOUR_WRITES_SCOPE="user", CACHE="shared"):
        assert ids() == set()


def test_max_lag_none_is_allowed() -> None:
    with pgreplica_settings(MAX_LAG_SECONDS=None):
        assert ids() == set()


def test_router_missing() -> None:
    with override_settings(DATABASE_ROUTERS=[]):
        assert "django_pgreplica.E005" in ids()


def test_router_subclass_counts() -> None:
    with override_settings(DATABASE_ROUTERS=["tests.integration.test_checks.MyRouter"]):
        assert "django_pgreplica.E005" not in ids()


def test_middleware_missing() -> None:
    with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != STICKY]):
        assert "django_pgreplica.W002" in ids()


def test_middleware_inside_session_middleware() -> None:
    rest = [m for m in settings.MIDDLEWARE if m != STICKY]
    placed = [*rest[: rest.index(SESSION) + 1], STICKY, *rest[rest.index(SESSION) + 1 :]]
    with override_settings(MIDDLEWARE=placed):
        assert "django_pgreplica.W003" in ids()


@pytest.mark.parametrize("timeout", [None, 0, 130, "soon"])
def test_replica_without_short_connect_timeout(timeout: Any) -> None:
    databases = {alias: dict(config) for alias, config in settings.DATABASES.items()}
    options = dict(databases["replica"].get("OPTIONS", {}))
    options.pop("connect_timeout", None)
    if timeout is not None:
        options["connect_timeout"] = timeout
    databases["replica"]["OPTIONS"] = options
    with override_settings(DATABASES=databases):
        messages = [m for m in run_checks() if m.id == "django_pgreplica.W004"]
    assert messages and "replica" in messages[0].msg and messages[0].hint


def test_every_message_has_a_hint() -> None:
    with pgreplica_settings(PRIMARY="nope", REPLICAS=["ghost"], STICKY_SECONDS=-1):
        messages = [m for m in run_checks() if m.id and m.id.startswith("django_pgreplica.")]
    assert messages and all(m.hint for m in messages)


class MyRouter(ReplicaRouter):
    pass


def test_atomic_requests_on_the_primary() -> None:
    databases = {alias: dict(config) for alias, config in settings.DATABASES.items()}
    databases["default"]["ATOMIC_REQUESTS"] = True
    with override_settings(DATABASES=databases):
        assert "django_pgreplica.W008" in ids()


def test_samesite_none_with_a_secure_cookie_is_fine() -> None:
    with pgreplica_settings(COOKIE_SAMESITE="None", COOKIE_SECURE=True):
        assert ids() == set()


def test_invalid_values_fall_back_to_defaults_at_run_time(caplog: pytest.LogCaptureFixture) -> None:
    """A server started without the checks keeps routing instead of failing every read."""
    from django_pgreplica.conf import get_settings

    with pgreplica_settings(
        METRICS_CACHE_SECONDS="5s", COOKIE_SAMESITE="bogus", READ_YOUR_WRITES="always"
    ):
        current = get_settings()
    assert current.metrics_cache_seconds == 5.0
    assert current.cookie_samesite == "Lax"
    assert current.read_your_writes == "lsn"
    assert "METRICS_CACHE_SECONDS" in caplog.text
