from __future__ import annotations

from django_pgreplica.health.breaker import CircuitBreaker, CircuitState


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10)
    assert breaker.record_failure(0.0) is False
    assert breaker.record_failure(0.1) is False
    assert breaker.state(0.1) is CircuitState.CLOSED
    assert breaker.record_failure(0.2) is True
    assert breaker.state(0.2) is CircuitState.OPEN
    assert breaker.allow(5.0) is False


def test_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=10)
    breaker.record_failure(0.0)
    breaker.record_success(0.5)
    breaker.record_failure(1.0)
    assert breaker.state(1.0) is CircuitState.CLOSED


def test_half_open_allows_exactly_one_trial() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10)
    breaker.record_failure(0.0)
    assert breaker.state(9.9) is CircuitState.OPEN
    assert breaker.state(10.0) is CircuitState.HALF_OPEN
    assert breaker.allow(10.0) is True
    assert breaker.allow(10.1) is False  # the trial is taken


def test_trial_success_closes() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10)
    breaker.record_failure(0.0)
    assert breaker.allow(10.0)
    assert breaker.record_success(10.2) is True
    assert breaker.state(10.2) is CircuitState.CLOSED
    assert breaker.failures == 0


def test_trial_failure_reopens_for_another_timeout() -> None:
    breaker = CircuitBreaker(failure_threshold=5, reset_timeout=10)
    for t in range(5):
        breaker.record_failure(float(t))
    assert breaker.allow(14.0)
    assert breaker.record_failure(14.5) is True
    assert breaker.state(24.0) is CircuitState.OPEN
    assert breaker.state(24.5) is CircuitState.HALF_OPEN


def test_abandoned_trial_is_given_up_after_a_timeout() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10)
    breaker.record_failure(0.0)
    assert breaker.allow(10.0)
    assert not breaker.allow(15.0)
    assert breaker.allow(20.0)


def test_labels_and_gauge_values() -> None:
    assert [s.value for s in CircuitState] == [0, 1, 2]
    assert CircuitState.HALF_OPEN.label == "half-open"


def test_a_released_trial_can_be_claimed_again() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10)
    breaker.record_failure(0.0)
    assert breaker.allow(10.0)
    assert not breaker.allow(10.5)
    breaker.release_trial()
    assert breaker.allow(10.6)
