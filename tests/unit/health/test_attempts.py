"""Connection attempts announced to the other processes of the host, on a fake clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from django_pgreplica.clock import FakeClock
from django_pgreplica.health import attempts

RECENT, LONGEST = 1.0, 3.0


def server() -> str:
    return f"10.9.9.9:5432/{uuid.uuid4().hex}"  # a file of its own


@pytest.fixture
def process(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Act as the process with this pid (the file is shared by the host's processes)."""

    def become(pid: int) -> None:
        monkeypatch.setattr(attempts.os, "getpid", lambda: pid)

    return become


def test_an_attempt_in_flight_too_long_is_taken_for_a_hang(
    clock: FakeClock, process: Callable[[int], None]
) -> None:
    s = server()
    process(101)
    attempts.begin(s, LONGEST)  # a worker starts connecting, and hangs
    started = clock.now
    process(102)
    clock.advance(0.001)  # just begun: waited for all the same, and it does not end ...
    reason = attempts.refusal(s, RECENT, LONGEST)
    assert reason is not None and "waited 0.3s" in reason
    assert clock.now - started == pytest.approx(attempts.STUCK_AFTER, abs=2 * attempts.POLL)
    process(103)
    attempts.begin(s, LONGEST)  # a third worker tried anyway: the oldest attempt counts
    clock.advance(1.0)
    assert "waited 1.3s" in (attempts.refusal(s, RECENT, LONGEST) or "")
    process(101)
    attempts.end(s, failed=False)  # it answered after all
    assert attempts.refusal(s, RECENT, LONGEST) is None


def test_a_newcomer_connects_as_soon_as_the_attempt_in_flight_gets_in(
    clock: FakeClock, process: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = server()
    process(101)
    attempts.begin(s, LONGEST)
    started = clock.now

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        if clock.now - started >= 0.003:  # a live server answers the first attempt
            attempts.end(s, failed=False)

    monkeypatch.setattr(attempts.clock, "sleep", sleep)
    process(102)
    assert attempts.refusal(s, RECENT, LONGEST) is None
    assert clock.now - started == pytest.approx(0.003, abs=2 * attempts.POLL)


def test_a_failure_is_shared_for_a_while_and_ends_when_the_replica_answers(
    clock: FakeClock, process: Callable[[int], None]
) -> None:
    s = server()
    process(101)
    attempts.begin(s, LONGEST)
    attempts.end(s, failed=True)
    process(102)
    assert "failed" in (attempts.refusal(s, RECENT, LONGEST) or "")
    clock.advance(RECENT + 0.1)
    assert attempts.refusal(s, RECENT, LONGEST) is None
    process(101)
    attempts.begin(s, LONGEST)
    attempts.end(s, failed=True)
    process(103)
    attempts.begin(s, LONGEST)
    attempts.end(s, failed=False)  # another worker got in: the failure is over
    process(102)
    assert attempts.refusal(s, RECENT, LONGEST) is None


def test_an_attempt_whose_process_died_is_forgotten(
    clock: FakeClock, process: Callable[[int], None]
) -> None:
    s = server()
    process(101)
    attempts.begin(s, LONGEST)  # then SIGKILLed: it never ends
    clock.advance(LONGEST + 0.1)
    process(102)
    assert attempts.refusal(s, RECENT, LONGEST) is None
    process(103)
    attempts.begin(s, LONGEST)  # a new attempt is the oldest now
    clock.advance(attempts.STUCK_AFTER + 0.1)
    process(102)
    assert "waited 0.4s" in (attempts.refusal(s, RECENT, LONGEST) or "")
    process(103)
    attempts.end(s, failed=False)
    assert attempts.refusal(s, RECENT, LONGEST) is None
