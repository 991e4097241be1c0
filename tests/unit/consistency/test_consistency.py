from __future__ import annotations

import asyncio
import time

import pytest
from django.core import signing
from django.test import override_settings

from django_pgreplica.conf import (
    LSN_TOKEN_MAX_SECONDS,
    Settings,
    get_settings,
)
from django_pgreplica.consistency import (
    ConsistencyToken,
    current_state,
    decode_token,
    encode_token,
    is_write_sql,
    scope,
    use_primary,
)
from django_pgreplica.lsn import Position
from tests.support import pgreplica_settings


def settings(**overrides: object) -> Settings:
    with pgreplica_settings(**overrides):
        return get_settings()


def test_token_round_trip() -> None:
    now = time.time()
    token = ConsistencyToken(written_at=now, lsn=0x1_0000_00A0)
    decoded = decode_token(encode_token(token), settings(), now=now + 1)
    assert decoded == ConsistencyToken(written_at=round(now, 3), lsn=0x1_0000_00A0)


def test_a_token_carries_its_timeline_and_older_tokens_still_decode() -> None:
    now = time.time()
    for token in (
        ConsistencyToken(written_at=round(now, 3), lsn=500, timeline=3),
        ConsistencyToken(written_at=round(now, 3), lsn=500, pin=True, timeline=3),
        ConsistencyToken(written_at=round(now, 3), lsn=500, pin=True),
    ):
        assert decode_token(encode_token(token), settings(), now=now) == token
    # What an earlier version wrote: [lsn, written_at] and no timeline.
    older = signing.dumps(["0/1F4", round(now, 3)], salt="django_pgreplica.token", compress=False)
    decoded = decode_token(older, settings(), now=now)
    assert decoded is not None and decoded.position == Position(500, None)


def test_a_later_timeline_is_newer_whatever_the_positions() -> None:
    before = ConsistencyToken(written_at=10.0, lsn=900, timeline=1)
    after = ConsistencyToken(written_at=11.0, lsn=100, timeline=2)
    assert after.newer(before) is after and before.newer(after) is after


def test_time_token_has_no_lsn() -> None:
    now = time.time()
    decoded = decode_token(encode_token(ConsistencyToken(written_at=now)), settings(), now)
    assert decoded is not None and decoded.lsn is None


def test_an_lsn_token_lasts_until_replayed_whatever_the_lag_limit() -> None:
    """Nothing bounds how long a replica may lack the write (cut off from the primary, or
    read as a last resort), so neither STICKY_SECONDS nor MAX_LAG_SECONDS ends the token."""
    now = time.time()
    value = encode_token(ConsistencyToken(written_at=now, lsn=1))
    for conf in (settings(STICKY_SECONDS=1, MAX_LAG_SECONDS=30), settings(MAX_LAG_SECONDS=None)):
        assert decode_token(value, conf, now=now + 3600) is not None
        assert decode_token(value, conf, now=now + LSN_TOKEN_MAX_SECONDS + 1) is None


def test_a_time_token_lasts_sticky_seconds() -> None:
    conf = settings(STICKY_SECONDS=5)
    now = time.time()
    value = encode_token(ConsistencyToken(written_at=now))
    assert decode_token(value, conf, now=now + 4.5) is not None
    assert decode_token(value, conf, now=now + 5.5) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "a:b:c",
        signing.dumps(["0/1", time.time()], salt="other-salt"),
        signing.dumps("not-a-list", salt="django_pgreplica.token"),
        signing.dumps(["zz/zz", time.time()], salt="django_pgreplica.token"),
        signing.dumps(["0/1", "yesterday"], salt="django_pgreplica.token"),
    ],
)
def test_forged_or_garbled_tokens_are_ignored(value: str) -> None:
    assert decode_token(value, settings()) is None


def test_token_signed_with_another_key_is_ignored() -> None:
    with override_settings(SECRET_KEY="another-secret-key-for-this-test-only-0123456789"):
        value = encode_token(ConsistencyToken(written_at=time.time(), lsn=5))
    assert decode_token(value, settings()) is None


def test_newer_prefers_the_higher_position() -> None:
    a = ConsistencyToken(written_at=10, lsn=100)
    b = ConsistencyToken(written_at=11, lsn=50)
    assert a.newer(b) is a and b.newer(a) is a and a.newer(None) is a


@pytest.mark.parametrize(
    ("sql", "write"),
    [
        ('SELECT "shop_product"."id" FROM "shop_product"', False),
        ("  /* comment */ -- another\n select 1", False),
        ("SELECT ... FOR UPDATE", False),
        ("SAVEPOINT s1", False),
        ("RELEASE SAVEPOINT s1", False),
        ("ROLLBACK TO SAVEPOINT s1", False),
        ("SET TIME ZONE 'UTC'", False),
        ("WITH x AS (SELECT 1) SELECT * FROM x", False),
        ('INSERT INTO "t" VALUES (1)', True),
        ('UPDATE "t" SET a = 1', True),
        ('DELETE FROM "t"', True),
        ("insert into t values (1)", True),
        ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", True),
        ("CREATE TABLE t (id int)", True),
        ("TRUNCATE t", True),
        ("COPY t FROM STDIN", True),
        ("", True),
    ],
)
def test_write_classification(sql: str, write: bool) -> None:
    assert is_write_sql(sql) is write


def test_scopes_are_isolated() -> None:
    with scope() as outer:
        outer.mark_write()
        with scope() as inner:
            assert current_state() is inner and not inner.wrote
        assert current_state() is outer and outer.wrote


def test_use_primary_as_context_manager_and_decorators() -> None:
    with scope() as state:
        with use_primary():
            assert state.forced == 1
            with use_primary():
                assert state.forced == 2
        assert state.forced == 0

        @use_primary
        def bare() -> int:
            return current_state().forced

        @use_primary()
        def called() -> int:
            return current_state().forced

        @use_primary()
        async def coro() -> int:
            await asyncio.sleep(0)
            return current_state().forced

        assert (bare(), called(), asyncio.run(coro())) == (1, 1, 1)
        assert state.forced == 0


def test_use_primary_outside_a_scope_opens_one_for_the_block() -> None:
    from django_pgreplica.consistency import active_state

    assert active_state() is None
    with use_primary():
        state = active_state()
        assert state is not None and state.forced == 1
    assert active_state() is None


def test_writes_outside_a_scope_are_not_remembered() -> None:
    from django_pgreplica.consistency import active_state, write_detector

    write_detector(lambda *a: None, "UPDATE t SET a = 1", None, False, {})
    assert active_state() is None
    assert not current_state().wrote
