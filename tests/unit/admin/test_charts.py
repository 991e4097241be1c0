"""The SVG lag chart: pure functions, no database."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from django_pgreplica.admin.charts import (
    Point,
    Series,
    Threshold,
    down_spans,
    lag_chart,
    nice_step,
    segments,
    time_ticks,
    value_ticks,
)
from django_pgreplica.units import format_compact

SVG = "{http://www.w3.org/2000/svg}"
END = datetime(2026, 1, 2, 12, 0, tzinfo=timezone.utc)
START = END - timedelta(hours=6)


def minutes_ago(minutes: float) -> datetime:
    return END - timedelta(minutes=minutes)


def series(name: str, *values: float | None, every: float = 1.0) -> Series:
    count = len(values)
    return Series(
        name,
        tuple(Point(minutes_ago((count - i) * every), v) for i, v in enumerate(values)),
    )


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # also proves the markup is well-formed XML


@pytest.mark.parametrize(
    ("span", "step"),
    [(0, 1.0), (1, 0.2), (5, 1.0), (7.5, 2.0), (10, 2.0), (12, 2.5), (30, 10.0), (1000, 200.0)],
)
def test_nice_step(span: float, step: float) -> None:
    assert nice_step(span) == pytest.approx(step)


def test_value_ticks_seconds_reach_the_maximum() -> None:
    assert value_ticks(7.5, "seconds") == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert value_ticks(0, "seconds") == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert value_ticks(5.0, "seconds") == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_value_ticks_bytes_use_binary_units() -> None:
    mib = 1024 * 1024
    ticks = value_ticks(3.2 * mib, "bytes")
    assert ticks[-1] >= 3.2 * mib
    assert [format_compact(t, "bytes") for t in ticks] == [
        "0 B",
        "1 MiB",
        "2 MiB",
        "3 MiB",
        "4 MiB",
    ]


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0, "seconds", "0"),
        (0.25, "seconds", "250ms"),
        (4, "seconds", "4s"),
        (2.5, "seconds", "2.5s"),
        (150, "seconds", "2.5m"),
        (3000, "seconds", "50m"),
        (5400, "seconds", "1.5h"),
        (7200, "seconds", "2h"),
        (0, "bytes", "0 B"),
        (512, "bytes", "512 B"),
        (1536, "bytes", "1.5 KiB"),
        (100 * 1024 * 1024, "bytes", "100 MiB"),
    ],
)
def test_format_compact(value: float, unit: str, text: str) -> None:
    assert format_compact(value, unit) == text  # type: ignore[arg-type]


def test_time_ticks_are_round_local_times() -> None:
    ticks = time_ticks(START + timedelta(minutes=7), END, timezone.utc)
    assert [t.strftime("%H:%M") for t in ticks] == [
        "07:00", "08:00", "09:00", "10:00", "11:00", "12:00"
    ]  # fmt: skip
    short = time_ticks(END - timedelta(minutes=50), END, timezone.utc)
    assert [t.minute for t in short] == [10, 20, 30, 40, 50, 0]
    plus_two = timezone(timedelta(hours=2))
    assert time_ticks(START, END, plus_two)[0].astimezone(plus_two).strftime("%H:%M") == "08:00"


def test_segments_break_at_gaps_and_long_silences() -> None:
    points = [
        Point(minutes_ago(10), 1.0),
        Point(minutes_ago(9), 2.0),
        Point(minutes_ago(8), None),  # no figure
        Point(minutes_ago(7), 3.0),
        Point(minutes_ago(6), 3.5),
        Point(minutes_ago(0), 4.0),  # 6 minutes of silence: not joined
    ]
    runs = segments(points)
    assert [[p.value for p in run] for run in runs] == [[1.0, 2.0], [3.0, 3.5], [4.0]]


def test_down_spans_group_consecutive_outages() -> None:
    points = [
        Point(minutes_ago(5), 0.0),
        Point(minutes_ago(4), None, down=True),
        Point(minutes_ago(3), None, down=True),
        Point(minutes_ago(2), 0.0),
        Point(minutes_ago(1), None, down=True),
    ]
    assert down_spans(points) == [
        (minutes_ago(4), minutes_ago(3)),
        (minutes_ago(1), minutes_ago(1)),
    ]


def test_chart_draws_each_series_thresholds_and_legend() -> None:
    svg = lag_chart(
        [series("replica", 0.5, 1.0, 7.5, 2.0), series("replica2", 0.0, 0.0, 0.1, 0.0)],
        start=START,
        end=END,
        thresholds=[Threshold("warning", 5.0, "warning"), Threshold("critical", 30.0, "critical")],
        min_top=5.0,
        title="Replay lag",
    )
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img" and root.get("viewBox") == "0 0 960 260"
    assert root.find(f"{SVG}title").text == "Replay lag"  # type: ignore[union-attr]
    groups = root.findall(f"{SVG}g")
    assert [g.get("data-series") for g in groups] == ["replica", "replica2"]
    assert all(len(g.findall(f"{SVG}polyline")) == 1 for g in groups)
    # The 5 s warning line is drawn; the 30 s critical line is far above the data: left out.
    assert 'class="threshold threshold-warning"' in svg
    assert "threshold-critical" not in svg
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "replica: 2s" in texts and "replica2: 0" in texts  # latest values in the legend
    assert "8s" in texts  # top of the y axis: a round number above the 7.5 s peak
    assert "12:00" in texts


def test_higher_values_sit_higher_on_the_chart() -> None:
    svg = lag_chart([series("r", 0.0, 10.0)], start=START, end=END)
    polyline = parse(svg).find(f".//{SVG}polyline")
    assert polyline is not None
    points = polyline.get("points", "")
    (x1, y1), (x2, y2) = (tuple(map(float, p.split(","))) for p in points.split())
    assert x2 > x1 and y2 < y1  # SVG y grows downwards


def test_outage_is_a_red_band_with_a_tooltip() -> None:
    points = (
        Point(minutes_ago(3), 0.0),
        Point(minutes_ago(2), None, down=True),
        Point(minutes_ago(1), 0.0),
    )
    svg = lag_chart([Series("replica", points)], start=START, end=END)
    band = parse(svg).find(f".//{SVG}rect[@class='down']")
    assert band is not None
    assert band.find(f"{SVG}title").text == "replica down 11:58-11:58"  # type: ignore[union-attr]
    assert len(parse(svg).findall(f".//{SVG}polyline")) == 0  # the two halves are single dots
    assert len(parse(svg).findall(f".//{SVG}circle")) == 2


def test_names_are_escaped() -> None:
    svg = lag_chart(
        [series('<script>alert("x")</script>', 1.0, 2.0)], start=START, end=END, title="a & b"
    )
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    parse(svg)


def test_empty_chart_says_so() -> None:
    svg = lag_chart([Series("replica", ())], start=START, end=END, unit="bytes")
    texts = [t.text for t in parse(svg).iter(f"{SVG}text")]
    assert "No samples in this period" in texts
    assert "replica: no samples" in texts
    assert "<polyline" not in svg


def test_colours_follow_the_admin_theme_variables() -> None:
    svg = lag_chart([series("r", 1.0, 2.0)], start=START, end=END)
    assert "var(--hairline-color, #e8e8e8)" in svg
    assert "var(--body-quiet-color, #666)" in svg
    assert not re.search(r"<script|https?://(?!www\.w3\.org/2000/svg)", svg)
