"""Read-your-writes for Django's own tasks framework (``django.tasks``, Django 6.0+, or
the django-tasks backport's ``django_tasks`` before that).

A task must see every write made before it was enqueued. Django's task backends carry no
headers to hand a token over, so a worker runs each task in a routing scope whose token is
the primary's WAL position when the task started: that lies after the enqueuing request's
commit (the task was enqueued after it), so replicas serve the task's reads once they have
replayed it (within REPLAY_WAIT_SECONDS, usually), the primary otherwise. It costs one
``pg_current_wal_insert_lsn()`` on the primary per task. In time mode the task is pinned
for STICKY_SECONDS from when it was enqueued.

A task run inline by the enqueuing code (``ImmediateBackend`` inside a request or Celery
task) simply stays in that scope: it sees the caller's writes, committed or not.

A backend that keeps its queue in the database (django-tasks-db) must read it on the
primary: its worker claims a task with ``select_for_update()`` inside
``transaction.atomic(using=<the queryset's read alias>)``, which on a replica alias leaves
the locking query (sent to the primary) outside any transaction, and the worker dies; a
lagging replica would also hide new tasks and fresh results. So ``ReplicaRouter`` reads
the models of :data:`QUEUE_APP_LABELS` on the primary.
"""

from __future__ import annotations

import importlib
import logging
import threading
from contextvars import Token
from typing import Any

from .. import clock
from ..conf import get_settings
from ..consistency import ConsistencyToken, active_state, begin, current_wal_position, end

logger = logging.getLogger("django_pgreplica.consistency")

_local = threading.local()  # task result id -> the scope opened for it, per worker thread


def _scopes() -> dict[str, Token[Any]]:
    scopes: dict[str, Token[Any]] | None = getattr(_local, "scopes", None)
    if scopes is None:
        scopes = _local.scopes = {}
    return scopes


def start_token(enqueued_at: float | None) -> ConsistencyToken | None:
    """What a task starting now must see."""
    settings = get_settings()
    mode = settings.read_your_writes
    if mode == "off":
        return None
    now = clock.wall()
    if mode == "time":
        return ConsistencyToken(written_at=now if enqueued_at is None else enqueued_at)
    try:
        lsn, timeline = current_wal_position(settings.primary)
        return ConsistencyToken(written_at=now, lsn=lsn, timeline=timeline)
    except Exception as exc:
        logger.warning(
            "primary %s: could not read WAL position for a task (%s); pinning it for %gs",
            settings.primary,
            exc,
            settings.sticky_seconds,
        )
        return ConsistencyToken(written_at=now)


def task_started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    if active_state() is not None:  # run inline by a request or task: its scope holds
        return
    enqueued = getattr(task_result, "enqueued_at", None)
    token = start_token(None if enqueued is None else enqueued.timestamp())
    _state, var_token = begin(token)
    _scopes()[str(task_result.id)] = var_token


def task_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    var_token = _scopes().pop(str(task_result.id), None)
    if var_token is not None:
        end(var_token)


def connect() -> bool:
    """Hook into the task signals of ``django.tasks`` and of the django-tasks backport,
    whichever are installed; False when neither is."""
    connected = False
    for module in ("django.tasks.signals", "django_tasks.signals"):
        try:
            signals = importlib.import_module(module)
        except ImportError:
            continue
        signals.task_started.connect(task_started, dispatch_uid="django_pgreplica.task_started")
        signals.task_finished.connect(task_finished, dispatch_uid="django_pgreplica.task_finished")
        connected = True
    return connected


# App labels of task backends whose queue is a database table: django-tasks-db's (also
# the label of the django-tasks backport's database backend before 0.12).
QUEUE_APP_LABELS = frozenset({"django_tasks_database"})
