"""One settings schema: what the checks reject is exactly what the runtime replaces."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core.checks import run_checks

from django_pgreplica.conf import DEFAULTS, OPTIONS, SCHEMA, get_settings
from tests.support import pgreplica_settings

BAD: dict[str, list[Any]] = {
    "PRIMARY": ["", 5, None],
    "REPLICAS": [5, [1], {"a": 1}],
    "READ_YOUR_WRITES": ["always", None],
    "READ_YOUR_WRITES_SCOPE": ["device", "User", None],
    "STICKY_SECONDS": [0, -1, "5", True],
    "MAX_LAG_SECONDS": [-1, "30"],
    "HEALTH_CHECK_INTERVAL": [0, None],
    "FAILURE_THRESHOLD": [0, 2.5, True, "3"],
    "RESET_TIMEOUT": [-3, 0],
    "REPLAY_WAIT_SECONDS": [-0.1, "50ms"],
    "PRIMARY_WAIT_SECONDS": [-1, "5s", True],
    "RAMP_SECONDS": [-1, None],
    "LAG_WARNING_SECONDS": [-1],
    "LAG_CRITICAL_SECONDS": ["x"],
    "LAG_CRITICAL_BYTES": [-1],
    "COOKIE_NAME": ["", None],
    "HEADER_NAME": [""],
    "COOKIE_SECURE": ["yes", 1.5],
    "COOKIE_SAMESITE": ["bogus"],
    "METRICS_CACHE_SECONDS": ["5s"],
    "SAMPLE_RETENTION_HOURS": ["a day"],
    "REPLICA_APPLICATION_NAMES": [["replica1"]],
    "CACHE": ["", 5],
    "MONITORING_DATABASES": [["default-monitor"], {"default": ""}, {"default": 5}],
}
GOOD: dict[str, list[Any]] = {
    "MAX_LAG_SECONDS": [None, 0, 12.5],
    "STICKY_SECONDS": [0.1, 5],
    "FAILURE_THRESHOLD": [1, 10],
    "SAMPLE_RETENTION_HOURS": [0, -1, 48],
    "COOKIE_SAMESITE": ["Strict", None, False],
    "READ_YOUR_WRITES_SCOPE": ["client", "user"],
    "REPLICAS": [None, "replica", ["replica", "replica2"], ("replica",)],
}


def test_every_option_has_bad_examples() -> None:
    assert set(BAD) == set(SCHEMA)
    assert list(DEFAULTS) == [option.key for option in OPTIONS]


def test_every_default_is_valid() -> None:
    for option in OPTIONS:
        assert option.valid(option.default), option.key


@pytest.mark.parametrize(
    ("key", "value"), [(key, value) for key, values in BAD.items() for value in values]
)
def test_an_invalid_value_is_a_check_error_and_the_default_at_run_time(
    key: str, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert not SCHEMA[key].valid(value)
    caplog.set_level(logging.ERROR, logger="django_pgreplica.conf")
    with pgreplica_settings(**{key: value}):
        messages = [m for m in run_checks() if m.id == "django_pgreplica.E006"]
        settings = get_settings()
    assert [m.msg for m in messages] == [f"PGREPLICA[{key!r}] = {value!r} is invalid."]
    assert SCHEMA[key].expected in str(messages[0].hint)
    assert f"PGREPLICA[{key!r}]" in caplog.text and SCHEMA[key].expected in caplog.text
    assert settings.raw[key] == value  # what the user wrote...
    with pgreplica_settings(**{key: SCHEMA[key].default}):
        expected = get_settings()
    attribute = key.lower()
    if hasattr(settings, attribute):  # ...and what runs: the default
        assert getattr(settings, attribute) == getattr(expected, attribute)


@pytest.mark.parametrize(
    ("key", "value"), [(key, value) for key, values in GOOD.items() for value in values]
)
def test_valid_values_are_taken(key: str, value: Any) -> None:
    assert SCHEMA[key].valid(value)
    with pgreplica_settings(**{key: value}):
        assert not [m for m in run_checks() if m.id == "django_pgreplica.E006"]


def test_runtime_values_are_typed() -> None:
    with pgreplica_settings(STICKY_SECONDS=3, FAILURE_THRESHOLD=2, MAX_LAG_SECONDS=None):
        settings = get_settings()
    assert settings.sticky_seconds == 3.0 and isinstance(settings.sticky_seconds, float)
    assert settings.failure_threshold == 2 and settings.max_lag_seconds is None
    with pgreplica_settings(STICKY_SECONDS=0, FAILURE_THRESHOLD=0):
        settings = get_settings()
    assert settings.sticky_seconds == DEFAULTS["STICKY_SECONDS"]
    assert settings.failure_threshold == DEFAULTS["FAILURE_THRESHOLD"]
