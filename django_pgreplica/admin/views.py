"""The admin's replication status page: a live :func:`check_replication` report plus the
lag history stored by the ``monitor_replication`` task, drawn as inline SVG.

Wired into an :class:`~django.contrib.admin.AdminSite` by :func:`django_pgreplica.admin.register`,
which wraps :func:`replication_view` in ``site.admin_view`` (login and staff checks); the
view itself requires the ``django_pgreplica.view_replicationsample`` permission.

Query parameters: ``hours`` (history window, one of :data:`HOURS_CHOICES`) and
``refresh`` (seconds between automatic reloads, :data:`MIN_REFRESH`..:data:`MAX_REFRESH`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import HttpRequest, QueryDict
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from ..conf import get_settings
from ..health.breaker import CircuitState
from ..lsn import format_lsn
from ..monitoring import (
    AuditFinding,
    ReplicaReport,
    Report,
    SlotReport,
    StandbyRow,
    Status,
    check_replication,
)
from ..monitoring.render import replica_state
from ..units import format_bytes, format_compact, format_seconds
from .charts import Point, Series, Threshold, lag_chart

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite

logger = logging.getLogger(__name__)

PERMISSION = "django_pgreplica.view_replicationsample"
TEMPLATE = "admin/django_pgreplica/replication.html"
HOURS_CHOICES = (1, 6, 24)
DEFAULT_HOURS = 6
DEFAULT_REFRESH = 10
MIN_REFRESH, MAX_REFRESH = 5, 3600  # each load probes every server: not too often
MAX_POINTS = 720  # per series: plenty for a ~960px chart, keeps the page small

_BADGE_CSS = {
    Status.OK: "ok",
    Status.WARNING: "warning",
    Status.CRITICAL: "critical",
    Status.UNKNOWN: "unknown",
}
_REPLICA_LABELS = {
    Status.OK: "healthy",
    Status.WARNING: "warning",
    Status.CRITICAL: "critical",
    Status.UNKNOWN: "unknown",
}
_CIRCUIT_CSS = {
    CircuitState.CLOSED: "ok",
    CircuitState.HALF_OPEN: "warning",
    CircuitState.OPEN: "critical",
}


@dataclass(frozen=True)
class Badge:
    label: str
    css: str  # ok | warning | critical | unknown


def status_badge(status: Status, *, replica: bool = False) -> Badge:
    label = _REPLICA_LABELS[status] if replica else status.name
    return Badge(label, _BADGE_CSS[status])


@dataclass(frozen=True)
class ReplicaRow:
    """One replica as the page shows it: display strings, no logic left for the template."""

    alias: str
    badge: Badge
    state: str
    down: bool
    sync_state: str
    write_lag: str
    flush_lag: str
    replay_lag: str
    lag: str
    lag_bytes: str
    slot: str
    slot_retained: str
    circuit: Badge
    serves_reads: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class SlotRowView:
    name: str
    slot_type: str
    active: bool
    wal_status: str
    retained: str
    safe_wal_size: str
    replica: str
    badge: Badge
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Chart:
    title: str
    svg: SafeString


@dataclass(frozen=True)
class History:
    hours: int
    charts: tuple[Chart, ...] = ()
    samples: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Sample:
    """The columns of a ReplicationSample the charts need."""

    replica: str
    taken_at: datetime
    lag_seconds: float | None
    lag_bytes: int | None
    reachable: bool


@dataclass
class Links:
    """URLs of the page's own toggles, keeping the other parameters."""

    refresh_on: str
    refresh_off: str
    hours: list[tuple[int, str, bool]] = field(default_factory=list)


# --- report -> rows ----------------------------------------------------------------------


def replica_row(item: ReplicaReport) -> ReplicaRow:
    return ReplicaRow(
        alias=item.alias,
        badge=status_badge(item.status, replica=True),
        state=replica_state(item, paused="replay paused"),  # "down" is the template's
        down=not item.reachable,
        sync_state=item.sync_state or "-",
        write_lag=format_seconds(item.write_lag_seconds),
        flush_lag=format_seconds(item.flush_lag_seconds),
        replay_lag=format_seconds(item.replay_lag_seconds),
        lag=format_seconds(item.lag_seconds),
        lag_bytes=format_bytes(item.lag_bytes),
        slot=item.slot_name or "-",
        slot_retained=format_bytes(item.slot_retained_bytes),
        circuit=Badge(item.circuit_state.label, _CIRCUIT_CSS[item.circuit_state]),
        serves_reads=item.healthy,
        reasons=item.reasons,
    )


def slot_row(item: SlotReport) -> SlotRowView:
    return SlotRowView(
        name=item.slot_name,
        slot_type=item.slot_type,
        active=item.active,
        wal_status=item.wal_status or "-",
        retained=format_bytes(item.retained_bytes),
        safe_wal_size=format_bytes(item.safe_wal_size),
        replica=item.replica or "-",
        badge=status_badge(item.status),
        reasons=item.reasons,
    )


def standby_line(row: StandbyRow) -> str:
    return (
        f"{row.application_name or '-'} from {row.client_addr or 'local'}: "
        f"{row.state or '?'}, {format_bytes(row.lag_bytes)} behind"
    )


def audit_detail(item: AuditFinding) -> str:
    if item.setting and item.actual is not None:
        return f"{item.setting} = {item.actual}, recommended {item.recommended}"
    return ""


# --- history -----------------------------------------------------------------------------


def load_samples(since: datetime) -> list[Sample]:
    """Samples newer than ``since``, oldest first. Read through the router: a replica
    serves them, so the history stays readable while the primary is down."""
    from ..models import ReplicationSample

    rows = (
        ReplicationSample.objects.filter(taken_at__gte=since)
        .order_by("taken_at", "replica")
        .values_list("replica", "taken_at", "lag_seconds", "lag_bytes", "reachable")
    )
    return [Sample(*row) for row in rows]


def thin(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most about ``limit`` points: the worst of each bucket, so peaks and outages stay."""
    if len(points) <= limit:
        return list(points)
    size = -(-len(points) // limit)  # ceil
    kept = []
    for offset in range(0, len(points), size):
        bucket = points[offset : offset + size]
        down = [p for p in bucket if p.down]
        valued = [p for p in bucket if p.value is not None]
        worst = max(valued, key=lambda p: p.value or 0.0) if valued else bucket[-1]
        kept.append(down[0] if down else worst)
    return kept


def build_series(samples: Iterable[Sample], aliases: Sequence[str], *, metric: str) -> list[Series]:
    """One series per replica alias: the configured ones first (even without samples),
    then any other alias found in the samples (a replica removed from the settings)."""
    points: dict[str, list[Point]] = {alias: [] for alias in aliases}
    for sample in samples:
        value = sample.lag_seconds if metric == "seconds" else sample.lag_bytes
        points.setdefault(sample.replica, []).append(
            Point(
                sample.taken_at,
                None if value is None else float(value),
                down=not sample.reachable,
            )
        )
    return [Series(alias, tuple(thin(items))) for alias, items in points.items()]


def build_history(hours: int, now: datetime, aliases: Sequence[str]) -> History:
    settings = get_settings()
    since = now - timedelta(hours=hours)
    try:
        samples = load_samples(since)
    except DatabaseError as exc:
        logger.warning("replication samples unreadable: %s", exc)
        return History(hours=hours, error=f"Lag history unavailable: {exc}".strip())
    tz = timezone.get_current_timezone()
    seconds = lag_chart(
        build_series(samples, aliases, metric="seconds"),
        start=since,
        end=now,
        unit="seconds",
        thresholds=(
            Threshold("warning", settings.lag_warning_seconds, "warning"),
            Threshold("critical", settings.lag_critical_seconds, "critical"),
        ),
        min_top=settings.lag_warning_seconds,
        title=f"Replay lag in seconds, last {hours} h",
        chart_id="pgreplica-lag-seconds",
        tz=tz,
    )
    volume = lag_chart(
        build_series(samples, aliases, metric="bytes"),
        start=since,
        end=now,
        unit="bytes",
        thresholds=(Threshold("critical", settings.lag_critical_bytes, "critical"),),
        title=f"Lag in bytes of WAL, last {hours} h",
        chart_id="pgreplica-lag-bytes",
        tz=tz,
    )
    # The chart escapes every name it prints, so its markup is safe to inline.
    charts = (
        Chart("Replay lag (seconds)", mark_safe(seconds)),
        Chart("Lag (bytes of WAL)", mark_safe(volume)),
    )
    return History(hours=hours, charts=charts, samples=len(samples))


# --- request parameters --------------------------------------------------------------------


def parse_hours(params: QueryDict) -> int:
    try:
        hours = int(params.get("hours", DEFAULT_HOURS))
    except ValueError:
        return DEFAULT_HOURS
    return hours if hours in HOURS_CHOICES else DEFAULT_HOURS


def parse_refresh(params: QueryDict) -> int | None:
    """Seconds between reloads, or None (off, or not a sensible number)."""
    try:
        refresh = int(params.get("refresh", ""))
    except ValueError:
        return None
    return refresh if MIN_REFRESH <= refresh <= MAX_REFRESH else None


def page_links(path: str, hours: int, refresh: int | None) -> Links:
    def url(**params: int | None) -> str:
        query = {key: value for key, value in params.items() if value is not None}
        return f"{path}?{urlencode(query)}" if query else path

    return Links(
        refresh_on=url(hours=hours, refresh=refresh or DEFAULT_REFRESH),
        refresh_off=url(hours=hours),
        hours=[
            (choice, url(hours=choice, refresh=refresh), choice == hours)
            for choice in HOURS_CHOICES
        ],
    )


# --- the view ------------------------------------------------------------------------------


def _reverse(name: str, site: AdminSite, **kwargs: str) -> str | None:
    try:
        return reverse(name, kwargs=kwargs or None, current_app=site.name)
    except NoReverseMatch:  # the sample ModelAdmin is not registered on this site
        return None


def page_context(report: Report, request: HttpRequest, site: AdminSite) -> dict[str, Any]:
    hours = parse_hours(request.GET)
    refresh = parse_refresh(request.GET)
    primary = report.primary
    return {
        "report": report,
        "overall": status_badge(report.status),
        "primary": primary,
        "primary_lsn": None if primary.current_lsn is None else format_lsn(primary.current_lsn),
        "replicas": [replica_row(item) for item in report.replicas],
        "slots": [slot_row(item) for item in report.slots],
        "unmatched": [standby_line(row) for row in report.unmatched_standbys],
        "audit": [(item, audit_detail(item)) for item in report.audit],
        "thresholds": {
            "warning": format_compact(report.thresholds.warning_seconds, "seconds"),
            "critical": format_compact(report.thresholds.critical_seconds, "seconds"),
            "critical_bytes": format_bytes(report.thresholds.critical_bytes),
        },
        "history": build_history(hours, report.checked_at, [r.alias for r in report.replicas]),
        "refresh": refresh,
        "links": page_links(request.path, hours, refresh),
        "samples_url": _reverse("admin:django_pgreplica_replicationsample_changelist", site),
        "app_url": _reverse("admin:app_list", site, app_label="django_pgreplica"),
    }


def replication_view(request: HttpRequest, site: AdminSite) -> TemplateResponse:
    """The page. ``site.admin_view`` has already let only active staff in."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    report = check_replication()  # never raises for a server that is down
    request.current_app = site.name
    context = {
        **site.each_context(request),
        "title": "Replication status",
        "subtitle": None,
        **page_context(report, request, site),
    }
    return TemplateResponse(request, TEMPLATE, context)
