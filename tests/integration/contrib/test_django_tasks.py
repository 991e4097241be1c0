"""django.tasks: a task sees the writes made before it was enqueued.

Run inline (the immediate backend) and by a real worker process (django-tasks-db's
``db_worker``) while the replicas' replay is paused. Django 6 has ``django.tasks``; on 5.2
the django-tasks backport provides the same framework under ``django_tasks``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings
from django.db import router
from django.test import override_settings

from django_pgreplica.consistency import active_state, current_wal_lsn, scope
from django_pgreplica.contrib import tasks as pgreplica_tasks
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from testproject.shop.models import Product
from tests.support import pgreplica_settings

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

ROOT = Path(__file__).resolve().parents[3]
HAS_DJANGO_TASKS = django.VERSION >= (6, 0)
HAS_BACKPORT = importlib.util.find_spec("django_tasks") is not None
HAS_TASKS = HAS_DJANGO_TASKS or HAS_BACKPORT
HAS_DB_BACKEND = HAS_TASKS and importlib.util.find_spec("django_tasks_db") is not None
TASKS_MODULE = "django.tasks" if HAS_DJANGO_TASKS else "django_tasks"
IMMEDIATE = {"default": {"BACKEND": f"{TASKS_MODULE}.backends.immediate.ImmediateBackend"}}
INSTALL_HINT = "django-tasks-db is missing: pip install django-tasks-db" + (
    "" if HAS_DJANGO_TASKS else "[compat] (the django-tasks backport for Django 5.2)"
)
needs_tasks = pytest.mark.skipif(not HAS_TASKS, reason="django.tasks: Django 6.0+ or django-tasks")

if HAS_TASKS:
    if HAS_DJANGO_TASKS:
        from django.tasks import task
    else:  # the backport, same API
        from django_tasks import task  # type: ignore[assignment,no-redef,import-not-found,unused-ignore]

    @task
    def find_product(slug: str) -> dict[str, Any]:
        product = Product.objects.filter(slug=slug).first()
        return {"found": product is not None, "database": product_db(product)}

    def product_db(product: Product | None) -> str | None:
        return None if product is None else product._state.db

    if HAS_DB_BACKEND:  # the worker imports it by this module's path

        @task(backend="database")
        def find_product_in_worker(slug: str) -> dict[str, Any]:
            """Where the router sends the task's read, what it found there, and the WAL
            position the task's scope holds the replicas to."""
            database = router.db_for_read(Product)
            state = active_state()
            return {
                "found": Product.objects.using(database).filter(slug=slug).exists(),
                "database": database,
                "token_lsn": None if state is None or state.token is None else state.token.lsn,
            }


def test_the_hooks_are_there_exactly_when_tasks_are() -> None:
    assert pgreplica_tasks.connect() is HAS_TASKS


@needs_tasks
def test_a_worker_task_sees_a_write_made_before_it_was_enqueued() -> None:
    wait_for_replay()
    with pgreplica_settings(REPLICAS=["replica"]), override_settings(TASKS=IMMEDIATE):
        with replay_paused("replica"):
            with scope():  # the request that wrote, and committed
                Product.objects.create(name="Kettle", slug="kettle", price=3)
            # Outside any scope, as in a worker: a plain read sees the stale replica ...
            assert not Product.objects.filter(slug="kettle").exists()
            # ... the task, run in its own scope from the primary's position, does not.
            result = find_product.enqueue("kettle")
            assert result.return_value == {"found": True, "database": "default"}
        wait_for_replay()
        assert find_product.enqueue("kettle").return_value == {
            "found": True,
            "database": "replica",  # replayed: the task reads the replica again
        }


@needs_tasks
def test_a_task_run_inline_stays_in_the_callers_scope() -> None:
    wait_for_replay()
    with pgreplica_settings(REPLICAS=["replica"]), override_settings(TASKS=IMMEDIATE):
        with scope() as state:
            Product.objects.create(name="Toaster", slug="toaster", price=3)
            result = find_product.enqueue("toaster")
            assert result.return_value == {"found": True, "database": "default"}
            assert state.wrote  # the caller's scope is still the current one


# --- a real worker: django-tasks-db's db_worker ------------------------------------------


@pytest.fixture
def start_worker(django_db_setup: None) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``db_worker`` processes on the test databases, with PGREPLICA overrides."""
    if not HAS_DB_BACKEND:
        pytest.fail(INSTALL_HINT)
    started: list[subprocess.Popen[str]] = []
    keys = ("HOST", "PORT", "NAME", "USER")
    databases = {
        alias: {k: settings.DATABASES[alias][k] for k in keys} for alias in settings.DATABASES
    }

    def start(**pgreplica: Any) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(ROOT),
            "PGREPLICA_TEST_DATABASES": json.dumps(databases),
            "PGREPLICA_TEST_OVERRIDES": json.dumps(pgreplica),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "db_worker", "--backend", "database",
             "--interval", "0.05", "--no-startup-delay", "--no-reload"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def worker_result(result: Any, worker: subprocess.Popen[str], timeout: float = 20) -> Any:
    """The task's return value once the worker has run it (read back from the primary)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result.refresh()  # the router reads the task queue on the primary
        if result.is_finished:
            assert result.status == "SUCCESSFUL", result.errors
            return result.return_value
        if worker.poll() is not None:
            output = worker.stdout.read() if worker.stdout else ""
            pytest.fail(f"db_worker exited ({worker.returncode}):\n{output[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"db_worker did not run task {result.id} within {timeout}s")


def test_a_db_worker_task_sees_the_write_its_request_made(
    start_worker: Callable[..., subprocess.Popen[str]],
) -> None:
    worker = start_worker()
    wait_for_replay()
    with replay_paused("replica"), replay_paused("replica2"):
        with scope():  # the request: writes, commits, enqueues (one more write)
            Product.objects.create(name="Kettle", slug="kettle", price=3)
            written = current_wal_lsn("default")
            result = find_product_in_worker.enqueue("kettle")
        assert not Product.objects.filter(slug="kettle").exists()  # the replicas lack it
        answer = worker_result(result, worker)
    assert answer["found"] is True
    assert answer["database"] == "default"
    # The worker's task scope holds the primary's position, taken after the request's commit.
    assert answer["token_lsn"] is not None and answer["token_lsn"] >= written


def test_a_db_worker_without_read_your_writes_reads_the_stale_replica(
    start_worker: Callable[..., subprocess.Popen[str]],
) -> None:
    """The control: the same task in a worker with READ_YOUR_WRITES off reads a lagging
    replica, so the test above passes because of the task's scope, not by luck."""
    worker = start_worker(READ_YOUR_WRITES="off")
    wait_for_replay()
    with replay_paused("replica"), replay_paused("replica2"):
        with scope():
            Product.objects.create(name="Grater", slug="grater", price=3)
            result = find_product_in_worker.enqueue("grater")
        answer = worker_result(result, worker)
    assert answer["found"] is False
    assert answer["database"] in ("replica", "replica2")
    assert answer["token_lsn"] is None
