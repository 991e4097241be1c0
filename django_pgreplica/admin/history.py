"""The replication page's lag history: stored :class:`ReplicationSample` rows as two charts.

:func:`build_history` reads the samples of the last hours (written by the
``monitor_replication`` task) and draws them with :func:`~.charts.lag_chart`; everything
after the query is pure (:func:`draw_history`, :func:`build_series`, :func:`thin`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from django.db import DatabaseError
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from ..conf import Settings, get_settings
from ..models import ReplicationSample
from .charts import Point, Series, Threshold, lag_chart

logger = logging.getLogger(__name__)

MAX_POINTS = 720  # per series: plenty for a ~960px chart, keeps the page small


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


def load_samples(since: datetime) -> list[Sample]:
    """Samples newer than ``since``, oldest first. Read through the router: a replica
    serves them, so the history stays readable while the primary is down."""
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


def draw_history(
    samples: Sequence[Sample],
    *,
    hours: int,
    now: datetime,
    aliases: Sequence[str],
    settings: Settings,
    tz: tzinfo,
) -> History:
    """The two charts (seconds, bytes) of ``samples`` over the ``hours`` before ``now``."""
    since = now - timedelta(hours=hours)
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


def build_history(hours: int, now: datetime, aliases: Sequence[str]) -> History:
    """The history of the ``hours`` before ``now``; an error note if it cannot be read."""
    try:
        samples = load_samples(now - timedelta(hours=hours))
    except DatabaseError as exc:
        logger.warning("replication samples unreadable: %s", exc)
        return History(hours=hours, error=f"Lag history unavailable: {exc}".strip())
    return draw_history(
        samples,
        hours=hours,
        now=now,
        aliases=aliases,
        settings=get_settings(),
        tz=timezone.get_current_timezone(),
    )
