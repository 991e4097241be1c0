"""What this process knows about the primary's reachability, for reads only.

Writes always go to the primary and fail with it. A read of a client that has nothing to
wait for may be answered by a replica when the primary cannot be reached (a last-resort
read); remembering a failed connection for HEALTH_CHECK_INTERVAL keeps every such read
from paying a connection attempt (or ``connect_timeout``, for a hung host) first.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.core.signals import setting_changed

from .. import clock
from ..conf import get_settings
from ..db import one_line

logger = logging.getLogger("django_pgreplica.health")


class PrimaryHealth:
    def __init__(self) -> None:
        self._down_until = 0.0
        self._reported_at = -1e18
        self._lock = threading.Lock()
        # host:port the primary alias last connected to: a replica-alias connection on
        # that server reads from the primary (a member promoted under it; see .promoted)
        self.server: str | None = None

    def known_down(self, now: float) -> bool:
        """Did a connection to the primary fail less than HEALTH_CHECK_INTERVAL ago?"""
        return self._down_until > now

    def record_failure(self, error: BaseException | str) -> None:
        settings = get_settings()
        now = clock.monotonic()
        with self._lock:
            first = self._down_until <= now
            self._down_until = now + settings.health_check_interval
        if first:
            logger.warning("primary %s unreachable (%s)", settings.primary, one_line(error))

    def record_success(self) -> None:
        if self._down_until:
            self._down_until = 0.0

    def should_report(self, now: float, every: float) -> bool:
        """Rate-limits last-resort log lines to one per ``every`` seconds per process."""
        with self._lock:
            if now - self._reported_at < every:
                return False
            self._reported_at = now
            return True


_primary = [PrimaryHealth()]


def primary_health() -> PrimaryHealth:
    return _primary[0]


def _reset_on_change(**kwargs: Any) -> None:
    if kwargs.get("setting") in ("PGREPLICA", "DATABASES"):
        _primary[0] = PrimaryHealth()


setting_changed.connect(_reset_on_change, dispatch_uid="django_pgreplica.health.primary")
