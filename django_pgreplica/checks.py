"""System checks: misconfiguration is reported by ``manage.py check``, with ids and hints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string

from .conf import DEFAULTS, SCHEMA, invalid_keys, raw_settings, replica_aliases, user_settings

ROUTER_PATH = "django_pgreplica.routers.ReplicaRouter"
MIDDLEWARE_PATH = "django_pgreplica.middleware.StickyPrimaryMiddleware"
SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
POSTGRES_ENGINES = ("postgresql", "postgis")  # django-prometheus's wrapper ends the same
MAX_CONNECT_TIMEOUT = 10


@register()
def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    user = user_settings()
    if not isinstance(user, dict):
        return [
            Error(
                "PGREPLICA must be a dict.",
                hint="Set PGREPLICA = {'PRIMARY': 'default', 'REPLICAS': ['replica']}.",
                id="django_pgreplica.E001",
            )
        ]
    errors: list[CheckMessage] = []
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        errors.append(
            Warning(
                f"PGREPLICA has unknown keys: {', '.join(unknown)}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}. Check the spelling.",
                id="django_pgreplica.W001",
            )
        )
    raw = raw_settings()
    errors += _check_aliases(raw)
    errors += _check_values(raw)
    errors += _check_cache(raw)
    errors += _check_monitoring(raw)
    return errors


def _check_monitoring(raw: dict[str, Any]) -> list[CheckMessage]:
    mapping = raw["MONITORING_DATABASES"]
    if not SCHEMA["MONITORING_DATABASES"].valid(mapping) or not SCHEMA["REPLICAS"].valid(
        raw["REPLICAS"]
    ):
        return []  # E006 says what is wrong
    primary = raw["PRIMARY"]
    routed = {primary, *replica_aliases(raw["REPLICAS"], primary, mapping)}
    databases = settings.DATABASES
    errors: list[CheckMessage] = []
    for alias, monitor in mapping.items():
        problem = None
        if alias not in routed:
            problem = f"{alias!r} is neither PGREPLICA['PRIMARY'] nor a replica alias"
        elif monitor not in databases:
            problem = f"{monitor!r} is not a DATABASES alias"
        elif monitor in routed:
            problem = f"{monitor!r} is an alias the router sends queries to"
        if problem:
            errors.append(
                Error(
                    f"PGREPLICA['MONITORING_DATABASES'][{alias!r}] = {monitor!r}: {problem}.",
                    hint="Map the primary and each replica alias to a DATABASES entry of its "
                    "own for the same server, with the monitoring role's USER and PASSWORD.",
                    id="django_pgreplica.E009",
                )
            )
    return errors


# Backends whose entries live in one process: sharing health through them shares nothing.
PROCESS_LOCAL_CACHES = ("locmem.LocMemCache", "dummy.DummyCache")


def _check_cache(raw: dict[str, Any]) -> list[CheckMessage]:
    alias = raw["CACHE"]
    if raw["READ_YOUR_WRITES_SCOPE"] == "user" and alias is None:
        return [
            Error(
                "PGREPLICA['READ_YOUR_WRITES_SCOPE'] = 'user' needs PGREPLICA['CACHE']: "
                "without it only the client's own token counts.",
                hint="Set CACHE to a CACHES alias every process shares (e.g. a "
                "django.core.cache.backends.redis.RedisCache), or use the scope 'client'.",
                id="django_pgreplica.E008",
            )
        ]
    if not SCHEMA["CACHE"].valid(alias) or alias is None:
        return []
    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        return [
            Error(
                f"PGREPLICA['CACHE'] = {alias!r} is not a CACHES alias.",
                hint=f"Use one of: {', '.join(caches) or '(no CACHES configured)'}, e.g. a "
                "django.core.cache.backends.redis.RedisCache all processes share.",
                id="django_pgreplica.E007",
            )
        ]
    backend = str(caches[alias].get("BACKEND", ""))
    if backend.endswith(PROCESS_LOCAL_CACHES):
        return [
            Warning(
                f"PGREPLICA['CACHE'] = {alias!r} uses {backend}, which each process keeps "
                "for itself: replica health and per-user write positions are not shared.",
                hint="Point CACHE at a cache every process reaches (Redis, Memcached, "
                "the database cache).",
                id="django_pgreplica.W010",
            )
        ]
    return []


def _check_aliases(raw: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    databases = settings.DATABASES
    primary = raw["PRIMARY"]
    if primary not in databases:
        errors.append(
            Error(
                f"PGREPLICA['PRIMARY'] = {primary!r} is not a DATABASES alias.",
                hint=f"Use one of: {', '.join(databases)}.",
                id="django_pgreplica.E002",
            )
        )
    elif databases[primary].get("ATOMIC_REQUESTS"):
        errors.append(
            Warning(
                f"DATABASES[{primary!r}] has ATOMIC_REQUESTS: every view runs inside a "
                "transaction on the primary, so every read goes to the primary.",
                hint="Turn ATOMIC_REQUESTS off and use transaction.atomic() where writes need "
                "it, or mark read-only views with @transaction.non_atomic_requests.",
                id="django_pgreplica.W008",
            )
        )
    if not SCHEMA["REPLICAS"].valid(raw["REPLICAS"]):
        return errors  # E006 says what is wrong with it
    replicas = replica_aliases(raw["REPLICAS"], primary, raw["MONITORING_DATABASES"])
    for alias in replicas:
        if alias == primary:
            errors.append(
                Error(
                    f"Replica alias {alias!r} is also PGREPLICA['PRIMARY'].",
                    hint="Writes would go to a replica list member; remove it from REPLICAS.",
                    id="django_pgreplica.E004",
                )
            )
        elif alias not in databases:
            errors.append(
                Error(
                    f"PGREPLICA['REPLICAS'] names {alias!r}, which is not a DATABASES alias.",
                    hint=f"Add DATABASES[{alias!r}] or remove it from REPLICAS.",
                    id="django_pgreplica.E003",
                )
            )
        else:
            errors += _check_replica_alias(alias, databases[alias])
    if not replicas:
        errors.append(
            Warning(
                "No replica aliases configured: every read goes to the primary.",
                hint="Add a DATABASES entry for each standby and list it in PGREPLICA['REPLICAS'].",
                id="django_pgreplica.W006",
            )
        )
    return errors


def _check_replica_alias(alias: str, config: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    engine = str(config.get("ENGINE", ""))
    if not any(engine.endswith(name) for name in POSTGRES_ENGINES):
        errors.append(
            Warning(
                f"Replica alias {alias!r} uses ENGINE {engine!r}, not PostgreSQL.",
                hint="Use 'django.db.backends.postgresql' (or django-prometheus's wrapper).",
                id="django_pgreplica.W005",
            )
        )
    timeout = (config.get("OPTIONS") or {}).get("connect_timeout")
    try:
        too_long = timeout is None or float(timeout) <= 0 or float(timeout) > MAX_CONNECT_TIMEOUT
    except (TypeError, ValueError):
        too_long = True
    if too_long:
        errors.append(
            Warning(
                f"Replica alias {alias!r} has no short connect_timeout "
                f"(got {timeout!r}); an unreachable replica can hold a request for 130 s.",
                hint=f"Set DATABASES[{alias!r}]['OPTIONS']['connect_timeout'] = 2 "
                f"(seconds, at most {MAX_CONNECT_TIMEOUT}).",
                id="django_pgreplica.W004",
            )
        )
    return errors


def _check_values(raw: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = [
        Error(
            f"PGREPLICA[{key!r}] = {raw[key]!r} is invalid.",
            hint=f"Expected {SCHEMA[key].expected}; the default is {SCHEMA[key].default!r}.",
            id="django_pgreplica.E006",
        )
        for key in invalid_keys(raw)
    ]
    secure = raw["COOKIE_SECURE"]
    if secure is None:
        secure = getattr(settings, "SESSION_COOKIE_SECURE", False)
    if raw["COOKIE_SAMESITE"] == "None" and not secure:
        errors.append(
            Warning(
                "PGREPLICA['COOKIE_SAMESITE'] is 'None' but the token cookie is not Secure: "
                "browsers drop it, and clients lose read-your-writes across requests.",
                hint="Set PGREPLICA['COOKIE_SECURE'] = True (HTTPS only) or use 'Lax'.",
                id="django_pgreplica.W009",
            )
        )
    warn, crit = raw["LAG_WARNING_SECONDS"], raw["LAG_CRITICAL_SECONDS"]
    if (
        SCHEMA["LAG_WARNING_SECONDS"].valid(warn)
        and SCHEMA["LAG_CRITICAL_SECONDS"].valid(crit)
        and warn > crit
    ):
        errors.append(
            Warning(
                "PGREPLICA['LAG_WARNING_SECONDS'] is above LAG_CRITICAL_SECONDS.",
                hint="A warning threshold should come before the critical one.",
                id="django_pgreplica.W007",
            )
        )
    return errors


@register()
def check_router_and_middleware(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if not any(_is_router(entry) for entry in getattr(settings, "DATABASE_ROUTERS", [])):
        errors.append(
            Error(
                "ReplicaRouter is not in DATABASE_ROUTERS: reads never reach a replica.",
                hint=f"Add {ROUTER_PATH!r} to DATABASE_ROUTERS.",
                id="django_pgreplica.E005",
            )
        )
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH not in middleware:
        errors.append(
            Warning(
                "StickyPrimaryMiddleware is not in MIDDLEWARE: a client that writes may read "
                "stale data on its next request.",
                hint=f"Insert {MIDDLEWARE_PATH!r} at the start of MIDDLEWARE.",
                id="django_pgreplica.W002",
            )
        )
    elif SESSION_MIDDLEWARE in middleware and middleware.index(
        SESSION_MIDDLEWARE
    ) < middleware.index(MIDDLEWARE_PATH):
        errors.append(
            Warning(
                "StickyPrimaryMiddleware comes after SessionMiddleware: the session is saved "
                "after the token is taken, so users can look logged out under replica lag.",
                hint="Move StickyPrimaryMiddleware before SessionMiddleware (first is best).",
                id="django_pgreplica.W003",
            )
        )
    return errors


def _is_router(entry: Any) -> bool:
    from .routers import ReplicaRouter

    if isinstance(entry, str):
        if entry == ROUTER_PATH:
            return True
        try:
            entry = import_string(entry)
        except ImportError:
            return False
    cls = entry if isinstance(entry, type) else type(entry)
    return issubclass(cls, ReplicaRouter)


# A read on an open connection to a partitioned replica waits for the kernel's TCP
# retransmissions unless tcp_user_timeout (milliseconds) cuts them short.
MAX_TCP_USER_TIMEOUT_MS = 30000


@register()
def check_replica_waits(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W011 (a pool that waits longer than connect_timeout), W012 (persistent connections
    without tcp_user_timeout): what a hung or partitioned replica may cost a request."""
    raw = raw_settings()
    if not SCHEMA["REPLICAS"].valid(raw["REPLICAS"]):
        return []
    errors: list[CheckMessage] = []
    databases = settings.DATABASES
    for alias in replica_aliases(raw["REPLICAS"], raw["PRIMARY"], raw["MONITORING_DATABASES"]):
        config = databases.get(alias)
        if alias == raw["PRIMARY"] or not isinstance(config, dict):
            continue  # E003/E004
        errors += _check_pool_timeout(alias, config)
        errors += _check_tcp_user_timeout(alias, config)
    return errors


def _check_pool_timeout(alias: str, config: dict[str, Any]) -> list[CheckMessage]:
    from .routing.pool import bounded_timeout, pool_options

    options = config.get("OPTIONS") or {}
    pool = pool_options(options)
    if pool is None or "timeout" not in pool:
        return []  # not pooled, or bounded at app ready
    bound = bounded_timeout(options)
    timeout = pool["timeout"]
    try:
        too_long = isinstance(timeout, bool) or float(timeout) > bound
    except (TypeError, ValueError):
        too_long = True
    if not too_long:
        return []
    return [
        Warning(
            f"Replica alias {alias!r} has a pool timeout of {timeout!r} s, longer than its "
            f"connect_timeout ({bound:g} s): while the replica hangs or is down, a read waits "
            "that long for a pooled connection before going elsewhere.",
            hint=f"Remove 'timeout' from DATABASES[{alias!r}]['OPTIONS']['pool'] (the pool "
            f"then waits the connect_timeout) or set it to at most {bound:g}.",
            id="django_pgreplica.W011",
        )
    ]


def _check_tcp_user_timeout(alias: str, config: dict[str, Any]) -> list[CheckMessage]:
    options = config.get("OPTIONS") or {}
    max_age = config.get("CONN_MAX_AGE", 0)
    if options.get("pool"):
        kept = "a connection pool"
    elif max_age != 0:
        kept = f"CONN_MAX_AGE = {max_age!r}"
    else:
        return []  # a connection per request: connect_timeout bounds it (W004)
    value: Any = options.get("tcp_user_timeout")
    try:
        ok = not isinstance(value, bool) and 0 < int(value) <= MAX_TCP_USER_TIMEOUT_MS
    except (TypeError, ValueError):
        ok = False
    if ok:
        return []
    return [
        Warning(
            f"Replica alias {alias!r} keeps connections open ({kept}) without a short "
            f"OPTIONS['tcp_user_timeout'] (got {value!r}): a read on a connection to a "
            "partitioned replica waits until the kernel gives up, about 15 minutes with "
            "Linux's defaults, before it is rerun elsewhere.",
            hint=f"Add 'tcp_user_timeout': 10000 (milliseconds, at most "
            f"{MAX_TCP_USER_TIMEOUT_MS}) to DATABASES[{alias!r}]['OPTIONS'], with "
            "'keepalives_idle': 30, 'keepalives_interval': 10, 'keepalives_count': 3 "
            "so that idle connections to it are found dead before a read uses them.",
            id="django_pgreplica.W012",
        )
    ]
