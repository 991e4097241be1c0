"""Per-user write positions (READ_YOUR_WRITES_SCOPE="user") with a process-local cache."""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.http import HttpRequest

from django_pgreplica.clock import FakeClock
from django_pgreplica.conf import get_settings
from django_pgreplica.consistency import ConsistencyToken, RoutingState, users
from django_pgreplica.lsn import Position
from django_pgreplica.middleware import UserLookup
from tests.support import pgreplica_settings


class FakeUser:
    def __init__(self, pk: int | None) -> None:
        self.pk = pk
        self.is_authenticated = pk is not None


def per_user(**overrides: Any) -> Any:
    return pgreplica_settings(READ_YOUR_WRITES_SCOPE="user", CACHE="local", **overrides)


def test_the_later_position_wins_and_the_record_expires(clock: FakeClock) -> None:
    caches["local"].clear()
    with per_user(STICKY_SECONDS=2, READ_YOUR_WRITES="time"):
        settings = get_settings()
        assert settings.per_user
        users.remember(settings, 7, ConsistencyToken(written_at=clock.wall() - 1))
        users.remember(settings, 7, ConsistencyToken(written_at=clock.wall() - 1.5))
        found = users.load(settings, 7)
        assert found is not None and found.written_at == clock.wall() - 1  # not the older
        clock.advance(1.5)  # past STICKY_SECONDS since that write
        assert users.load(settings, 7) is None
        assert users.load(settings, 8) is None


def test_user_scope_needs_a_cache_and_a_mode() -> None:
    with pgreplica_settings(READ_YOUR_WRITES_SCOPE="user"):
        assert not get_settings().per_user  # E008 says why
    with per_user(READ_YOUR_WRITES="off"):
        assert not get_settings().per_user


def test_the_lookup_waits_for_a_user_and_takes_the_newer_token(clock: FakeClock) -> None:
    caches["local"].clear()
    with per_user():
        settings = get_settings()
        users.remember(settings, 3, ConsistencyToken(written_at=clock.wall(), lsn=500))
        request = HttpRequest()
        state = RoutingState(token=ConsistencyToken(written_at=clock.wall() - 5, lsn=100))
        state.user_lookup = UserLookup(request, settings)
        state.resolve_user()  # no auth middleware ran yet
        assert state.user_lookup is not None and state.token.lsn == 100
        request.user = FakeUser(None)  # type: ignore[assignment]  # anonymous so far
        state.resolve_user()
        assert state.user_lookup is not None and state.token.lsn == 100
        request.user = FakeUser(3)  # type: ignore[assignment]  # the view authenticated it
        state.resolve_user()
        assert state.user_lookup is None and state.token.lsn == 500


def test_a_pinned_lsn_token_pins_then_still_needs_its_position(clock: FakeClock) -> None:
    from django_pgreplica.consistency import decode_token, encode_token
    from django_pgreplica.routing.select import pending

    with pgreplica_settings(STICKY_SECONDS=5):
        settings = get_settings()
        token = ConsistencyToken(written_at=clock.wall(), lsn=700, pin=True)
        again = decode_token(encode_token(token), settings)
        assert again is not None and again.pin and again.lsn == 700
        assert pending(settings, RoutingState(token=again)) == (True, None)
        clock.advance(6)  # the pin is over; the earlier writes' position still holds
        assert pending(settings, RoutingState(token=again)) == (False, Position(700))
        plain = decode_token(
            encode_token(ConsistencyToken(written_at=clock.wall(), lsn=9)), settings
        )
        assert plain is not None and not plain.pin
