"""Replication monitoring: queries -> dataclasses -> OK / WARNING / CRITICAL evaluation.

:func:`check_replication` asks the primary (``pg_stat_replication``,
``pg_replication_slots``, settings) and every replica alias (the router's probe,
``pg_stat_wal_receiver``, settings), then evaluates it all into a :class:`Report`:

- a replica that is unreachable, promoted, or not streaming is CRITICAL, as is lag over
  LAG_CRITICAL_SECONDS or LAG_CRITICAL_BYTES; lag over LAG_WARNING_SECONDS, paused replay,
  or an open circuit is a WARNING;
- an unreachable primary makes the whole report UNKNOWN;
- a configuration audit lists departures from the PostgreSQL settings docs/postgresql.md
  recommends (advice only: it never changes the status).

The layers: :mod:`.queries` (I/O), :mod:`.types` (dataclasses), :mod:`.evaluate` and
:mod:`.audit` (pure), :mod:`.render` (text/JSON). How replica aliases are matched to
``pg_stat_replication`` rows is described in :mod:`.evaluate`. Run as a superuser or a
role granted ``pg_monitor`` (see :mod:`.queries`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from ..conf import Settings, get_settings
from ..db import one_line
from ..health import circuit_state
from ..routing import fleet, stats
from .evaluate import build_report
from .matching import match_standbys
from .members import expand
from .queries import QueryRunner, django_runner, observe_primary, observe_replica
from .render import render_text, report_to_dict
from .types import (
    AuditFinding,
    PrimaryObservation,
    ReplicaObservation,
    ReplicaReport,
    Report,
    RoutingView,
    ServerSetting,
    SlotReport,
    SlotRow,
    StandbyRow,
    Status,
    Thresholds,
    WalReceiver,
)

__all__ = [
    "AuditFinding",
    "PrimaryObservation",
    "QueryRunner",
    "ReplicaObservation",
    "ReplicaReport",
    "Report",
    "RoutingView",
    "ServerSetting",
    "SlotReport",
    "SlotRow",
    "StandbyRow",
    "Status",
    "Thresholds",
    "WalReceiver",
    "application_names",
    "build_report",
    "check_replication",
    "django_runner",
    "match_standbys",
    "render_text",
    "report_to_dict",
    "routing_view",
]

# alias -> slot name last seen in use by it, so a replica that is down now still has its
# (inactive, WAL-retaining) slot attributed to it. Per process, refreshed on every check.
_slot_memo: dict[str, str] = {}
_memo_lock = threading.Lock()


def application_names(settings: Settings) -> dict[str, str]:
    """``PGREPLICA["REPLICA_APPLICATION_NAMES"]``: alias -> pg_stat_replication name."""
    value = settings.raw.get("REPLICA_APPLICATION_NAMES") or {}
    if not isinstance(value, Mapping):
        return {}
    return {str(alias): str(name) for alias, name in value.items()}


def check_replication(
    databases: Sequence[str] | None = None,
    *,
    thresholds: Thresholds | None = None,
    run: QueryRunner = django_runner,
    now: datetime | None = None,
    with_routing: bool = False,
) -> Report:
    """Observe and evaluate the primary and the replica aliases (default: all of REPLICAS).

    Never raises for an unreachable server: that is part of the report. ``databases``
    limits the check to those replica aliases (ValueError for one that is not a replica).
    ``with_routing`` adds where reads went (a CACHE read with CACHE set): for the
    command and the admin page, not for every scrape or beat run.
    """
    settings = get_settings()
    aliases = settings.replicas if databases is None else tuple(databases)
    unknown = [alias for alias in aliases if alias not in settings.replicas]
    if unknown:
        raise ValueError(
            f"not a replica alias: {', '.join(unknown)} "
            f"(PGREPLICA['REPLICAS'] is {', '.join(settings.replicas) or 'empty'})"
        )
    primary = observe_primary(settings.primary, run)
    replicas, circuits = [], {}
    for alias in aliases:
        # A multi-host alias: one row per standby member (members.py); tests pass a runner
        # of their own, which stands for the alias as a whole.
        servers = expand(alias) if run is django_runner else [(alias, None)]
        for label, member_run in servers:
            obs = observe_replica(label, member_run or run)
            if member_run is not None and obs.reachable and obs.in_recovery is False:
                continue  # this member is the primary now: the primary's row
            replicas.append(obs)
            circuits[label] = circuit_state(alias)
    with _memo_lock:
        hints = dict(_slot_memo)
    report = build_report(
        primary,
        replicas,
        thresholds=thresholds or Thresholds.from_settings(settings),
        checked_at=now or datetime.now(timezone.utc),
        circuits=circuits,
        application_names=application_names(settings),
        slot_hints=hints,
        max_lag_seconds=settings.max_lag_seconds,
        configured_replicas=len(settings.replicas),
        partial=databases is not None and set(aliases) != set(settings.replicas),
    )
    with _memo_lock:
        for item in report.replicas:
            if item.reachable and item.slot_name:
                _slot_memo[item.alias] = item.slot_name
    if not with_routing:
        return report
    return dataclasses.replace(report, routing=routing_view(settings))


def routing_view(settings: Settings) -> RoutingView:
    """Every process's routing counts through CACHE, else this process's own."""
    if settings.cache is None:
        return RoutingView("process", stats.snapshot())
    try:
        return RoutingView(
            "fleet", fleet.fleet_counts(settings.cache, settings.health_check_interval)
        )
    except Exception as exc:
        return RoutingView("fleet", None, f"CACHE {settings.cache!r} unreadable: {one_line(exc)}")
