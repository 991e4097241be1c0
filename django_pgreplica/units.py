"""Bytes and seconds: how we print them and how we read them, in one place.

Used by the ``replication_status`` table and flags, the admin page and its charts, alert
messages and the PostgreSQL configuration audit. Sizes are binary multiples, as in
PostgreSQL's own settings (``1MB`` is 1024 kB).
"""

from __future__ import annotations

import math
import re
from typing import Literal

Unit = Literal["seconds", "bytes"]

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_SIZE_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_TEXT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*", re.IGNORECASE)
# PostgreSQL's own unit names (pg_settings.unit may carry a multiple, e.g. "8kB").
_PG_SIZE_UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_PG_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


# --- printing --------------------------------------------------------------------------


def format_bytes(value: float | None) -> str:
    """Tables and messages: 1536 -> '1.5 KiB'; None -> '-'."""
    if value is None:
        return "-"
    size = float(value)
    for unit in BYTE_UNITS:
        if abs(size) < 1024 or unit == BYTE_UNITS[-1]:
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_seconds(value: float | None) -> str:
    """Tables and messages: millisecond precision below 10 s; None -> '-'."""
    if value is None:
        return "-"
    return f"{value:.3f}s" if value < 10 else f"{value:.1f}s"


def byte_scale(value: float) -> float:
    """1024^k so that ``value`` reads as 1..1023 of that unit."""
    scale = 1.0
    while value >= 1024 * scale and scale < 1024.0 ** (len(BYTE_UNITS) - 1):
        scale *= 1024
    return scale


def format_compact(value: float, unit: Unit) -> str:
    """Chart ticks and legends, three significant digits: ``250ms``, ``2.5m``, ``1.5 MiB``."""
    if value == 0:
        return "0" if unit == "seconds" else "0 B"
    if unit == "bytes":
        scale = byte_scale(abs(value))
        name = BYTE_UNITS[round(math.log(scale, 1024))]
        return f"{value / scale:.3g} {name}"
    if abs(value) < 1:
        return f"{value * 1000:.3g}ms"
    if abs(value) < 120:
        return f"{value:.3g}s"
    if abs(value) < 3600:
        return f"{value / 60:.3g}m"
    return f"{value / 3600:.3g}h"


# --- reading ---------------------------------------------------------------------------


def parse_bytes(text: str) -> int:
    """'104857600', '100MB', '100MiB', '1.5g' -> bytes. Raises ValueError."""
    match = _SIZE_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (e.g. 104857600, 100MB, 1GB)")
    unit = match[2].lower().rstrip("b").rstrip("i")
    size = float(match[1]) * _SIZE_FACTORS[unit]
    if not math.isfinite(size):  # '9' * 400: a float overflows to inf
        raise ValueError(f"not a size: {text!r} is too large")
    return int(size)


def parse_seconds(text: str) -> float:
    """'30', '2.5', '500ms', '2min' -> seconds, never negative. Raises ValueError."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|min|h|d)?\s*", text)
    if match is None:
        raise ValueError(f"not a number of seconds: {text!r} (e.g. 30, 2.5, 500ms, 2min)")
    seconds = float(match[1]) * _PG_TIME_UNITS[match[2] or "s"]
    if not math.isfinite(seconds):
        raise ValueError(f"not a number of seconds: {text!r} is too large")
    return seconds


def pg_setting_bytes(value: str, unit: str | None) -> int | None:
    """A size setting from ``pg_settings`` in bytes (-1 stays -1: "no limit"); None when
    it is not a size."""
    match = re.fullmatch(r"(\d*)\s*(B|kB|MB|GB|TB)", unit or "B")
    try:
        number = int(value)
    except ValueError:
        return None
    if match is None:
        return None
    if number < 0:
        return number
    return number * int(match[1] or 1) * _PG_SIZE_UNITS[match[2]]


def pg_setting_seconds(value: str, unit: str | None) -> float | None:
    """A time setting from ``pg_settings`` in seconds (-1 stays -1: "wait forever"); None
    when it is not a time."""
    try:
        number = float(value)
    except ValueError:
        return None
    factor = _PG_TIME_UNITS.get(unit or "s")
    if factor is None:
        return None
    return number if number < 0 else number * factor
