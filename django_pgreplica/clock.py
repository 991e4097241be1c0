"""The one clock routing, tokens and breakers read, so tests can move time instead of sleeping.

:func:`monotonic` (intervals: probes, breakers, ramps) and :func:`wall` (token ages, which
cross processes) are module attributes looked up at each call; :class:`FakeClock` swaps
both while it is installed, and :func:`sleep` (waits for a server that is not there yet,
e.g. a new primary), which it turns into an advance. Code that needs time calls
``clock.monotonic()``, never ``time.monotonic()`` directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

monotonic = time.monotonic
wall = time.time
sleep: Callable[[float], None] = time.sleep


class FakeClock:
    """A clock that moves only when told: ``with FakeClock() as clock: clock.advance(5)``."""

    def __init__(self, start: float | None = None, wall_start: float | None = None) -> None:
        # Starts at the real time by default, so state recorded before it was installed
        # (a probe, a token) stays comparable.
        self.now = time.monotonic() if start is None else start
        self.wall_now = time.time() if wall_start is None else wall_start
        self._saved: tuple[object, object, object] | None = None

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall_now += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def install(self) -> FakeClock:
        global monotonic, wall, sleep
        self._saved = (monotonic, wall, sleep)
        monotonic, wall, sleep = self.monotonic, self.wall, self.sleep
        return self

    def uninstall(self) -> None:
        global monotonic, wall, sleep
        if self._saved is not None:
            monotonic, wall, sleep = self._saved  # type: ignore[assignment]
            self._saved = None

    def __enter__(self) -> FakeClock:
        return self.install()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()
