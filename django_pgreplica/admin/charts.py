"""Server-side SVG line charts of replication lag over time. Pure: data in, markup out.

The admin's replication page inlines the result, so it needs no JavaScript and no CDN.
Colours of axes, grid and text are CSS variables of the Django admin with fallbacks
(``var(--body-quiet-color, #666)``): the chart follows the admin's light and dark themes
and still renders on its own (a saved ``.svg``, a unit test). Series colours are mid-tone
so they read on both backgrounds.

- A ``None`` value is a gap: the line breaks there.
- A ``down`` point (the replica did not answer) is drawn as a red band on the time axis.
- Two samples further apart than three times a series' usual spacing are not joined, so a
  monitoring task that stopped for an hour does not draw a straight line across the hole.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from html import escape
from statistics import median
from typing import Literal

from ..units import Unit, byte_scale, format_compact

Level = Literal["warning", "critical"]

PALETTE = ("#3b82f6", "#f59e0b", "#10b981", "#a855f7", "#ec4899", "#14b8a6", "#8b5cf6")
LEVEL_COLOURS: dict[str, str] = {"warning": "#d97706", "critical": "#dc2626"}
DOWN_COLOUR = "#dc2626"
GRID = 'style="stroke: var(--hairline-color, #e8e8e8)"'
AXIS = 'style="stroke: var(--border-color, #ccc)"'
TEXT = 'style="fill: var(--body-quiet-color, #666)"'

# Plot area margins in viewBox units: room for y labels (left), legend (top), times (bottom).
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 26
GAP_FACTOR = 3.0

_TIME_STEPS = tuple(
    timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
)


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float | None  # None: no figure for this sample (a gap in the line)
    down: bool = False  # the replica was unreachable


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Threshold:
    label: str
    value: float
    level: Level


@dataclass(frozen=True)
class _Frame:
    """Maps data to viewBox coordinates."""

    start: datetime
    end: datetime
    top: float
    width: int
    height: int

    def x(self, at: datetime) -> float:
        span = (self.end - self.start).total_seconds() or 1.0
        ratio = (at - self.start).total_seconds() / span
        return LEFT + min(max(ratio, 0.0), 1.0) * (self.width - LEFT - RIGHT)

    def y(self, value: float) -> float:
        ratio = min(max(value / self.top, 0.0), 1.0)
        return self.height - BOTTOM - ratio * (self.height - TOP - BOTTOM)


# --- numbers ---------------------------------------------------------------------------


def nice_step(span: float, max_ticks: int = 5) -> float:
    """The smallest 1/2/2.5/5 x 10^k step that splits ``span`` into at most ``max_ticks``."""
    if span <= 0:
        return 1.0
    raw = span / max_ticks
    magnitude: float = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def value_ticks(maximum: float, unit: Unit, max_ticks: int = 5) -> list[float]:
    """0, step, 2*step ... up to the first tick at or above ``maximum`` (never empty)."""
    maximum = max(maximum, 0.0)
    scale = byte_scale(maximum) if unit == "bytes" else 1.0
    if maximum == 0:
        maximum = scale  # nothing to show: one unit of headroom
    step = nice_step(maximum / scale, max_ticks) * scale
    count = max(1, math.ceil(maximum / step - 1e-9))
    return [step * index for index in range(count + 1)]


# --- time ------------------------------------------------------------------------------


def time_ticks(start: datetime, end: datetime, tz: tzinfo, max_ticks: int = 8) -> list[datetime]:
    """Round local times (every 5 min, 1 h, ...) between ``start`` and ``end``."""
    span = end - start
    step = next((s for s in _TIME_STEPS if span / s <= max_ticks), _TIME_STEPS[-1])
    local = start.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Steps divide a day, so counting from local midnight gives round labels.
    steps_since = math.ceil((local - midnight) / step)
    tick = midnight + steps_since * step
    ticks = []
    while tick <= end:
        ticks.append(tick)
        tick += step
    return ticks


def _time_label(at: datetime, tz: tzinfo, span: timedelta) -> str:
    local = at.astimezone(tz)
    return local.strftime("%m-%d %H:%M" if span > timedelta(days=1) else "%H:%M")


def segments(points: Sequence[Point]) -> list[list[Point]]:
    """Runs of points to join with a line: broken at gaps (None) and long silences."""
    valued = sorted(points, key=lambda p: p.at)
    deltas = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(valued)]
    positive = [d for d in deltas if d > 0]
    max_gap = GAP_FACTOR * median(positive) if positive else math.inf
    runs: list[list[Point]] = []
    current: list[Point] = []
    previous: Point | None = None
    for point in valued:
        silent = previous is not None and (point.at - previous.at).total_seconds() > max_gap
        if point.value is None or silent:
            if current:
                runs.append(current)
            current = []
        if point.value is not None:
            current.append(point)
        previous = point
    if current:
        runs.append(current)
    return runs


def down_spans(points: Sequence[Point]) -> list[tuple[datetime, datetime]]:
    """(first, last) times of each run of consecutive ``down`` samples."""
    spans: list[tuple[datetime, datetime]] = []
    first: datetime | None = None
    last: datetime | None = None
    for point in sorted(points, key=lambda p: p.at):
        if point.down:
            first = first or point.at
            last = point.at
        elif first is not None and last is not None:
            spans.append((first, last))
            first = last = None
    if first is not None and last is not None:
        spans.append((first, last))
    return spans


# --- drawing ---------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, body: str, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" font-size="11" '
        f"{TEXT}{extra}>{escape(body)}</text>"
    )


def _grid(
    frame: _Frame, ticks: Sequence[float], times: Sequence[datetime], unit: Unit, tz: tzinfo
) -> list[str]:
    right = frame.width - RIGHT
    bottom = frame.height - BOTTOM
    parts = []
    for value in ticks:
        y = frame.y(value)
        parts.append(f'<line x1="{LEFT}" x2="{right}" y1="{_num(y)}" y2="{_num(y)}" {GRID}/>')
        parts.append(_text(LEFT - 6, y + 4, format_compact(value, unit), "end"))
    span = frame.end - frame.start
    for at in times:
        x = frame.x(at)
        parts.append(f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{TOP}" y2="{bottom}" {GRID}/>')
        parts.append(_text(x, bottom + 16, _time_label(at, tz, span), "middle"))
    parts.append(f'<line x1="{LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}" {AXIS}/>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}" {AXIS}/>')
    return parts


def _threshold_lines(frame: _Frame, thresholds: Sequence[Threshold], unit: Unit) -> list[str]:
    parts = []
    for item in thresholds:
        if item.value > frame.top:
            continue  # off the chart: the lag never came near it
        y = _num(frame.y(item.value))
        colour = LEVEL_COLOURS[item.level]
        label = f"{item.label} {format_compact(item.value, unit)}"
        parts.append(
            f'<line class="threshold threshold-{item.level}" x1="{LEFT}" '
            f'x2="{frame.width - RIGHT}" y1="{y}" y2="{y}" stroke="{colour}" '
            f'stroke-width="1" stroke-dasharray="6 4"><title>{escape(label)}</title></line>'
        )
        parts.append(
            f'<text x="{frame.width - RIGHT - 4}" y="{_num(frame.y(item.value) - 4)}" '
            f'text-anchor="end" font-size="10" fill="{colour}">{escape(label)}</text>'
        )
    return parts


def _series_marks(frame: _Frame, series: Series, colour: str, unit: Unit, tz: tzinfo) -> list[str]:
    name = escape(series.name)
    parts = [f'<g class="series" data-series="{name}">']
    for run in segments(series.points):
        coords = " ".join(f"{_num(frame.x(p.at))},{_num(frame.y(p.value or 0.0))}" for p in run)
        if len(run) == 1:
            x, y = coords.split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>')
        else:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2" '
                f'stroke-linejoin="round" stroke-linecap="round"/>'
            )
    bottom = frame.height - BOTTOM
    span = frame.end - frame.start
    for first, last in down_spans(series.points):
        x1, x2 = frame.x(first), frame.x(last)
        when = f"{_time_label(first, tz, span)}-{_time_label(last, tz, span)}"
        parts.append(
            f'<rect class="down" x="{_num(x1 - 2)}" y="{bottom - 5}" '
            f'width="{_num(max(x2 - x1, 0) + 4)}" height="5" fill="{DOWN_COLOUR}">'
            f"<title>{name} down {escape(when)}</title></rect>"
        )
    parts.append("</g>")
    return parts


def _latest(series: Series) -> Point | None:
    ordered = sorted(series.points, key=lambda p: p.at)
    return ordered[-1] if ordered else None


def _legend(series: Sequence[Series], unit: Unit) -> list[str]:
    parts = []
    x = float(LEFT)
    for index, item in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        latest = _latest(item)
        if latest is None:
            now = "no samples"
        elif latest.down:
            now = "down"
        elif latest.value is None:
            now = "-"
        else:
            now = format_compact(latest.value, unit)
        label = f"{item.name}: {now}"
        parts.append(
            f'<line x1="{_num(x)}" x2="{_num(x + 16)}" y1="14" y2="14" stroke="{colour}" '
            f'stroke-width="3"/>'
        )
        parts.append(_text(x + 21, 18, label))
        x += 36 + 6.5 * len(label)  # a rough text width is enough for a legend
    return parts


def lag_chart(
    series: Sequence[Series],
    *,
    start: datetime,
    end: datetime,
    unit: Unit = "seconds",
    thresholds: Sequence[Threshold] = (),
    min_top: float = 0.0,
    title: str = "Replication lag",
    chart_id: str = "pgreplica-lag-chart",
    tz: tzinfo = timezone.utc,
    width: int = 960,
    height: int = 260,
) -> str:
    """An ``<svg>`` line chart of ``series`` between ``start`` and ``end`` (aware datetimes).

    The y axis starts at 0 and reaches at least ``min_top`` (pass the warning threshold to
    keep its line in view); a threshold above the axis is left out. Times are labelled in
    ``tz``. The markup is safe to inline: every name is escaped.
    """
    values = [p.value for s in series for p in s.points if p.value is not None]
    ticks = value_ticks(max([*values, min_top, 0.0]), unit)
    frame = _Frame(start=start, end=end, top=ticks[-1], width=width, height=height)
    has_points = any(s.points for s in series)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="pgreplica-chart" id="{escape(chart_id)}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{escape(chart_id)}-title" '
        f'preserveAspectRatio="xMidYMid meet" font-family="inherit">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        *_grid(frame, ticks, time_ticks(start, end, tz), unit, tz),
        *_threshold_lines(frame, thresholds, unit),
    ]
    for index, item in enumerate(series):
        parts += _series_marks(frame, item, PALETTE[index % len(PALETTE)], unit, tz)
    parts += _legend(series, unit)
    if not has_points:
        middle = (TOP + height - BOTTOM) / 2
        empty = "No samples in this period"
        parts.append(_text((LEFT + width - RIGHT) / 2, middle, empty, "middle"))
    parts.append("</svg>")
    return "\n".join(parts)
