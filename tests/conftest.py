"""Test setup: a real PostgreSQL primary with streaming replicas, via the pytest plugin."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_pgreplica.clock import FakeClock

# Starts (or reuses) the test cluster and points every database alias at it.
pytest_plugins = ["django_pgreplica.testing.plugin", "django_pgreplica.testing.patroni_plugin"]

TEST_QUEUE = "pgreplica-tests"


HERE = Path(__file__).parent
# Each folder's tests need the same things: unit nothing, integration a real cluster (and
# Redis for the Celery ones), ops the repository's files and tools.
FOLDER_MARKERS = {"unit": "unit", "integration": "integration", "ops": "ops"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(item.path).relative_to(HERE).parts
        marker = FOLDER_MARKERS.get(parts[0]) if len(parts) > 1 else None
        if marker is not None:
            item.add_marker(marker)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """A fake clock installed for routing, tokens and breakers: advance it, don't sleep."""
    with FakeClock() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _reset_pgreplica_routing() -> Iterator[None]:
    """Routing state is per process: a pin, a chosen replica or an open circuit left by one
    test must not decide where the next test reads from."""
    from django.conf import settings

    from django_pgreplica import consistency, health
    from django_pgreplica.health import attempts

    consistency.reset_state()
    health.registry.reset()
    for alias in settings.PGREPLICA.get("REPLICAS") or []:
        attempts.forget(alias)  # another test's failed attempt is not this one's
    yield
    consistency.reset_state()


@pytest.fixture(scope="session", autouse=True)
def _private_celery_queue() -> Iterator[str]:
    """Orders placed through the views queue a confirmation task. Send those to a queue
    nobody consumes and purge it at the end, so a ``scripts/demo`` worker on the same Redis
    never runs tasks about test-database orders. (Tests that start a worker of their own
    set their own queue on top of this one.)"""
    from testproject.celery import app

    previous = app.conf.task_default_queue
    app.conf.task_default_queue = TEST_QUEUE
    yield TEST_QUEUE
    app.conf.task_default_queue = previous
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)  # no broker: don't retry forever
            conn.default_channel.queue_purge(TEST_QUEUE)
    except Exception as exc:  # no broker, nothing was queued
        logging.getLogger(__name__).debug("could not purge %s: %s", TEST_QUEUE, exc)
