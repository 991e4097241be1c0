"""``StickyPrimaryMiddleware``: read-your-writes across requests.

Each request runs in its own routing scope, opened with the token the client carries
(cookie, or the ``X-PgReplica-Token`` header for API clients). After a request that wrote,
the response carries a new token: in lsn mode the primary's WAL position taken after the
view's transaction committed, in time mode just the write time. Place it first in
MIDDLEWARE so the token is taken after SessionMiddleware has saved the session.

With READ_YOUR_WRITES_SCOPE="user" the token of a logged-in user's writing request is also
stored for the user (:mod:`.consistency.users`), and a request of that user reads with the
newer of its own token and the user's: the user is looked up at the request's first read
that could go to a replica, once ``request.user`` is set (by AuthenticationMiddleware, or
later by the view's own authentication, as Django REST framework does).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase

from . import clock
from .conf import Settings, get_settings
from .consistency import (
    ConsistencyToken,
    RoutingState,
    begin,
    decode_token,
    encode_token,
    end,
    outgoing_token,
    users,
)
from .health import replayed_everywhere

GetResponse = Callable[[HttpRequest], Any]


def token_from_request(request: HttpRequest, settings: Settings) -> ConsistencyToken | None:
    """The newest valid token the client sent; anything forged or expired is ignored."""
    found: ConsistencyToken | None = None
    for value in (
        request.COOKIES.get(settings.cookie_name),
        request.META.get(settings.header_meta_key),
    ):
        token = decode_token(value, settings)
        if token is not None:
            found = token.newer(found)
    return found


class UserLookup:
    """The per-user write position of the request's user, once one is known."""

    def __init__(self, request: HttpRequest, settings: Settings) -> None:
        self.request = request
        self.settings = settings
        self.seen: object = None  # the request.user object already looked at

    def __call__(self) -> tuple[bool, ConsistencyToken | None]:
        user = self.request.__dict__.get("user")  # not set before AuthenticationMiddleware
        if user is None or user is self.seen:
            return False, None
        self.seen = user
        try:
            authenticated = bool(user.is_authenticated)  # a lazy user loads here
        except Exception:  # e.g. on the event loop: try again at a later read
            self.seen = None
            return False, None
        if not authenticated:
            return False, None  # a view may still authenticate it (token auth)
        return True, users.load(self.settings, user.pk)


def request_user_id(request: HttpRequest) -> Any:
    """The logged-in user's pk, or None (also when no auth middleware set request.user)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return user.pk


def begin_request(request: HttpRequest, settings: Settings) -> tuple[RoutingState, Token[Any]]:
    state, var_token = begin(token_from_request(request, settings))
    if settings.per_user:
        state.user_lookup = UserLookup(request, settings)
    return state, var_token


def drop_replayed_token(
    request: HttpRequest, response: HttpResponseBase, state: RoutingState, settings: Settings
) -> None:
    """Delete a token cookie every replica has replayed: it has nothing left to say."""
    carried = state.token
    need = None if carried is None else carried.position
    if (
        not state.wrote
        and need is not None
        and settings.cookie_name in request.COOKIES
        and replayed_everywhere(settings.replicas, need)
    ):
        samesite: Any = settings.cookie_samesite  # one of SAMESITE_VALUES
        response.delete_cookie(settings.cookie_name, samesite=samesite)


def attach_token(
    request: HttpRequest, response: HttpResponseBase, state: RoutingState, settings: Settings
) -> None:
    """Give the client its new token after a request that wrote (reads the WAL position),
    and with READ_YOUR_WRITES_SCOPE="user" store it for the logged-in user too."""
    if not state.wrote:
        return
    token = outgoing_token(state)
    if token is None:
        return
    if settings.per_user:
        user_id = request_user_id(request)  # after a logout: nobody's any more
        if user_id is not None:
            users.remember(settings, user_id, token)
    value = encode_token(token)
    remaining = token.lifetime(settings) - (clock.wall() - token.written_at)
    response.set_cookie(
        settings.cookie_name,
        value,
        max_age=max(1, math.ceil(remaining)),
        secure=settings.cookie_secure,
        httponly=True,
        samesite=settings.cookie_samesite,  # type: ignore[arg-type]  # one of SAMESITE_VALUES
    )
    response[settings.header_name] = value


class StickyPrimaryMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        settings = get_settings()
        state, var_token = begin_request(request, settings)
        response: HttpResponseBase | None = None
        try:
            response = self.get_response(request)
            drop_replayed_token(request, response, state, settings)
            attach_token(request, response, state, settings)
        finally:
            _end_after(response, var_token)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        settings = get_settings()
        state, var_token = begin_request(request, settings)
        response: HttpResponseBase | None = None
        try:
            get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
            response = await get_response(request)
            drop_replayed_token(request, response, state, settings)
            if state.wrote:
                # the WAL position query is blocking I/O on the primary connection
                await sync_to_async(attach_token)(request, response, state, settings)
        finally:
            _end_after(response, var_token)
        return response


def _end_after(response: HttpResponseBase | None, var_token: Token[Any]) -> None:
    """Close the scope now, or when a streaming body has been sent: it reads after we return."""
    if response is not None and response.streaming:
        # Django's own hook for work after the body is sent (it closes the response with it).
        response._resource_closers.append(  # type: ignore[attr-defined]
            functools.partial(end, var_token)
        )
    else:
        end(var_token)
