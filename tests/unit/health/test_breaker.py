from __future__ import annotations

import pytest

from django_pgreplica.health.breaker import RAMP_START, CircuitBreaker, CircuitState


def breaker(threshold: int = 3, reset: float = 60.0, ramp: float = 0.0) -> CircuitBreaker:
    return CircuitBreaker(threshold, reset, hold_step=1.0, ramp_seconds=ramp)


def test_opens_after_threshold_consecutive_failures() -> None:
    b = breaker(threshold=3)
    assert b.record_failure(0.0) is False
    assert b.record_failure(0.1) is False
    assert b.state(0.1) is CircuitState.CLOSED
    assert b.record_failure(0.2) is True
    assert b.state(0.2) is CircuitState.OPEN
    assert b.weight(0.2) == 0.0


def test_success_resets_the_count() -> None:
    b = breaker(threshold=2)
    b.record_failure(0.0)
    b.record_success(0.5)
    b.record_failure(1.0)
    assert b.state(1.0) is CircuitState.CLOSED


@pytest.mark.parametrize("down_for", [0.5, 59.0, 3600.0, 86400.0])
def test_a_steady_replica_is_back_at_its_first_success_however_long_it_was_down(
    down_for: float,
) -> None:
    b = breaker(threshold=1, reset=60.0)
    b.record_failure(0.0)
    assert b.record_success(down_for) is True
    assert b.state(down_for) is CircuitState.CLOSED and b.weight(down_for) == 1.0


def test_flapping_is_held_out_longer_each_time_up_to_reset_timeout() -> None:
    b = breaker(threshold=1, reset=10.0)
    now, holds = 0.0, []
    for _ in range(6):
        b.record_failure(now)
        holds.append(b.hold_down())
        if b.hold_down():
            assert b.record_success(now + b.hold_down() - 0.01) is False  # still held out
        now += b.hold_down()
        assert b.record_success(now) is True
        now += 0.5  # and it fails again half a second after recovering
    assert holds == [0.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_steady_for_reset_timeout_forgets_the_flaps() -> None:
    b = breaker(threshold=1, reset=10.0)
    b.record_failure(0.0)
    b.record_success(0.0)
    b.record_failure(1.0)  # a flap
    assert b.hold_down() == 2.0
    b.record_success(3.0)
    b.record_success(13.5)  # steady for RESET_TIMEOUT since recovering at 3.0
    b.record_failure(14.0)
    assert b.hold_down() == 0.0


def test_a_recovered_replica_ramps_up_then_closes() -> None:
    b = breaker(threshold=1, ramp=10.0)
    b.record_failure(0.0)
    b.record_success(5.0)
    assert b.state(5.0) is CircuitState.HALF_OPEN
    assert b.weight(5.0) == pytest.approx(RAMP_START)
    assert b.weight(10.0) == pytest.approx(RAMP_START + (1 - RAMP_START) * 0.5)
    assert b.weight(15.0) == 1.0 and b.state(15.0) is CircuitState.CLOSED


def test_a_failure_while_ramping_reopens_at_once_as_a_flap() -> None:
    b = breaker(threshold=5, ramp=10.0)
    for t in range(5):
        b.record_failure(float(t))
    b.record_success(10.0)
    assert b.record_failure(12.0) is True  # one failure is enough while ramping
    assert b.state(12.0) is CircuitState.OPEN and b.flaps == 1


def test_trip_opens_on_another_processes_word_and_recovery_then_ramps() -> None:
    b = breaker(threshold=3, ramp=10.0)
    b.record_failure(0.0)  # one failure of its own: below the threshold
    assert b.trip(1.0) is True
    assert b.state(1.0) is CircuitState.OPEN and b.failures == 3 and b.flaps == 0
    assert b.trip(2.0) is False  # already open
    assert b.record_success(20.0) is True
    assert b.state(20.0) is CircuitState.HALF_OPEN and b.weight(20.0) == pytest.approx(RAMP_START)


def test_trip_soon_after_recovering_counts_as_a_flap() -> None:
    b = breaker(threshold=3, reset=60.0)
    b.trip(0.0)
    b.record_success(1.0)
    b.trip(5.0)
    assert b.flaps == 1 and b.hold_down() == 2.0


def test_labels_and_gauge_values() -> None:
    assert [s.value for s in CircuitState] == [0, 1, 2]
    assert CircuitState.HALF_OPEN.label == "half-open"


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 10.0)
