"""Celery: read-your-writes for tasks, and the ``monitor_replication`` task for beat.

A task published after a write carries the writer's token.

The token travels in the message headers (``pgreplica_token``); in the worker each task runs
in its own routing scope opened with it, so its reads wait for a replica that has replayed
the write, or go to the primary. Publish after commit (``delay_on_commit`` or
``transaction.on_commit``) so the task can see the row at all and the token covers it.
"""

from __future__ import annotations

import threading
from contextvars import Token
from typing import Any

from celery import shared_task, signals

from ..conf import get_settings
from ..consistency import (
    active_state,
    begin,
    current_state,
    decode_token,
    encode_token,
    end,
    outgoing_token,
)
from ..monitoring.cycle import run_cycle

HEADER = "pgreplica_token"

_scopes: dict[str, Token[Any]] = {}
_lock = threading.Lock()


def add_token_header(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    if headers is None:
        return
    token = outgoing_token(current_state())
    if token is not None:
        headers[HEADER] = encode_token(token)


def open_task_scope(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    request = getattr(task, "request", None)
    if request is None or task_id is None:
        return
    if getattr(request, "is_eager", False) and active_state() is not None:
        return  # runs inline, inside its caller's request or task: it shares that state
    value = getattr(request, HEADER, None)
    if value is None and isinstance(getattr(request, "headers", None), dict):
        value = request.headers.get(HEADER)
    _state, var_token = begin(decode_token(value, get_settings()))
    with _lock:
        _scopes[task_id] = var_token


def close_task_scope(task_id: str | None = None, **kwargs: Any) -> None:
    if task_id is None:
        return
    with _lock:
        var_token = _scopes.pop(task_id, None)
    if var_token is not None:
        end(var_token)


def connect() -> None:
    uid = "django_pgreplica.celery"
    signals.before_task_publish.connect(add_token_header, weak=False, dispatch_uid=uid)
    signals.task_prerun.connect(open_task_scope, weak=False, dispatch_uid=uid)
    signals.task_postrun.connect(close_task_scope, weak=False, dispatch_uid=uid)


@shared_task(name="django_pgreplica.tasks.monitor_replication", ignore_result=False)
def monitor_replication() -> dict[str, Any]:
    """Check replication, log and signal problems (``replication_alert``), store a lag
    sample per replica and prune old ones. Returns a JSON-able summary.

    Schedule it with beat::

        CELERY_BEAT_SCHEDULE = {
            "pgreplica-monitor-replication": {
                "task": "django_pgreplica.tasks.monitor_replication",
                "schedule": 60.0,
            },
        }
    """
    return run_cycle()
