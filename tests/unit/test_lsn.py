from __future__ import annotations

import pytest

from django_pgreplica.lsn import format_lsn, parse_lsn


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
