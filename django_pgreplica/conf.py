"""The ``PGREPLICA`` setting: one schema that both the runtime and the system checks use.

Each :class:`Option` says its default and what a valid value is. :func:`get_settings`
parses the user's dict once per settings change (``setting_changed`` clears the cache), so
``override_settings`` works and the router's hot path pays a function call, not a parse. An
invalid value falls back to its default at run time (logged) and is reported by
``manage.py check`` as ``django_pgreplica.E006`` with the same wording.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Literal

from django.conf import settings as django_settings
from django.core.signals import setting_changed

logger = logging.getLogger("django_pgreplica.conf")

ReadYourWrites = Literal["lsn", "time", "off"]
READ_YOUR_WRITES_MODES: tuple[str, ...] = ("lsn", "time", "off")
SAMESITE_VALUES = ("Lax", "Strict", "None", None, False)
# "client": a client's token (cookie/header); "user": also per logged-in user, in CACHE
READ_YOUR_WRITES_SCOPES: tuple[str, ...] = ("client", "user")


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _non_negative(value: Any) -> bool:
    return _number(value) and value >= 0


def _aliases(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


@dataclass(frozen=True)
class Option:
    key: str
    default: Any
    expected: str  # completes "Expected ...": the check's hint and the runtime's log line
    valid: Callable[[Any], bool]


OPTIONS: tuple[Option, ...] = (
    Option("PRIMARY", "default", "a DATABASES alias", _text),
    # None: every DATABASES alias other than PRIMARY
    Option("REPLICAS", None, "a list of DATABASES aliases, or None for all others", _aliases),
    Option(
        "READ_YOUR_WRITES",
        "lsn",
        "one of " + ", ".join(map(repr, READ_YOUR_WRITES_MODES)),
        lambda v: v in READ_YOUR_WRITES_MODES,
    ),
    Option(
        "READ_YOUR_WRITES_SCOPE",
        "client",
        "one of " + ", ".join(map(repr, READ_YOUR_WRITES_SCOPES)),
        lambda v: v in READ_YOUR_WRITES_SCOPES,
    ),
    Option("STICKY_SECONDS", 5.0, "a number of seconds > 0", _positive),
    Option(
        "MAX_LAG_SECONDS",
        30.0,
        "a number of seconds >= 0, or None for no limit",
        lambda v: v is None or _non_negative(v),
    ),
    Option("HEALTH_CHECK_INTERVAL", 1.0, "a number of seconds > 0", _positive),
    Option(
        "FAILURE_THRESHOLD",
        5,
        "an integer >= 1",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    ),
    Option("RESET_TIMEOUT", 60.0, "a number of seconds > 0", _positive),
    # A recovered replica's share of reads grows over this long (0: full share at once).
    Option("RAMP_SECONDS", 5.0, "a number of seconds >= 0", _non_negative),
    # How long, in total per request or task, reads may wait for a replica to replay the
    # client's token before going to the primary (0: never wait).
    Option("REPLAY_WAIT_SECONDS", 0.02, "a number of seconds >= 0", _non_negative),
    # How long a connection to the primary keeps trying while no server takes it (a
    # failover: Patroni's switchover takes 2-4 s) before the request fails (0: at once).
    Option("PRIMARY_WAIT_SECONDS", 5.0, "a number of seconds >= 0", _non_negative),
    Option("LAG_WARNING_SECONDS", 5.0, "a number of seconds >= 0", _non_negative),
    Option("LAG_CRITICAL_SECONDS", 30.0, "a number of seconds >= 0", _non_negative),
    Option("LAG_CRITICAL_BYTES", 100 * 1024 * 1024, "a number of bytes >= 0", _non_negative),
    Option("COOKIE_NAME", "pgreplica", "a non-empty string", _text),
    Option("HEADER_NAME", "X-PgReplica-Token", "a non-empty string", _text),
    # None: follow SESSION_COOKIE_SECURE
    Option(
        "COOKIE_SECURE",
        None,
        "True, False, or None to follow SESSION_COOKIE_SECURE",
        lambda v: v in (None, True, False),
    ),
    Option(
        "COOKIE_SAMESITE",
        "Lax",
        "one of " + ", ".join(map(repr, SAMESITE_VALUES)),
        lambda v: v in SAMESITE_VALUES,
    ),
    # A CACHES alias for state shared by every process and host (replica health); None:
    # each process keeps its own.
    Option(
        "CACHE",
        None,
        "None, or the name of a CACHES alias",
        lambda v: v is None or _text(v),
    ),
    Option("METRICS_CACHE_SECONDS", 5.0, "a number of seconds >= 0", _non_negative),
    Option(
        "SAMPLE_RETENTION_HOURS",
        24.0,
        "a number of hours (0 or less keeps samples forever)",
        _number,
    ),
    # alias -> application_name in the primary's pg_stat_replication (monitoring only; by
    # default matched through the replica's slot, receiver name or address)
    Option(
        "REPLICA_APPLICATION_NAMES",
        {},
        "a dict of replica alias -> application_name",
        lambda v: isinstance(v, dict),
    ),
    # PRIMARY or replica alias -> the DATABASES alias replication monitoring (the admin
    # page, /metrics, replication_status, monitor_replication) connects with instead: the
    # same server as a role with pg_monitor, so the application's role needs no grant.
    Option(
        "MONITORING_DATABASES",
        {},
        "a dict of PRIMARY or replica alias -> the DATABASES alias monitoring uses for it",
        lambda v: isinstance(v, dict) and all(_text(k) and _text(a) for k, a in v.items()),
    ),
)
SCHEMA: dict[str, Option] = {option.key: option for option in OPTIONS}
DEFAULTS: dict[str, Any] = {option.key: option.default for option in OPTIONS}


# An LSN token is needed until every replica that could answer its client has replayed the
# write, and nothing bounds that: a lagging replica is excluded by MAX_LAG_SECONDS, but one
# cut off from the primary, or a last-resort read while the primary is down, is not. So a
# token stays in force until replayed, at most a day; its cookie is dropped as soon as every
# replica has replayed it, and checking a replayed token costs one comparison.
LSN_TOKEN_MAX_SECONDS = 86400.0


@dataclass(frozen=True)
class Settings:
    primary: str
    replicas: tuple[str, ...]
    read_your_writes: str
    read_your_writes_scope: str
    sticky_seconds: float
    max_lag_seconds: float | None
    health_check_interval: float
    failure_threshold: int
    reset_timeout: float
    ramp_seconds: float
    replay_wait_seconds: float
    primary_wait_seconds: float
    lag_warning_seconds: float
    lag_critical_seconds: float
    lag_critical_bytes: int
    cookie_name: str
    header_name: str
    cookie_secure: bool
    cookie_samesite: str | bool | None
    metrics_cache_seconds: float
    sample_retention_hours: float
    cache: str | None
    monitoring_databases: Mapping[str, str]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def per_user(self) -> bool:
        """Remember write positions per logged-in user (READ_YOUR_WRITES_SCOPE="user"; it
        needs CACHE: without one, check E008 says so and only the client's token counts)."""
        return (
            self.read_your_writes_scope == "user"
            and self.cache is not None
            and self.read_your_writes != "off"
        )

    @property
    def header_meta_key(self) -> str:
        """The ``request.META`` key Django uses for :attr:`header_name`."""
        return "HTTP_" + self.header_name.upper().replace("-", "_")


def user_settings() -> Any:
    """``PGREPLICA`` as the project wrote it (maybe not even a dict)."""
    value = getattr(django_settings, "PGREPLICA", None)
    return {} if value is None else value


def raw_settings() -> dict[str, Any]:
    """``PGREPLICA`` merged over the defaults, unvalidated (for the system checks)."""
    user = user_settings()
    merged = dict(DEFAULTS)
    if isinstance(user, Mapping):
        merged.update(user)
    return merged


def invalid_keys(raw: Mapping[str, Any]) -> list[str]:
    """The known keys whose value the schema rejects."""
    return [option.key for option in OPTIONS if not option.valid(raw[option.key])]


def replica_aliases(value: Any, primary: Any, monitoring: Any = None) -> tuple[str, ...]:
    """``REPLICAS`` as a tuple of aliases; None means every other DATABASES alias (but
    the ones MONITORING_DATABASES names for monitoring)."""
    if value is None:
        others = set(monitoring.values()) if isinstance(monitoring, Mapping) else set()
        return tuple(
            alias for alias in django_settings.DATABASES if alias != primary and alias not in others
        )
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _build() -> Settings:
    raw = raw_settings()
    values = dict(raw)
    for key in invalid_keys(raw):
        option = SCHEMA[key]
        logger.error(
            "PGREPLICA[%r] = %r is invalid: expected %s (see manage.py check); using %r",
            key,
            raw[key],
            option.expected,
            option.default,
        )
        values[key] = option.default
    secure = values["COOKIE_SECURE"]
    if secure is None:
        secure = bool(getattr(django_settings, "SESSION_COOKIE_SECURE", False))
    max_lag = values["MAX_LAG_SECONDS"]
    primary = values["PRIMARY"]
    return Settings(
        primary=primary,
        replicas=replica_aliases(values["REPLICAS"], primary, values["MONITORING_DATABASES"]),
        read_your_writes=values["READ_YOUR_WRITES"],
        read_your_writes_scope=values["READ_YOUR_WRITES_SCOPE"],
        sticky_seconds=float(values["STICKY_SECONDS"]),
        max_lag_seconds=None if max_lag is None else float(max_lag),
        health_check_interval=float(values["HEALTH_CHECK_INTERVAL"]),
        failure_threshold=int(values["FAILURE_THRESHOLD"]),
        reset_timeout=float(values["RESET_TIMEOUT"]),
        ramp_seconds=float(values["RAMP_SECONDS"]),
        replay_wait_seconds=float(values["REPLAY_WAIT_SECONDS"]),
        primary_wait_seconds=float(values["PRIMARY_WAIT_SECONDS"]),
        lag_warning_seconds=float(values["LAG_WARNING_SECONDS"]),
        lag_critical_seconds=float(values["LAG_CRITICAL_SECONDS"]),
        lag_critical_bytes=int(values["LAG_CRITICAL_BYTES"]),
        cookie_name=values["COOKIE_NAME"],
        header_name=values["HEADER_NAME"],
        cookie_secure=bool(secure),
        cookie_samesite=values["COOKIE_SAMESITE"],
        metrics_cache_seconds=float(values["METRICS_CACHE_SECONDS"]),
        sample_retention_hours=float(values["SAMPLE_RETENTION_HOURS"]),
        cache=values["CACHE"],
        monitoring_databases=dict(values["MONITORING_DATABASES"]),
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
