"""PostgreSQL WAL positions (``pg_lsn``) as plain integers, so comparing is ``>=``.

No Django imports: the cluster tool uses this module too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, overload

# The primary's insert position plus what record_end_lsn() needs to interpret it, and the
# timeline it writes on (the first 8 hex digits of its current WAL file's name): an LSN
# means something only within one timeline, and a failover starts a new one.
WAL_POSITION_SQL = (
    "SELECT pg_current_wal_insert_lsn()::text, current_setting('wal_block_size')::int, "
    "pg_size_bytes(current_setting('wal_segment_size')), "
    "('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int"
)


class Position(NamedTuple):
    """A WAL position and the timeline it is on (None: unknown, compare positions only)."""

    lsn: int
    timeline: int | None = None

    def covers(self, need: Position) -> bool:
        """Does a server that has replayed up to here show every write up to ``need``? Only
        on the same timeline: a server on another one may have forked before ``need``."""
        if need.timeline is not None and self.timeline != need.timeline:
            return False
        return self.lsn >= need.lsn


# XLOG page header sizes (access/xlog_internal.h): a segment's first page has the long one.
SHORT_PAGE_HEADER = 24
LONG_PAGE_HEADER = 40


@overload
def parse_lsn(text: str) -> int: ...
@overload
def parse_lsn(text: None) -> None: ...
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


def record_end_lsn(lsn: int, wal_block_size: int = 8192, wal_segment_size: int = 16 << 20) -> int:
    """The end of the last WAL record before the insert position ``lsn``.

    ``pg_current_wal_insert_lsn()`` points past the page header when the last record ended
    exactly on a page boundary, while a replica's ``pg_last_wal_replay_lsn()`` stops at the
    boundary: comparing the raw values would wait until the next write on an idle primary.
    """
    offset = lsn % wal_block_size
    if offset == SHORT_PAGE_HEADER and lsn % wal_segment_size != SHORT_PAGE_HEADER:
        return lsn - SHORT_PAGE_HEADER
    if offset == LONG_PAGE_HEADER and lsn % wal_segment_size == LONG_PAGE_HEADER:
        return lsn - LONG_PAGE_HEADER
    return lsn


def wal_target(row: Sequence[Any]) -> int:
    """The position a replica must replay to show every commit, from a WAL_POSITION_SQL row."""
    lsn, block_size, segment_size = row[:3]
    return record_end_lsn(parse_lsn(str(lsn)), int(block_size), int(segment_size))


def wal_position(row: Sequence[Any]) -> Position:
    """:func:`wal_target` with the primary's timeline, from a WAL_POSITION_SQL row."""
    return Position(wal_target(row), int(row[3]))
