"""Connection attempts to a replica, seen by every process on this host.

A hung replica (a stopped postmaster, a frozen VM) accepts TCP and never answers: each
connection attempt waits ``connect_timeout``, and nothing is known until the first one
runs out. Every worker of a pre-fork server that reads meanwhile would wait too, shared
health or not (CACHE learns of the hang only when that first attempt fails). So attempts
are announced in a small file per server in the temporary directory (three doubles,
memory-mapped, no lock: a torn read costs one wrong guess, not an error):

- ``started``: when the oldest attempt still in flight began (0 or older than ``ended``:
  none is in flight);
- ``ended``: when the last attempt ended;
- ``failed``: when the last attempt failed (0 once one got in again), and by which process.

A process takes only the others' word: what it saw itself, its own health already knows.

A process about to connect to a server where another process failed to within the last
HEALTH_CHECK_INTERVAL, or where an attempt has been in flight for :data:`STUCK_AFTER`,
does not connect: its read goes elsewhere, and the replica is probed in the background as
after any failure. One that finds an attempt in flight waits until some attempt ends (the
server answers: it connects too, a few milliseconds late) or the attempt is STUCK_AFTER
old (taken for a hang). So only the requests already connecting when the server hung pay
``connect_timeout``; the rest pay at most STUCK_AFTER. (Letting the first milliseconds'
newcomers connect at once, as this module did, cost a hung replica 3-6 slow requests
across 8 workers at 10 reads/s each instead of about 1.) The background prober's own
attempts are not announced: they never hold a request.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import struct
import tempfile
import threading
from pathlib import Path

from django.db import connections

from .. import clock
from ..db import members

logger = logging.getLogger("django_pgreplica.health")

# A connection attempt to a live server takes milliseconds (3 ms on loopback, tens with
# TLS over a network): one still in flight after STUCK_AFTER is taken for a hang.
STUCK_AFTER = 0.3
POLL = 0.001
# started, ended, failed (wall clock: shared by processes), the pid that failed
_LAYOUT = struct.Struct("dddq")

_lock = threading.Lock()
_maps: dict[str, tuple[int, mmap.mmap]] = {}  # server -> (pid that mapped it, the map)


def server_of(alias: str) -> str | None:
    """The one server of a single-host alias, as these files name it (None for a
    multi-host one: which member an attempt goes to is libpq's choice)."""
    servers = members(alias)
    if len(servers) != 1:
        return None
    host, port = servers[0]
    return f"{host}:{port}/{connections[alias].settings_dict.get('NAME') or ''}"


def _path(server: str) -> Path:
    digest = hashlib.sha256(f"{server}/{_LAYOUT.format}".encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"pgreplica-attempts-{os.getuid()}-{digest}"


def _map(server: str) -> mmap.mmap | None:
    """This process's map of ``server``'s file (None when the file cannot be had)."""
    pid = os.getpid()
    held = _maps.get(server)
    if held is not None and held[0] == pid:
        return held[1]
    with _lock:
        held = _maps.get(server)
        if held is not None and held[0] == pid:
            return held[1]
        try:
            fd = os.open(_path(server), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < _LAYOUT.size:
                    os.ftruncate(fd, _LAYOUT.size)
                view = mmap.mmap(fd, _LAYOUT.size)
            finally:
                os.close(fd)
        except OSError as exc:
            logger.debug("attempts file for %s unavailable: %s", server, exc)
            return None
        _maps[server] = (pid, view)
        return view


def _read(view: mmap.mmap) -> tuple[float, float, float, int]:
    started, ended, failed, failed_by = _LAYOUT.unpack_from(view, 0)
    return float(started), float(ended), float(failed), int(failed_by)


def refusal(server: str, recent: float, longest: float) -> str | None:
    """Why not to connect to ``server`` now (None: go ahead): an attempt is stuck, or one
    failed less than ``recent`` seconds ago. An attempt older than ``longest`` (its
    connect_timeout and then some) is over, whatever the file says: its process died."""
    view = _map(server)
    if view is None:
        return None
    while True:
        started, ended, failed, failed_by = _read(view)
        now = clock.wall()
        if failed and now - failed < recent and failed_by != os.getpid():
            return f"another process failed to connect to {server} {now - failed:.1f}s ago"
        age = now - started
        if started <= ended or age >= longest:
            return None  # none in flight, or its process died
        if age >= STUCK_AFTER:
            return f"a connection attempt to {server} has waited {age:.1f}s"
        clock.sleep(POLL)  # a whole step: a tiny remainder may not move a wall clock at all


def begin(server: str, longest: float) -> None:
    view = _map(server)
    if view is None:
        return
    started, ended, failed, failed_by = _read(view)
    now = clock.wall()
    if started <= ended or now - started >= longest:  # none (alive) in flight: the oldest
        _LAYOUT.pack_into(view, 0, now, ended, failed, failed_by)


def end(server: str, failed: bool) -> None:
    """The attempt ended; ``failed``: the server did not take it (not e.g. a call from the
    event loop that never tried). One that got in clears an earlier failure."""
    view = _map(server)
    if view is None:
        return
    started = _read(view)[0]
    now = clock.wall()
    _LAYOUT.pack_into(view, 0, started, now, now if failed else 0.0, os.getpid() if failed else 0)


def answered(alias: str) -> None:
    """The replica answered a probe here: a failure the file remembers is over."""
    server = server_of(alias)
    view = None if server is None else _map(server)
    if view is not None:
        started, ended, _, _ = _read(view)
        _LAYOUT.pack_into(view, 0, started, ended, 0.0, 0)


def forget(alias: str) -> None:
    """Clear what is known of ``alias``'s server (tests)."""
    server = server_of(alias)
    view = None if server is None else _map(server)
    if view is not None:
        _LAYOUT.pack_into(view, 0, 0.0, 0.0, 0.0, 0)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
