"""Read-your-writes: what a request or task wrote, and what its client must see.

- :mod:`.tokens` — the signed token format (pure);
- :mod:`.context` — per-request/task :class:`RoutingState` in a ContextVar, ``scope()``,
  ``use_primary``;
- :mod:`.writes` — write detection on the primary, writes made outside any scope;
- :mod:`.positions` — the primary's WAL position and the token handed on after a write;
- :mod:`.users` — write positions per logged-in user in CACHE (READ_YOUR_WRITES_SCOPE="user").
"""

from __future__ import annotations

from . import users
from .context import (
    RoutingState,
    active_state,
    begin,
    current_state,
    end,
    leave_scopes,
    scope,
    use_primary,
)
from .positions import current_wal_lsn, current_wal_position, outgoing_token
from .tokens import ConsistencyToken, decode_token, encode_token
from .writes import is_write_sql, unscoped_writes, write_detector

__all__ = [
    "ConsistencyToken",
    "RoutingState",
    "active_state",
    "begin",
    "current_state",
    "current_wal_lsn",
    "current_wal_position",
    "decode_token",
    "encode_token",
    "end",
    "is_write_sql",
    "outgoing_token",
    "reset_state",
    "scope",
    "unscoped_writes",
    "use_primary",
    "users",
    "write_detector",
]


def reset_state() -> None:
    """Leave any scope this context is in and forget writes made outside scopes (tests)."""
    leave_scopes()
    unscoped_writes.reset()
