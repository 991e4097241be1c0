"""Typed access to the ``PGREPLICA`` setting, read in one place.

Values are parsed once per settings change (``setting_changed`` clears the cache), so
``override_settings`` works and the router's hot path pays a function call, not a parse.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings as django_settings
from django.core.signals import setting_changed

logger = logging.getLogger("django_pgreplica.conf")

ReadYourWrites = Literal["lsn", "time", "off"]
READ_YOUR_WRITES_MODES: tuple[str, ...] = ("lsn", "time", "off")

DEFAULTS: dict[str, Any] = {
    "PRIMARY": "default",
    "REPLICAS": None,  # None: every DATABASES alias other than PRIMARY
    "READ_YOUR_WRITES": "lsn",
    "STICKY_SECONDS": 5.0,
    "MAX_LAG_SECONDS": 30.0,
    "HEALTH_CHECK_INTERVAL": 1.0,
    "FAILURE_THRESHOLD": 5,
    "RESET_TIMEOUT": 60.0,
    "LAG_WARNING_SECONDS": 5.0,
    "LAG_CRITICAL_SECONDS": 30.0,
    "LAG_CRITICAL_BYTES": 100 * 1024 * 1024,
    "COOKIE_NAME": "pgreplica",
    "HEADER_NAME": "X-PgReplica-Token",
    "COOKIE_SECURE": None,  # None: follow SESSION_COOKIE_SECURE
    "COOKIE_SAMESITE": "Lax",
    "METRICS_CACHE_SECONDS": 5.0,
    "SAMPLE_RETENTION_HOURS": 24.0,
    # alias -> application_name in the primary's pg_stat_replication (monitoring only;
    # by default matched through the replica's slot, receiver name or address)
    "REPLICA_APPLICATION_NAMES": {},
}


@dataclass(frozen=True)
class Settings:
    primary: str
    replicas: tuple[str, ...]
    read_your_writes: str
    sticky_seconds: float
    max_lag_seconds: float | None
    health_check_interval: float
    failure_threshold: int
    reset_timeout: float
    lag_warning_seconds: float
    lag_critical_seconds: float
    lag_critical_bytes: int
    cookie_name: str
    header_name: str
    cookie_secure: bool
    cookie_samesite: str | bool | None
    metrics_cache_seconds: float
    sample_retention_hours: float
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def header_meta_key(self) -> str:
        """The ``request.META`` key Django uses for :attr:`header_name`."""
        return "HTTP_" + self.header_name.upper().replace("-", "_")


def replica_aliases(value: Any, primary: Any) -> tuple[str, ...]:
    """``REPLICAS`` as a tuple of aliases; None means every other DATABASES alias."""
    if value is None:
        return tuple(alias for alias in django_settings.DATABASES if alias != primary)
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def raw_settings() -> dict[str, Any]:
    """``PGREPLICA`` merged over the defaults, unvalidated (for the system checks)."""
    user = getattr(django_settings, "PGREPLICA", None) or {}
    merged = dict(DEFAULTS)
    if isinstance(user, Mapping):
        merged.update(user)
    return merged


SAMESITE_VALUES = ("Lax", "Strict", "None", None, False)


class _Reader:
    """Reads values off the raw settings; an invalid one falls back to its default.

    ``manage.py check`` reports it (django_pgreplica.E006); a server started without the
    checks keeps serving with the default instead of failing every read.
    """

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def _fallback(self, key: str) -> Any:
        logger.error(
            "PGREPLICA[%r] = %r is invalid (see manage.py check); using the default %r",
            key,
            self.raw[key],
            DEFAULTS[key],
        )
        return DEFAULTS[key]

    def number(self, key: str, cast: type[float] | type[int] = float) -> Any:
        value = self.raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            value = self._fallback(key)
        return cast(value)

    def optional_number(self, key: str) -> float | None:
        return None if self.raw[key] is None else self.number(key)

    def choice(self, key: str, allowed: tuple[Any, ...]) -> Any:
        value = self.raw[key]
        return value if value in allowed else self._fallback(key)

    def text(self, key: str) -> str:
        value = self.raw[key]
        return value if isinstance(value, str) and value else str(self._fallback(key))


def _build() -> Settings:
    raw = raw_settings()
    read = _Reader(raw)
    primary = str(raw["PRIMARY"])
    secure = raw["COOKIE_SECURE"]
    if not isinstance(secure, bool):
        secure = bool(getattr(django_settings, "SESSION_COOKIE_SECURE", False))
    replicas = raw["REPLICAS"]
    if not isinstance(replicas, (list, tuple, str, type(None))):
        replicas = read._fallback("REPLICAS")
    return Settings(
        primary=primary,
        replicas=replica_aliases(replicas, primary),
        read_your_writes=read.choice("READ_YOUR_WRITES", READ_YOUR_WRITES_MODES),
        sticky_seconds=read.number("STICKY_SECONDS"),
        max_lag_seconds=read.optional_number("MAX_LAG_SECONDS"),
        health_check_interval=read.number("HEALTH_CHECK_INTERVAL"),
        failure_threshold=max(1, read.number("FAILURE_THRESHOLD", int)),
        reset_timeout=read.number("RESET_TIMEOUT"),
        lag_warning_seconds=read.number("LAG_WARNING_SECONDS"),
        lag_critical_seconds=read.number("LAG_CRITICAL_SECONDS"),
        lag_critical_bytes=read.number("LAG_CRITICAL_BYTES", int),
        cookie_name=read.text("COOKIE_NAME"),
        header_name=read.text("HEADER_NAME"),
        cookie_secure=secure,
        cookie_samesite=read.choice("COOKIE_SAMESITE", SAMESITE_VALUES),
        metrics_cache_seconds=read.number("METRICS_CACHE_SECONDS"),
        sample_retention_hours=read.number("SAMPLE_RETENTION_HOURS"),
        raw=raw,
    )


_cache: list[Settings] = []


def get_settings() -> Settings:
    """The current settings; rebuilt after any settings change."""
    try:
        return _cache[0]
    except IndexError:
        built = _build()
        _cache[:] = [built]
        return built


def _clear(**kwargs: Any) -> None:
    if kwargs.get("setting") in ("PGREPLICA", "DATABASES", "SESSION_COOKIE_SECURE"):
        _cache.clear()


setting_changed.connect(_clear, dispatch_uid="django_pgreplica.conf.clear")
