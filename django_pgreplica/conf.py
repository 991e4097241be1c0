"""Typed access to the ``PGREPLICA`` setting, read in one place.

Values are parsed once per settings change (``setting_changed`` clears the cache), so
``override_settings`` works and the router's hot path pays a function call, not a parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings as django_settings
from django.core.signals import setting_changed

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
    cookie_samesite: str | None
    metrics_cache_seconds: float
    sample_retention_hours: float
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def header_meta_key(self) -> str:
        """The ``request.META`` key Django uses for :attr:`header_name`."""
        return "HTTP_" + self.header_name.upper().replace("-", "_")


def _replicas(value: Any, primary: str) -> tuple[str, ...]:
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


def _build() -> Settings:
    raw = raw_settings()
    primary = str(raw["PRIMARY"])
    max_lag = raw["MAX_LAG_SECONDS"]
    secure = raw["COOKIE_SECURE"]
    if secure is None:
        secure = bool(getattr(django_settings, "SESSION_COOKIE_SECURE", False))
    return Settings(
        primary=primary,
        replicas=_replicas(raw["REPLICAS"], primary),
        read_your_writes=str(raw["READ_YOUR_WRITES"]),
        sticky_seconds=float(raw["STICKY_SECONDS"]),
        max_lag_seconds=None if max_lag is None else float(max_lag),
        health_check_interval=float(raw["HEALTH_CHECK_INTERVAL"]),
        failure_threshold=int(raw["FAILURE_THRESHOLD"]),
        reset_timeout=float(raw["RESET_TIMEOUT"]),
        lag_warning_seconds=float(raw["LAG_WARNING_SECONDS"]),
        lag_critical_seconds=float(raw["LAG_CRITICAL_SECONDS"]),
        lag_critical_bytes=int(raw["LAG_CRITICAL_BYTES"]),
        cookie_name=str(raw["COOKIE_NAME"]),
        header_name=str(raw["HEADER_NAME"]),
        cookie_secure=bool(secure),
        cookie_samesite=raw["COOKIE_SAMESITE"],
        metrics_cache_seconds=float(raw["METRICS_CACHE_SECONDS"]),
        sample_retention_hours=float(raw["SAMPLE_RETENTION_HOURS"]),
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
