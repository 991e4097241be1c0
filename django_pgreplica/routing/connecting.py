"""What happens when Django opens a connection to the primary or a replica.

Django opens connections in ``DatabaseWrapper.connect()``, with no hook before it, so
:func:`install` gives the engine's wrapper class a ``connect`` that, for:

- **the primary alias**, waits out a failover (:func:`.failover.connect_waiting`, up to
  PRIMARY_WAIT_SECONDS; not inside :func:`~django_pgreplica.db.not_waiting`), and notes
  the server it reached (``PrimaryHealth.server``);
- **a replica alias with one host**, announces the attempt to the other processes of this
  host and refuses at once when one of them is stuck connecting to that server or just
  failed (:mod:`..health.attempts`): a hung replica holds only the first requests.

Every other alias goes straight to Django's own ``connect``.
"""

from __future__ import annotations

import functools
from typing import Any

import psycopg
from django.db import OperationalError, connections

from ..conf import get_settings
from ..db import may_refuse_replica, may_wait_for_primary
from ..health import attempts, primary_health
from ..health.probe import PROBE_CONNECT_TIMEOUT
from .failover import connect_waiting
from .pool import connect_timeout


def _connect_replica(original: Any, wrapper: Any, server: str, recent: float) -> None:
    # An attempt lasts at most its connect_timeout (libpq: per host; here one host).
    timeout = connect_timeout(wrapper.settings_dict.get("OPTIONS") or {})
    longest = (timeout or PROBE_CONNECT_TIMEOUT) + 1.0
    refusal = attempts.refusal(server, recent, longest)
    if refusal is not None:
        raise OperationalError(f"not connecting to replica {wrapper.alias}: {refusal}")
    attempts.begin(server, longest)
    try:
        original(wrapper)
    except (OperationalError, psycopg.Error):
        attempts.end(server, failed=True)
        raise
    except BaseException:  # e.g. called from the event loop: it never tried
        attempts.end(server, failed=False)
        raise
    attempts.end(server, failed=False)


def install() -> None:
    """Wrap the engine's ``connect`` of the primary's wrapper class (idempotent)."""
    settings = get_settings()
    wrapper_class = type(connections[settings.primary])
    if getattr(wrapper_class.connect, "pgreplica", False):
        return
    original = wrapper_class.connect

    @functools.wraps(original)
    def connect(self: Any) -> None:
        current = get_settings()
        if self.alias == current.primary:
            wait = current.primary_wait_seconds
            if wait > 0 and may_wait_for_primary():
                connect_waiting(lambda: original(self), self.alias, wait)
            else:
                original(self)
            raw = self.connection
            if raw is not None:
                primary_health().server = f"{raw.info.host}:{raw.info.port}"
            return None
        elif self.alias in current.replicas:
            server = attempts.server_of(self.alias)
            if server is not None and may_refuse_replica():
                return _connect_replica(original, self, server, current.health_check_interval)
        return original(self)

    connect.pgreplica = True  # type: ignore[attr-defined]
    wrapper_class.connect = connect  # type: ignore[method-assign]
