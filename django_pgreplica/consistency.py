"""Read-your-writes state: what the current request or task wrote and what the client saw.

State lives in a ContextVar holding a small mutable object. Each request or task gets its
own object (:func:`scope`); code that runs in a copied context (``sync_to_async``, ASGI
tasks) shares it, so a write made in a thread-pool helper still pins the request.

Outside any scope (shell, management commands, test bodies) nothing is remembered: a write
there pins nothing, so a long-running script or a test session is never stuck on the
primary. Reads inside ``transaction.atomic()`` still go to the primary, and a unit of work
that must read its own writes can run in ``with scope():`` or ``with use_primary():``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from contextvars import Token as VarToken
from dataclasses import dataclass, field
from typing import Any

from django.core import signing
from django.db import connections

from .conf import Settings, get_settings
from .health import ReplicaHealth, fetch_one
from .lsn import WAL_POSITION_SQL, format_lsn, parse_lsn, wal_target

logger = logging.getLogger("django_pgreplica.consistency")

TOKEN_SALT = "django_pgreplica.token"


@dataclass(frozen=True)
class ConsistencyToken:
    """What a client must see: the primary's WAL position after its write (lsn mode) and
    when it wrote (both modes). ``lsn`` is None in time mode."""

    written_at: float
    lsn: int | None = None

    def expired(self, sticky_seconds: float, now: float) -> bool:
        return now - self.written_at > sticky_seconds

    def newer(self, other: ConsistencyToken | None) -> ConsistencyToken:
        if other is None:
            return self
        if (self.lsn or 0, self.written_at) >= (other.lsn or 0, other.written_at):
            return self
        return other


def encode_token(token: ConsistencyToken) -> str:
    """A signed, URL- and cookie-safe string (Django's signing, SECRET_KEY)."""
    payload = [format_lsn(token.lsn) if token.lsn is not None else "", round(token.written_at, 3)]
    return signing.dumps(payload, salt=TOKEN_SALT, compress=False)


def decode_token(
    value: str | None, sticky_seconds: float, now: float | None = None
) -> ConsistencyToken | None:
    """The token in ``value``, or None when it is missing, forged, garbled or expired."""
    if not value:
        return None
    try:
        lsn_text, written_at = signing.loads(value, salt=TOKEN_SALT)
        token = ConsistencyToken(
            written_at=float(written_at), lsn=parse_lsn(lsn_text) if lsn_text else None
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    current = time.time() if now is None else now
    if token.expired(sticky_seconds, current) or token.written_at > current + 60:
        return None
    return token


@dataclass
class RoutingState:
    """Routing facts of one request or task."""

    token: ConsistencyToken | None = None  # carried in by the client or task headers
    wrote: bool = False  # this scope wrote to the primary
    wrote_at: float | None = None
    forced: int = 0  # depth of use_primary() blocks
    chosen: ReplicaHealth | None = None  # the replica chosen for this scope
    token_asked: set[str] = field(default_factory=set)  # replicas asked for their position
    failed: set[str] = field(default_factory=set)  # replicas that failed in this scope
    primary_connection: tuple[int, Any] | None = None  # (thread id, wrapper): router cache
    issued: ConsistencyToken | None = None  # token handed out since the last write

    @property
    def replica(self) -> str | None:
        return None if self.chosen is None else self.chosen.alias

    def mark_write(self) -> None:
        self.wrote = True
        self.wrote_at = time.time()
        self.issued = None


_state: ContextVar[RoutingState | None] = ContextVar("django_pgreplica_state", default=None)


def current_state() -> RoutingState:
    """The current scope's state; outside a scope a throwaway one that remembers nothing."""
    state = _state.get()
    return RoutingState() if state is None else state


def active_state() -> RoutingState | None:
    """The current scope's state, or None outside any scope."""
    return _state.get()


def begin(token: ConsistencyToken | None = None) -> tuple[RoutingState, VarToken[Any]]:
    """Start a fresh scope; pass the returned var-token to :func:`end`."""
    state = RoutingState(token=token)
    return state, _state.set(state)


def end(var_token: VarToken[Any]) -> None:
    try:
        _state.reset(var_token)
    except ValueError:
        # Reset from another context (a streaming body finished elsewhere): a fresh
        # scope is set by the next request anyway.
        _state.set(None)


@contextmanager
def scope(token: ConsistencyToken | None = None) -> Iterator[RoutingState]:
    """Run a block as one request/task would: its own writes pin only itself."""
    state, var_token = begin(token)
    try:
        yield state
    finally:
        end(var_token)


def reset_state() -> None:
    """Leave any scope this context is in and forget writes made outside scopes (tests)."""
    _state.set(None)
    unscoped_writes.reset()


# Statements that never change data. Anything else seen on the primary counts as a write,
# so raw SQL, update(), bulk_create() and deletes all pin (db_for_write alone misses them).
_READ_KEYWORDS = frozenset(
    {
        "SELECT", "SHOW", "EXPLAIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "START",
        "COMMIT", "END", "SET", "RESET", "VALUES", "FETCH", "DECLARE", "CLOSE", "MOVE",
        "TABLE", "DISCARD",
    }
)  # fmt: skip
_FIRST_WORD = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*\(?\s*([A-Za-z]+)", re.DOTALL)
_DATA_CHANGING = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


def is_write_sql(sql: str) -> bool:
    match = _FIRST_WORD.match(sql)
    if match is None:
        return True
    word = match.group(1).upper()
    if word == "WITH":  # a CTE may hide an INSERT/UPDATE/DELETE
        return _DATA_CHANGING.search(sql) is not None
    return word not in _READ_KEYWORDS


def write_detector(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    """``execute_wrapper`` for the primary: marks the current scope as having written.

    A write outside any scope (a script, a test body, ``client.force_login()``) marks the
    process instead: see :class:`UnscopedWrites`.
    """
    if isinstance(sql, str) and is_write_sql(sql):
        state = _state.get()
        if state is None:
            unscoped_writes.dirty = unscoped_writes.pending = True
        else:
            state.mark_write()
    return execute(sql, params, many, context)


class UnscopedWrites:
    """Writes made outside any request or task, as a WAL position every read must respect.

    Code outside a scope keeps no pin, but what it wrote must not look lost to the
    requests and tasks of the same process that come after it: a test that logs a user
    in and then requests a page, a script that creates a row and then serves it. The
    first routing decision after such writes reads the primary's position once; until the
    replicas have replayed it, a replica that has not is skipped (reason ``token-wait``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget earlier writes (tests: the previous test's flush is nothing to wait for)."""
        self.dirty = False  # written since the position was last read
        self.lsn: int | None = None  # position the replicas must reach
        self.pending = False  # dirty or lsn set: the router's one cheap check

    def required(self, primary: str) -> int | None:
        """The position reads must wait for, if any (hot path: two attribute reads)."""
        if self.dirty:
            with self._lock:
                if self.dirty:
                    self.dirty = False
                    try:
                        self.lsn = current_wal_lsn(primary)
                    except Exception as exc:  # primary down: nothing newer can be read
                        logger.warning("primary %s: WAL position unreadable (%s)", primary, exc)
                    self.pending = self.dirty or self.lsn is not None
        return self.lsn

    def passed(self, lsn: int) -> None:
        """Every replica has replayed ``lsn``: stop checking (unless newer writes came)."""
        if self.lsn == lsn:
            self.lsn = None
            self.pending = self.dirty


unscoped_writes = UnscopedWrites()


class use_primary:
    """Send every read in a block (or decorated function) to the primary.

    Works as ``with use_primary():`` and as ``@use_primary()`` / ``@use_primary`` on sync
    and async functions. Nesting is fine.
    """

    def __new__(cls, func: Any = None) -> Any:
        self = super().__new__(cls)
        self._entered = []
        if func is not None and callable(func):
            return self(func)  # bare @use_primary
        return self

    _entered: list[tuple[RoutingState, VarToken[Any] | None]]

    def __enter__(self) -> None:
        state = _state.get()
        opened = None
        if state is None:  # outside any scope: the block becomes one
            state, opened = begin()
        state.forced += 1
        self._entered.append((state, opened))

    def __exit__(self, *exc: object) -> None:
        state, opened = self._entered.pop()
        state.forced -= 1
        if opened is not None:
            end(opened)

    def __call__(self, func: Any) -> Any:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                with use_primary():
                    return await func(*args, **kwargs)

            return async_inner

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with use_primary():
                return func(*args, **kwargs)

        return inner


def current_wal_lsn(primary: str) -> int:
    """The end of the primary's last WAL record: every write committed so far lies before it.

    Taken after commit, so a replica that has replayed up to here shows the writes.
    """
    return wal_target(fetch_one(primary, WAL_POSITION_SQL))


def outgoing_token(state: RoutingState) -> ConsistencyToken | None:
    """The token to hand on (to the client or a task) after this scope, if any.

    A scope that wrote gets a fresh one; otherwise the token it came with is passed on.
    In lsn mode an unreachable primary degrades to a time token instead of failing.
    """
    settings = get_settings()
    mode = settings.read_your_writes
    if mode == "off":
        return None
    if not state.wrote:
        return state.token
    if state.issued is not None:  # e.g. many tasks published after one write
        return state.issued
    token = _fresh_token(settings, state)
    # Inside a transaction the position lies before the coming commit record: good enough
    # for that message, not for a later one sent after the commit.
    if not connections[settings.primary].in_atomic_block:
        state.issued = token
    return token


def _fresh_token(settings: Settings, state: RoutingState) -> ConsistencyToken:
    mode = settings.read_your_writes
    written_at = state.wrote_at or time.time()
    if mode == "time":
        return ConsistencyToken(written_at=written_at)
    try:
        lsn = current_wal_lsn(settings.primary)
    except Exception as exc:
        logger.warning(
            "primary %s: could not read WAL position (%s); pinning for %gs instead",
            settings.primary,
            exc,
            settings.sticky_seconds,
        )
        return ConsistencyToken(written_at=written_at)
    return ConsistencyToken(written_at=written_at, lsn=lsn).newer(state.token)
