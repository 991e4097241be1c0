"""The admin page's lag history from samples: series, thinning, charts. No database."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from django.db import DatabaseError

from django_pgreplica.admin import history
from django_pgreplica.admin.charts import Point
from django_pgreplica.admin.history import Sample, build_history, build_series, draw_history, thin
from django_pgreplica.conf import get_settings

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=timezone.utc)


def sample(minutes_ago: float, replica: str = "replica", lag: float | None = 1.0,
           lag_bytes: int | None = 4096, *, reachable: bool = True) -> Sample:  # fmt: skip
    return Sample(replica, NOW - timedelta(minutes=minutes_ago), lag, lag_bytes, reachable)


def test_thin_keeps_peaks_and_outages() -> None:
    start = NOW
    points = [Point(start + timedelta(seconds=i), float(i % 10)) for i in range(1000)]
    points[500] = Point(points[500].at, None, down=True)
    kept = thin(points, limit=100)
    assert len(kept) <= 100
    assert any(p.down for p in kept)
    assert max(p.value or 0 for p in kept) == 9.0
    assert thin(points[:50], limit=100) == points[:50]


def test_thin_keeps_the_last_point_of_a_bucket_without_values() -> None:
    points = [Point(NOW + timedelta(seconds=i), None) for i in range(10)]
    assert thin(points, limit=5) == [points[1], points[3], points[5], points[7], points[9]]


def test_series_follow_the_configured_aliases_then_the_others() -> None:
    samples = [
        sample(30, "gone", lag=2.0),
        sample(20, "replica2", lag=None, lag_bytes=None, reachable=False),
        sample(10, "replica2", lag=0.5, lag_bytes=100),
    ]
    series = build_series(samples, ["replica", "replica2"], metric="seconds")
    assert [s.name for s in series] == ["replica", "replica2", "gone"]
    assert series[0].points == ()  # configured, no samples yet: still listed
    assert [(p.value, p.down) for p in series[1].points] == [(None, True), (0.5, False)]
    volume = build_series(samples, ["replica", "replica2"], metric="bytes")
    assert [p.value for p in volume[1].points] == [None, 100.0]


def test_draw_history_draws_both_charts_with_the_thresholds() -> None:
    settings = replace(get_settings(), lag_warning_seconds=5.0, lag_critical_seconds=30.0)
    samples = [sample(m, alias, lag=7.5) for m in (50, 40, 30) for alias in ("replica", "other")]
    drawn = draw_history(
        samples, hours=1, now=NOW, aliases=["replica"], settings=settings, tz=timezone.utc
    )
    assert (drawn.hours, drawn.samples, drawn.error) == (1, 6, None)
    assert [chart.title for chart in drawn.charts] == ["Replay lag (seconds)", "Lag (bytes of WAL)"]
    seconds, volume = (str(chart.svg) for chart in drawn.charts)
    assert 'id="pgreplica-lag-seconds"' in seconds and 'id="pgreplica-lag-bytes"' in volume
    assert "Replay lag in seconds, last 1 h" in seconds
    assert "Lag in bytes of WAL, last 1 h" in volume
    assert re.findall(r'data-series="(\w+)"', seconds) == ["replica", "other"]
    assert "threshold-warning" in seconds and "threshold-critical" not in seconds  # 30 s: off
    assert "threshold-" not in volume  # far below LAG_CRITICAL_BYTES


def test_build_history_reads_the_window_and_uses_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[datetime] = []

    def load(since: datetime) -> list[Sample]:
        asked.append(since)
        return [sample(100), sample(5)]

    monkeypatch.setattr(history, "load_samples", load)
    built = build_history(6, NOW, ["replica"])
    assert asked == [NOW - timedelta(hours=6)]
    assert built.samples == 2 and len(built.charts) == 2 and built.error is None


def test_unreadable_samples_give_an_error_note(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(since: datetime) -> list[Sample]:
        raise DatabaseError("relation does not exist")

    monkeypatch.setattr(history, "load_samples", load)
    built = build_history(24, NOW, ["replica"])
    assert built == history.History(
        hours=24, error="Lag history unavailable: relation does not exist"
    )
