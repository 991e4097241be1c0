"""Celery read-your-writes with a real worker process and the Redis broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import current_app
from django.conf import settings
from django.test import Client

from django_pgreplica.consistency import scope
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from testproject.shop.models import Order, Product
from testproject.shop.tasks import send_order_confirmation

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = str(settings.CELERY_BROKER_URL)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is not answering at {url} ({exc}). Install and start it: "
            "apt-get install redis-server && redis-server --daemonize yes "
            "(scripts/test starts one when it is installed)."
        )
    return url


@pytest.fixture
def worker(redis_url: str, pgreplica_cluster: Any, django_db_setup: None) -> Iterator[str]:
    """A real worker on a queue of its own, reading the test database of the test cluster."""
    queue = f"pgreplica-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **pgreplica_cluster.env()}
    env["DATABASE_NAME"] = str(settings.DATABASES["default"]["NAME"])  # the test database
    env["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    env["DJANGO_SECRET_KEY"] = settings.SECRET_KEY  # tokens are signed: workers share the key
    env["REDIS_URL"] = redis_url
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "testproject", "worker", "--pool=solo",
         "-Q", queue, "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-l", "info"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    previous = current_app.conf.task_default_queue
    current_app.conf.task_default_queue = queue
    try:
        ping_deadline = time.monotonic() + 30
        while not current_app.control.ping(destination=None, timeout=0.5):
            if process.poll() is not None or time.monotonic() > ping_deadline:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"celery worker did not start:\n{output[-3000:]}")
        yield queue
    finally:
        current_app.conf.task_default_queue = previous
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def product() -> Product:
    product = Product.objects.create(name="Lamp", slug="lamp", price=10, stock=100)
    wait_for_replay()
    return product


def test_task_enqueued_after_a_write_sees_it_while_replay_is_paused(
    worker: str, product: Product
) -> None:
    client = Client()
    email = f"e-{uuid.uuid4().hex[:8]}@example.com"
    with replay_paused("replica"), replay_paused("replica2"):
        response = client.post(
            "/api/orders/",
            {"product": "lamp", "email": email},
            content_type="application/json",
        )
        assert response.status_code == 201
        # The view queued the task on commit; find its result in the backend.
        result = wait_for_task_result(response.json()["id"], email)
    assert result["status"] == "sent", result
    assert result["database"] == "default"


def test_task_without_a_preceding_write_reads_from_a_replica(worker: str, product: Product) -> None:
    order = Order.objects.create(product=product, email="f@example.com")
    wait_for_replay()
    with scope():  # a fresh request that did not write
        async_result = send_order_confirmation.delay(order.pk)
    result = async_result.get(timeout=30)
    assert result["status"] == "sent"
    assert result["database"] in ("replica", "replica2")


def test_task_without_a_token_really_reads_the_stale_replica(worker: str, product: Product) -> None:
    """The control case: proves the replica lags, so the first test's pass means something."""
    with replay_paused("replica"), replay_paused("replica2"):
        order = Order.objects.create(product=product, email="g@example.com")
        with scope():
            result = send_order_confirmation.delay(order.pk).get(timeout=30)
    assert result["status"] == "not_found"


def wait_for_task_result(order_id: int, email: str, timeout: float = 30) -> dict[str, Any]:
    """The confirmation task's result for this order, found in the result backend.

    A stale read would store ``status: not_found`` without the email; that shows up here as
    the order's most recent not-found result."""
    backend = current_app.backend
    client = redis.Redis.from_url(str(settings.CELERY_RESULT_BACKEND))
    started = datetime.now(timezone.utc).isoformat()[:19]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for key in client.scan_iter("celery-task-meta-*"):
            meta = backend.decode_result(client.get(key))
            result = meta.get("result")
            if not isinstance(result, dict) or result.get("order_id") != order_id:
                continue
            if result.get("email") == email or (
                result.get("status") == "not_found" and meta.get("date_done", "") >= started
            ):
                return result
        time.sleep(0.2)
    raise AssertionError(f"no task result for order {order_id} within {timeout}s")
