"""django.tasks (Django 6.0+): a task sees the writes made before it was enqueued."""

from __future__ import annotations

from typing import Any

import django
import pytest
from django.test import override_settings

from django_pgreplica.consistency import scope
from django_pgreplica.contrib import tasks as pgreplica_tasks
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from testproject.shop.models import Product
from tests.support import pgreplica_settings

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

HAS_TASKS = django.VERSION >= (6, 0)
IMMEDIATE = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}

if HAS_TASKS:
    from django.db import connections
    from django.tasks import task

    @task
    def find_product(slug: str) -> dict[str, Any]:
        product = Product.objects.filter(slug=slug).first()
        return {"found": product is not None, "database": product_db(product)}

    def product_db(product: Product | None) -> str | None:
        return None if product is None else product._state.db


def test_the_hooks_are_there_exactly_when_django_has_tasks() -> None:
    assert pgreplica_tasks.connect() is HAS_TASKS


@pytest.mark.skipif(not HAS_TASKS, reason="django.tasks is Django 6.0+ (the Django 6 leg)")
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
    assert connections["default"].connection is not None


@pytest.mark.skipif(not HAS_TASKS, reason="django.tasks is Django 6.0+ (the Django 6 leg)")
def test_a_task_run_inline_stays_in_the_callers_scope() -> None:
    wait_for_replay()
    with pgreplica_settings(REPLICAS=["replica"]), override_settings(TASKS=IMMEDIATE):
        with scope() as state:
            Product.objects.create(name="Toaster", slug="toaster", price=3)
            result = find_product.enqueue("toaster")
            assert result.return_value == {"found": True, "database": "default"}
            assert state.wrote  # the caller's scope is still the current one
