"""Replica health with a fake clock and no database: eligibility, suspicion, recovery."""

from __future__ import annotations

import pytest

from django_pgreplica.clock import FakeClock
from django_pgreplica.health import ProbeResult, ReplicaHealth
from django_pgreplica.health.breaker import RAMP_START, CircuitState
from django_pgreplica.health.verdict import probe_reason
from django_pgreplica.lsn import Position
from tests.support import pgreplica_settings


def ok(lag: float = 0.0, recovery: bool = True, at: float = 0.0) -> ProbeResult:
    return ProbeResult(ok=True, checked_at=at, in_recovery=recovery, lag_seconds=lag)


def test_probe_reason() -> None:
    assert probe_reason(None, 30) is None
    assert probe_reason(ok(), 30) is None
    assert probe_reason(ok(lag=29.9), 30) is None
    assert (probe_reason(ok(lag=31), 30) or "").startswith("lagging")
    assert probe_reason(ok(lag=10_000), None) is None
    assert (probe_reason(ok(recovery=False), 30) or "").startswith("promoted")
    failed = ProbeResult(ok=False, checked_at=0, error="refused")
    assert probe_reason(failed, 30) == "unreachable: refused"


class Watched(list[str]):
    def __call__(self, health: ReplicaHealth) -> None:
        self.append(health.alias)


def health(watched: Watched | None = None, **overrides: object) -> ReplicaHealth:
    from django_pgreplica.conf import get_settings

    with pgreplica_settings(**overrides):
        settings = get_settings()
    return ReplicaHealth(
        "replica", settings, on_suspect=watched if watched is not None else Watched()
    )


def no_inline_probe(item: ReplicaHealth) -> list[float]:
    probes: list[float] = []
    item.probe = lambda **kw: probes.append(1.0) or True  # type: ignore[method-assign]
    return probes


def test_a_failed_replica_is_left_to_the_background_prober(clock: FakeClock) -> None:
    watched = Watched()
    item = health(watched, HEALTH_CHECK_INTERVAL=1.0, FAILURE_THRESHOLD=3, RAMP_SECONDS=0)
    item.record_probe(ok(at=clock.now))
    assert item.usable(clock.now)
    item.record_failure("refused")
    probes = no_inline_probe(item)
    for _ in range(20):  # however much time passes, no user's read probes it
        clock.advance(1.0)
        assert not item.usable(clock.now)
    assert probes == [] and watched and set(watched) == {"replica"}
    item.record_probe(ok(at=clock.now))  # the background prober's probe answered
    assert not item.suspect and item.usable(clock.now)
    assert item.breaker.state(clock.now) is CircuitState.CLOSED  # one failure never opened it


def test_back_at_once_after_a_long_outage_then_ramping(clock: FakeClock) -> None:
    item = health(FAILURE_THRESHOLD=2, RESET_TIMEOUT=60.0, RAMP_SECONDS=10.0)
    item.record_failure("refused")
    item.record_failure("refused")
    assert item.breaker.state(clock.now) is CircuitState.OPEN
    clock.advance(3600)  # down for an hour: nothing waits for RESET_TIMEOUT
    item.record_probe(ok(at=clock.now))
    assert item.usable(clock.now) and item.breaker.state(clock.now) is CircuitState.HALF_OPEN
    assert item.weight(clock.now) == RAMP_START
    clock.advance(10)
    assert item.weight(clock.now) == 1.0


def test_a_flapping_replica_is_held_out_although_it_answers(clock: FakeClock) -> None:
    item = health(FAILURE_THRESHOLD=1, RESET_TIMEOUT=60.0, HEALTH_CHECK_INTERVAL=1.0)
    item.record_failure("refused")
    item.record_probe(ok(at=clock.now))  # back...
    clock.advance(2)
    item.record_failure("refused")  # ...and down again soon after: a flap
    hold = item.breaker.hold_down()
    assert hold == 2.0
    clock.advance(hold / 2)
    item.record_probe(ok(at=clock.now))  # answers, but the hold-down is not over
    assert item.suspect and not item.usable(clock.now)
    clock.advance(hold)
    item.record_probe(ok(at=clock.now))
    assert item.usable(clock.now)


def test_a_lagging_replica_is_rechecked_sooner(clock: FakeClock) -> None:
    item = health(HEALTH_CHECK_INTERVAL=1.0, MAX_LAG_SECONDS=5.0)
    item.record_probe(ok(lag=60, at=clock.now))
    assert item._recheck_interval() == 0.25
    item.record_probe(ok(lag=0, at=clock.now))
    assert item._recheck_interval() == 1.0
    assert item.usable(clock.now)


def test_replay_position_follows_the_probes_and_a_failure_forgets_it() -> None:
    # A replica restarted after a crash accepts reads from its minimum recovery point on,
    # which may lie behind where it was: what was seen before must not vouch for it.
    item = health()
    item.record_probe(ProbeResult(ok=True, checked_at=0, in_recovery=True, replay_lsn=500))
    assert item.replayed(Position(450), refresh=False)
    item.record_failure("terminating connection due to administrator command")
    assert not item.replayed(Position(450), refresh=False)
    item.record_probe(ProbeResult(ok=True, checked_at=1, in_recovery=True, replay_lsn=400))
    assert item.replayed(Position(400), refresh=False)
    assert not item.replayed(Position(450), refresh=False)
    item.record_probe(ProbeResult(ok=True, checked_at=2, in_recovery=False))  # promoted
    assert not item.replayed(Position(1), refresh=False)


def test_a_position_counts_only_on_its_timeline() -> None:
    item = health()
    item.record_probe(
        ProbeResult(ok=True, checked_at=0, in_recovery=True, replay_lsn=500, timeline=2)
    )
    assert item.replayed(Position(450, 2), refresh=False)
    assert item.replayed(Position(450), refresh=False)  # a token that names no timeline
    # The write was made on timeline 3 (after a failover): this standby may lack it however
    # far it replayed on 2, and a write on timeline 1 may be one the failover dropped.
    assert not item.replayed(Position(450, 3), refresh=False)
    assert not item.replayed(Position(450, 1), refresh=False)


def test_a_member_marked_promoted_is_unmarked_when_seen_a_standby_again() -> None:
    # a demoted leader that rejoined: connections to it are no longer to be left
    item = health()
    item.promoted.update({"10.0.0.1:5432", "10.0.0.2:5432"})
    item.record_probe(
        ProbeResult(ok=True, checked_at=0, in_recovery=True, replay_lsn=5, server="10.0.0.1:5432")
    )
    item.record_probe(ProbeResult(ok=True, checked_at=1, in_recovery=False, server="10.0.0.2:5432"))
    assert item.promoted == {"10.0.0.2:5432"}


def test_positions_are_kept_per_server_of_a_multi_host_alias(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind one alias, each member has its own position: a token is checked against the
    member the connection is on, never against another one's."""
    from django_pgreplica.health import replica as module

    on = ["10.0.0.1:5432"]
    monkeypatch.setattr(module, "server_key", lambda alias, raw=None: on[0])
    monkeypatch.setattr(module, "server_count", lambda alias: 2)
    item = health()
    item.record_probe(
        ProbeResult(
            ok=True, checked_at=0, in_recovery=True, replay_lsn=900, timeline=1,
            server="10.0.0.1:5432",
        )
    )  # fmt: skip
    assert item.replayed(Position(800, 1), refresh=False)
    on[0] = "10.0.0.2:5432"  # the next connection reached the other member
    assert not item.replayed(Position(800, 1), refresh=False)
    assert not item.replayed_everywhere(Position(800, 1))  # one of two members known
    item.record_probe(
        ProbeResult(
            ok=True, checked_at=1, in_recovery=True, replay_lsn=700, timeline=1,
            server="10.0.0.2:5432",
        )
    )  # fmt: skip
    assert not item.replayed(Position(800, 1), refresh=False)
    assert item.replayed(Position(700, 1), refresh=False)
    assert item.replayed_everywhere(Position(700, 1))
    assert not item.replayed_everywhere(Position(800, 1))


def test_lag_after_an_idle_spell_counts_from_when_it_was_last_caught_up(clock: FakeClock) -> None:
    # The probe's figure (now - last replayed commit) includes a long quiet spell before
    # the replay stopped; this process saw it caught up 3 s ago, so it lags at most 3 s.
    item = health(MAX_LAG_SECONDS=30.0)
    item.record_probe(ok(lag=0, at=clock.now))
    clock.advance(3)
    item.record_probe(ok(lag=48.5, at=clock.now))
    assert item.last is not None and item.last.lag_seconds == pytest.approx(3.0)
    assert item.usable(clock.now)
    clock.advance(40)  # stuck for long enough: lagging in earnest
    item.record_probe(ok(lag=88.5, at=clock.now))
    assert item.last is not None and item.last.lag_seconds == pytest.approx(43.0)
    assert not item.usable(clock.now)


def test_lag_bound_needs_own_observation_and_ends_with_a_failure(clock: FakeClock) -> None:
    item = health(MAX_LAG_SECONDS=30.0)
    item.record_probe(ok(lag=0, at=clock.now), shared=False)  # another process's verdict
    clock.advance(1)
    item.record_probe(ok(lag=48.5, at=clock.now))
    assert item.last is not None and item.last.lag_seconds == 48.5
    item.record_probe(ok(lag=0, at=clock.now))
    item.record_failure("refused")  # it may come back restored from an older backup
    clock.advance(1)
    item.record_probe(ok(lag=48.5, at=clock.now))
    assert item.last is not None and item.last.lag_seconds == 48.5
