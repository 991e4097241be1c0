"""Eligibility from a probe result, and the breaker/probe interplay, with an injected clock."""

from __future__ import annotations

from django_pgreplica.clock import FakeClock
from django_pgreplica.health import ProbeResult, ReplicaHealth
from django_pgreplica.health.verdict import probe_reason as evaluate
from tests.support import pgreplica_settings


def ok(lag: float = 0.0, recovery: bool = True) -> ProbeResult:
    return ProbeResult(ok=True, checked_at=0.0, in_recovery=recovery, lag_seconds=lag)


def test_evaluate() -> None:
    assert evaluate(None, 30) is None
    assert evaluate(ok(), 30) is None
    assert evaluate(ok(lag=29.9), 30) is None
    assert (evaluate(ok(lag=31), 30) or "").startswith("lagging")
    assert evaluate(ok(lag=10_000), None) is None
    assert (evaluate(ok(recovery=False), 30) or "").startswith("promoted")
    failed = ProbeResult(ok=False, checked_at=0, error="refused")
    assert evaluate(failed, 30) == "unreachable: refused"


def health(clock: FakeClock, **overrides: object) -> ReplicaHealth:
    from django_pgreplica.conf import get_settings

    with pgreplica_settings(**overrides):
        settings = get_settings()
    return ReplicaHealth("replica", settings)


def test_failures_open_the_circuit_and_only_a_probe_closes_it(clock: FakeClock) -> None:
    item = health(clock, FAILURE_THRESHOLD=2, RESET_TIMEOUT=10.0)
    probes: list[float] = []

    def fake_probe() -> bool:
        probes.append(clock.now)
        item.record_probe(
            ProbeResult(ok=True, checked_at=clock.now, in_recovery=True, lag_seconds=0.0)
        )
        return True

    item.probe = fake_probe  # type: ignore[method-assign]
    item.record_failure("refused")
    item.record_failure("refused")
    assert not item.usable(clock.now)
    clock.advance(5)
    assert not item.usable(clock.now) and probes == []  # open: not even a probe
    clock.advance(5)
    assert item.usable(clock.now)  # half-open: the trial is a probe, which succeeds
    assert probes == [clock.now]


def test_a_lagging_replica_is_rechecked_sooner(clock: FakeClock) -> None:
    item = health(clock, HEALTH_CHECK_INTERVAL=1.0, MAX_LAG_SECONDS=5.0)
    item.record_probe(ProbeResult(ok=True, checked_at=clock.now, in_recovery=True, lag_seconds=60))
    assert item._recheck_interval() == 0.25
    item.record_probe(ProbeResult(ok=True, checked_at=clock.now, in_recovery=True, lag_seconds=0))
    assert item._recheck_interval() == 1.0
    assert item.usable(clock.now)


def test_replay_position_only_grows(clock: FakeClock) -> None:
    item = health(clock)
    item.record_probe(ProbeResult(ok=True, checked_at=0, in_recovery=True, replay_lsn=500))
    item.record_probe(ProbeResult(ok=True, checked_at=1, in_recovery=True, replay_lsn=400))
    assert item.replayed(450, refresh=False)
    assert not item.replayed(501, refresh=False)
