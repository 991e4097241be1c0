"""The read-your-writes token: what a client must see, signed so clients cannot forge it."""

from __future__ import annotations

from dataclasses import dataclass

from django.core import signing

from .. import clock
from ..conf import LSN_TOKEN_MAX_SECONDS, Settings
from ..lsn import Position, format_lsn, parse_lsn

TOKEN_SALT = "django_pgreplica.token"
# A token dated further ahead than this was not made by a server with a sane clock.
MAX_CLOCK_SKEW = 60.0


@dataclass(frozen=True)
class ConsistencyToken:
    """What a client must see: the primary's WAL position after its write (lsn mode) and
    when it wrote (both modes). ``lsn`` is None in time mode. ``pin``: an LSN token that
    also pins to the primary for STICKY_SECONDS from ``written_at`` (a later write whose
    position could not be read: the position of the earlier ones still holds after it).
    ``timeline``: the primary's timeline at ``lsn`` (None in tokens of older versions)."""

    written_at: float
    lsn: int | None = None
    pin: bool = False
    timeline: int | None = None

    @property
    def position(self) -> Position | None:
        return None if self.lsn is None else Position(self.lsn, self.timeline)

    def pinned(self, settings: Settings, now: float) -> bool:
        """Must reads go to the primary now (a time pin in force)?"""
        if self.lsn is not None and not self.pin:
            return False
        return now - self.written_at <= settings.sticky_seconds

    def lifetime(self, settings: Settings) -> float:
        """An LSN token lasts until replayed (at most LSN_TOKEN_MAX_SECONDS); a time token
        (time mode, or an unreadable WAL position) STICKY_SECONDS."""
        return settings.sticky_seconds if self.lsn is None else LSN_TOKEN_MAX_SECONDS

    def expired(self, settings: Settings, now: float) -> bool:
        return now - self.written_at > self.lifetime(settings)

    def newer(self, other: ConsistencyToken | None) -> ConsistencyToken:
        if other is None:
            return self
        # A later timeline is newer whatever its positions: a failover came between.
        mine = (self.timeline or 0, self.lsn or 0, self.written_at)
        if mine >= (other.timeline or 0, other.lsn or 0, other.written_at):
            return self
        return other


def encode_token(token: ConsistencyToken) -> str:
    """A signed, URL- and cookie-safe string (Django's signing, SECRET_KEY)."""
    payload: list[object] = [
        format_lsn(token.lsn) if token.lsn is not None else "",
        round(token.written_at, 3),
    ]
    if token.pin or token.timeline is not None:
        payload.append(1 if token.pin else 0)
    if token.timeline is not None:
        payload.append(token.timeline)
    return signing.dumps(payload, salt=TOKEN_SALT, compress=False)


def decode_token(
    value: str | None, settings: Settings, now: float | None = None
) -> ConsistencyToken | None:
    """The token in ``value``, or None when it is missing, forged, garbled or expired."""
    if not value:
        return None
    try:
        lsn_text, written_at, *rest = signing.loads(value, salt=TOKEN_SALT)
        timeline = int(rest[1]) if len(rest) > 1 and lsn_text else None
        token = ConsistencyToken(
            written_at=float(written_at),
            lsn=parse_lsn(lsn_text) if lsn_text else None,
            pin=bool(rest and rest[0]) and bool(lsn_text),
            timeline=timeline if timeline is None or timeline > 0 else None,
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    current = clock.wall() if now is None else now
    if token.expired(settings, current) or token.written_at > current + MAX_CLOCK_SKEW:
        return None
    return token
