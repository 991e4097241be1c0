"""Where routing state lives: one small mutable object per request or task, in a ContextVar.

Each request or task gets its own :class:`RoutingState` (:func:`scope`); code that runs
in a copied context (``sync_to_async``, ASGI tasks) shares it, so a write made in a
thread-pool helper still pins the request.

Outside any scope (shell, management commands, test bodies) writes pin nothing, so a long
script or a test session is never stuck on the primary. Reads there still keep their
replica from one call to the next (an unscoped state per context that never records a
write), so the router costs as little in a script as in a request.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from contextvars import Token as VarToken
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import clock
from .tokens import ConsistencyToken

if TYPE_CHECKING:
    from ..health import ReplicaHealth


@dataclass
class RoutingState:
    """Routing facts of one request or task (or, with ``scoped=False``, of code outside
    any: then it only caches the chosen replica and never records a write)."""

    token: ConsistencyToken | None = None  # carried in by the client or task headers
    wrote: bool = False  # this scope wrote to the primary
    wrote_at: float | None = None
    forced: int = 0  # depth of use_primary() blocks
    chosen: ReplicaHealth | None = None  # the replica chosen for this scope
    chosen_key: tuple[str, str] = ("", "")  # the router's counter key for ``chosen``
    token_asked: set[str] = field(default_factory=set)  # replicas asked for their position
    failed: set[str] = field(default_factory=set)  # replicas that failed in this scope
    # The router's per-thread cache: (thread id, settings, primary connection, read counts)
    thread_cache: tuple[int, Any, Any, Any] | None = None
    issued: ConsistencyToken | None = None  # token handed out since the last write
    replay_waited: float = 0.0  # seconds this scope spent waiting for replay
    ramped_out: bool = False  # the last choice passed over a replica ramping up
    # READ_YOUR_WRITES_SCOPE="user": looks up the logged-in user's write position; returns
    # (settled, token): not settled while no user is known yet (it may log in mid-request)
    user_lookup: Callable[[], tuple[bool, ConsistencyToken | None]] | None = None
    scoped: bool = True

    @property
    def replica(self) -> str | None:
        return None if self.chosen is None else self.chosen.alias

    def choose(self, health: ReplicaHealth, key: tuple[str, str]) -> None:
        self.chosen = health
        self.chosen_key = key

    def resolve_user(self) -> None:
        """Fold the user's write position into :attr:`token` once the user is known.
        Reads made while looking (the session, the user row) see the client's token only."""
        lookup = self.user_lookup
        if lookup is None:
            return
        self.user_lookup = None
        settled, token = lookup()
        if token is not None:
            self.token = token.newer(self.token)
        if not settled:
            self.user_lookup = lookup

    def mark_write(self) -> None:
        self.wrote = True
        self.wrote_at = clock.wall()
        self.issued = None


# Outside any scope it holds an unscoped state (made on first use) or None.
_state: ContextVar[RoutingState | None] = ContextVar("django_pgreplica_state", default=None)


def current_state() -> RoutingState:
    """The current scope's state; outside a scope, the context's unscoped state."""
    state = _state.get()
    if state is None:
        state = RoutingState(scoped=False)
        _state.set(state)
    return state


def active_state() -> RoutingState | None:
    """The current scope's state, or None outside any scope."""
    state = _state.get()
    return state if state is not None and state.scoped else None


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


def leave_scopes() -> None:
    """Leave any scope this context is in and drop its unscoped cache (tests)."""
    _state.set(None)


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
        state = active_state()
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
