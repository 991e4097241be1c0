from __future__ import annotations

import pytest

from django_pgreplica.lsn import format_lsn, parse_lsn, record_end_lsn


def test_round_trip() -> None:
    assert parse_lsn("16/B374D848") == 0x16B374D848
    assert format_lsn(0x16B374D848) == "16/B374D848"
    assert parse_lsn("0/0") == 0
    assert parse_lsn(None) is None


def test_order_is_numeric_not_textual() -> None:
    a, b = parse_lsn("0/9000000"), parse_lsn("0/10000000")
    assert a is not None and b is not None and a < b


@pytest.mark.parametrize("bad", ["", "16", "xyz/1", "1/zz"])
def test_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_lsn(bad)


def test_record_end_skips_a_page_header_only_at_a_page_boundary() -> None:
    page, segment = 8192, 16 << 20
    assert record_end_lsn(3 * page + 24) == 3 * page  # short header mid-segment
    assert record_end_lsn(segment + 40) == segment  # long header at a segment start
    assert record_end_lsn(segment + 24) == segment + 24  # inside a long header: a record
    assert record_end_lsn(3 * page + 100) == 3 * page + 100
    assert record_end_lsn(3 * page + 24, wal_block_size=page) == 3 * page
