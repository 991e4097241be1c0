"""Background probes of failed replicas, so no user's request ever waits on one.

A replica that failed (a refused or timed-out connection, a query cut off) is *suspect*:
the router skips it, and a daemon thread per suspect replica probes it every
HEALTH_CHECK_INTERVAL on a short-lived connection of its own (a hung host costs that thread
``connect_timeout``, nobody's request). The thread ends when the replica is back. Threads
do not survive ``fork()``: each worker of a forking server (gunicorn, Celery prefork)
starts its own the first time it finds a replica suspect.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from ..conf import get_settings
from .shared import lead

if TYPE_CHECKING:
    from .replica import ReplicaHealth

logger = logging.getLogger("django_pgreplica.health")

# How long a thread whose pool handed out no connection waits for a probe of its own
# connection to say why: a live or refusing server answers within milliseconds.
PROBE_GRACE = 0.2

# id(health) -> (pid, thread): a health replaced after a settings change gets its own thread
# while the old one winds down.
_threads: dict[int, tuple[int, threading.Thread]] = {}
_lock = threading.Lock()


def _running(key: int, pid: int) -> bool:
    entry = _threads.get(key)
    return entry is not None and entry[0] == pid and entry[1].is_alive()


def watch(health: ReplicaHealth, *, at_once: bool = False) -> None:
    """Make sure a background thread of this process is probing ``health`` (cheap when one
    already is: a dict lookup). ``at_once``: probe it now even if it is not suspect (a
    pool that timed out says nothing of the server by itself)."""
    key, pid = id(health), os.getpid()
    if _running(key, pid):
        return
    with _lock:
        if _running(key, pid):
            return
        thread = threading.Thread(
            target=_probe_until_back,
            args=(health, at_once),
            name=f"pgreplica-probe-{health.alias}",
            daemon=True,
        )
        _threads[key] = (pid, thread)
        thread.start()


def check_now(health: ReplicaHealth, grace: float = PROBE_GRACE) -> bool | None:
    """Probe ``health`` in the background now and wait up to ``grace`` for the result:
    True it answered, False it failed (recorded), None no result yet (a hung server)."""
    before = health.last
    watch(health, at_once=True)
    deadline = time.monotonic() + grace
    while health.last is before and time.monotonic() < deadline:
        time.sleep(0.01)
    last = health.last
    return None if last is before or last is None else last.ok


def _probe_until_back(health: ReplicaHealth, at_once: bool) -> None:
    try:
        if at_once:
            health.probe(own_connection=True)
        while health.suspect and not health.retired:
            if lead(health.alias):  # with CACHE, one process probes for the fleet
                health.probe(own_connection=True)
            if not health.suspect:
                break
            time.sleep(get_settings().health_check_interval)
    except Exception:  # never let a probe thread die silently
        logger.exception("replica %s: background probe failed", health.alias)
    finally:
        with _lock:
            entry = _threads.get(id(health))
            if entry is not None and entry[1] is threading.current_thread():
                del _threads[id(health)]


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a lock held by another thread at fork() stays held forever
    _threads.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
