"""The replication page in a real headless Chromium, served by a live server.

Drives Debian's Chromium (``apt-get install -y chromium``; ``PGREPLICA_CHROMIUM`` points
elsewhere) through Playwright, with a fresh profile. A missing browser fails the test: it
is never skipped. Screenshots go to the test's ``tmp_path``; with ``PGREPLICA_SCREENSHOT``
set (a path, relative to the repository root), the light one is also copied there: that is
how ``scripts/refresh-admin-screenshot`` refreshes ``docs/img/admin-replication.png``.

Playwright's sync API keeps an event loop in the test's thread while it runs, where Django
refuses ORM calls; so every database write happens before the browser starts.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from django_pgreplica.models import ReplicationSample
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from tests.monitoring_support import write_rows

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_ENV = "PGREPLICA_SCREENSHOT"  # also copy the screenshot there (docs)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = (
    "install Debian's Chromium with `apt-get update && apt-get install -y chromium` "
    "(or set PGREPLICA_CHROMIUM to a Chromium binary)"
)


def chromium_path() -> str:
    wanted = os.environ.get("PGREPLICA_CHROMIUM") or "/usr/bin/chromium"
    found = shutil.which(wanted)
    if found is None:
        pytest.fail(f"Chromium not found at {wanted}: {INSTALL_HINT}", pytrace=False)
    return found


@contextmanager
def browser_page(profile: Path, **options: Any) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]'", pytrace=False)
    executable = chromium_path()
    with sync_playwright() as playwright:
        # A persistent context is how Playwright takes our own --user-data-dir.
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1440, "height": 900},
            **options,
        )
        context.set_default_timeout(15_000)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def store_history() -> None:
    """Six hours of minute samples: a lag episode on one replica, an outage on the other."""
    now = timezone.now()
    samples = []
    for minute in range(360, 0, -1):
        at = now - timedelta(minutes=minute)
        episode = 11.0 * math.exp(-(((minute - 150) / 12) ** 2))  # peaks 2.5 h ago
        lag = round(0.15 + 0.1 * math.sin(minute / 9) + episode, 3)
        samples.append(
            ReplicationSample(taken_at=at, replica="replica", status=1 if lag > 5 else 0,
                              state="streaming", lag_seconds=lag, lag_bytes=int(lag * 2e6))
        )  # fmt: skip
        down = 235 <= minute <= 246  # four hours ago
        lag2 = round(0.05 + 0.05 * math.cos(minute / 7), 3)
        samples.append(
            ReplicationSample(
                taken_at=at, replica="replica2", status=2 if down else 0, reachable=not down,
                state="" if down else "streaming", lag_seconds=None if down else lag2,
                lag_bytes=None if down else int(lag2 * 1e6),
            )
        )  # fmt: skip
    ReplicationSample.objects.bulk_create(samples)


def log_in(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/replication/")
    assert "/admin/login/" in page.url  # anonymous: the admin login form first
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/replication/")


def publish_screenshot(screenshot: Path) -> None:
    """Copy ``screenshot`` to ``$PGREPLICA_SCREENSHOT`` when set (the docs image)."""
    wanted = os.environ.get(SCREENSHOT_ENV)
    if not wanted:
        return
    target = Path(wanted) if Path(wanted).is_absolute() else ROOT / wanted
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, target)


def badge_text(page: Any, alias: str) -> str:
    cell = page.locator(f'tr.pgr-replica[data-replica="{alias}"] td .pgr-badge').first
    return str(cell.inner_text()).strip().lower()


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_replication_page_in_chromium(live_server: Any, tmp_path: Path) -> None:
    screenshot = tmp_path / "admin-replication.png"
    User.objects.create_superuser("admin", "admin@example.com", "admin-password")
    store_history()
    wait_for_replay()
    with replay_paused("replica2"):
        write_rows(20, prefix="browser")  # replica2 falls behind: WAL it has not replayed
        with browser_page(tmp_path / "profile") as page:
            log_in(page, live_server.url)
            assert page.locator("#content h1").inner_text() == "Replication status"
            assert page.locator("#pgr-overall").inner_text().strip() == "WARNING"

            for alias in ("replica", "replica2"):
                assert page.locator(f'tr.pgr-replica[data-replica="{alias}"] th').is_visible()
            assert badge_text(page, "replica") == "healthy"
            assert badge_text(page, "replica2") == "warning"
            why = page.locator('tr.pgr-reasons[data-replica="replica2"]').inner_text()
            assert "WAL replay is paused" in why
            state = page.locator('tr.pgr-replica[data-replica="replica2"] td').nth(1)
            assert state.inner_text() == "streaming, replay paused"

            chart = page.locator("svg#pgreplica-lag-seconds")
            assert chart.is_visible()
            box = chart.bounding_box()
            assert box is not None and box["width"] > 800 and box["height"] > 150
            assert chart.locator("polyline").count() >= 2
            assert chart.locator("rect.down").count() == 1  # replica2's outage
            assert chart.locator("line.threshold-warning").count() == 1
            assert page.locator("svg#pgreplica-lag-bytes").is_visible()
            assert page.locator("#pgr-audit li").count() >= 1

            page.screenshot(path=str(screenshot), full_page=True)

            # Dark mode: the admin's variables restyle the badges and the chart's axes.
            page.emulate_media(color_scheme="dark")
            page.reload()
            body = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert body == "rgb(18, 18, 18)"
            warning_bg = page.evaluate(
                "getComputedStyle(document.querySelector("
                "'tr[data-replica=\"replica2\"] .pgr-badge')).backgroundColor"
            )
            assert warning_bg == "rgb(88, 51, 5)"  # --message-warning-bg, dark
            page.screenshot(path=str(tmp_path / "admin-replication-dark.png"), full_page=True)
    wait_for_replay()
    assert screenshot.stat().st_size > 20_000
    publish_screenshot(screenshot)
