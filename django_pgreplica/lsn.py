"""PostgreSQL WAL positions (``pg_lsn``) as plain integers, so comparing is ``>=``."""

from __future__ import annotations


def parse_lsn(text: str | None) -> int | None:
    """``'16/B374D848'`` -> ``0x16B374D848``; None stays None (no WAL received yet)."""
    if text is None:
        return None
    high, _, low = text.partition("/")
    if not low:
        raise ValueError(f"not a pg_lsn: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    """The inverse of :func:`parse_lsn`, in PostgreSQL's own spelling."""
    if value < 0:
        raise ValueError("an LSN is never negative")
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
