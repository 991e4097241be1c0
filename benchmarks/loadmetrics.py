"""What a stretch of load says about the contract: the samples of the clients judged against
the faults that were in force (pure: no I/O, times are ``time.monotonic()`` seconds).

- A failed read (5xx or connection error) is expected only while the primary is down and
  only for a client that sent a token (its write may be on no replica yet). A tokenless
  read never needs the primary (contract #5): one failing is a goal missed, as is any
  failed request while the primary is up.
- A write failing while the primary is down is expected and counted apart.
- A read-your-writes violation is a 404 on a client's own order: right after placing it
  (``readback``) or later (``revisit``).
- Recovery: from the moment a replica is given back to the first ``/whoami-db/`` answered
  by that server. The bound is a few HEALTH_CHECK_INTERVALs, plus the flap hold-down
  (2, 4, 8 ... s, at most RESET_TIMEOUT) when it failed again within RESET_TIMEOUT of its
  previous recovery (contract #4).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.faults import PRIMARY, FaultRecord
from benchmarks.loadclient import READ_KINDS, Sample

PRIMARY_ALIAS = "default"
PRIMARY_GRACE = 2.0  # after the primary is back: reconnects and HEALTH_CHECK_INTERVAL
RECOVERY_SLACK = 5.0  # "a few HEALTH_CHECK_INTERVALs" (1 s in the demo) + the first ramp share
RESET_TIMEOUT = 60.0  # the demo's; bounds the flap hold-down
OUTAGE_KINDS = {"kill", "stop", "hang", "promote"}  # those open the replica's circuit


@dataclass
class Outage:
    """A fault in absolute monotonic time (for windows and flap history across phases)."""

    kind: str
    node: str
    began: float
    returned: float | None

    @classmethod
    def of(cls, record: FaultRecord, t0: float) -> Outage | None:
        if record.began is None:
            return None
        back = None if record.returned is None else t0 + record.returned
        return cls(record.fault.kind, record.fault.node, t0 + record.began, back)


@dataclass
class WindowResult:
    name: str
    description: str
    seconds: float = 0.0
    requests: int = 0
    throughput: float = 0.0
    failures: int = 0
    write_failures: int = 0
    write_failures_unexpected: int = 0  # with the primary up
    read_failures: int = 0
    tokenless_read_failures: int = 0  # must be 0 always (contract #5)
    read_failures_unexpected: int = 0  # not (primary down and a token sent)
    violations: int = 0
    readback_violations: int = 0
    revisit_violations: int = 0
    promoted_reads: int = 0  # whoami answered by a replica that was not in recovery
    promoted_read_times: list[float] = field(default_factory=list)  # s into the window
    acknowledged: int = 0
    lost_writes: int | None = None
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    replica_share: float = 0.0
    reads_by_database: dict[str, int] = field(default_factory=dict)
    whoami_by_server: dict[str, int] = field(default_factory=dict)
    latency_by_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    failure_examples: list[dict[str, Any]] = field(default_factory=list)
    violation_examples: list[dict[str, Any]] = field(default_factory=list)
    log_counts: dict[str, int] = field(default_factory=dict)
    heal_seconds: float = 0.0
    acknowledged_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def recovery_max(self) -> float | None:
        seen = [r["seconds"] for r in self.recoveries if r["seconds"] is not None]
        return max(seen) if seen else None

    @property
    def recoveries_late(self) -> int:
        return sum(1 for r in self.recoveries if r["ok"] is False)

    @property
    def goals_met(self) -> bool:
        return (
            self.read_failures_unexpected == 0
            and self.tokenless_read_failures == 0
            and self.write_failures_unexpected == 0
            and self.violations == 0
            and not self.lost_writes
            and self.recoveries_late == 0
        )


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def primary_down(outages: Sequence[Outage], end: float) -> list[tuple[float, float]]:
    return [
        (o.began, (o.returned if o.returned is not None else end) + PRIMARY_GRACE)
        for o in outages
        if o.node == PRIMARY
    ]


def _during(sample: Sample, windows: Sequence[tuple[float, float]]) -> bool:
    return any(sample.at < hi and sample.at + sample.latency > lo for lo, hi in windows)


def summarize(
    result: WindowResult,
    samples: Sequence[Sample],
    violations: Sequence[dict[str, Any]],
    started: float,
    ended: float,
    outages: Sequence[Outage],
    history: Sequence[Outage],
    ports: dict[int, str],
) -> None:
    """Fill ``result`` from the samples of [started, ended]; ``history`` holds the outages
    before this window too (flap damping remembers them); ``ports`` maps port -> node."""
    result.seconds = round(ended - started, 1)
    result.requests = len(samples)
    result.throughput = round(len(samples) / max(ended - started, 1e-9), 1)
    down = primary_down(outages, ended)
    failed = [s for s in samples if s.status is None or s.status >= 500]
    writes = [s for s in failed if s.kind == "order"]
    reads = [s for s in failed if s.kind != "order"]
    result.failures = len(failed)
    result.write_failures = len(writes)
    result.write_failures_unexpected = sum(1 for s in writes if not _during(s, down))
    result.read_failures = len(reads)
    result.tokenless_read_failures = sum(1 for s in reads if not s.live_token)
    result.read_failures_unexpected = sum(
        1 for s in reads if not (s.live_token and _during(s, down))
    )
    examples = sorted(failed, key=lambda s: (s.kind == "order", s.at))[:12]
    result.failure_examples = [
        {
            "t": round(s.at - started, 2),
            "kind": s.kind,
            "status": s.status,
            "token_sent": s.live_token,
            "primary_down": _during(s, down),
            "error": (s.error or "")[:300],
        }
        for s in examples
    ]
    latencies = [s.latency for s in samples]
    result.p50_ms = round(percentile(latencies, 0.50) * 1000, 1)
    result.p99_ms = round(percentile(latencies, 0.99) * 1000, 1)
    result.max_ms = round(max(latencies, default=0.0) * 1000, 1)
    for kind in ("order", *READ_KINDS):
        values = [s.latency for s in samples if s.kind == kind]
        if values:
            result.latency_by_kind[kind] = {
                "count": len(values),
                "p50_ms": round(percentile(values, 0.5) * 1000, 1),
                "p99_ms": round(percentile(values, 0.99) * 1000, 1),
            }
    ok_reads = [s for s in samples if s.kind in READ_KINDS and s.status == 200]
    by_db = Counter(s.database for s in ok_reads if s.database)
    result.reads_by_database = dict(sorted(by_db.items()))
    total = sum(by_db.values())
    result.replica_share = round((total - by_db.get(PRIMARY_ALIAS, 0)) / total, 4) if total else 0
    whoami = [s for s in ok_reads if s.kind == "whoami" and s.server_port is not None]
    result.whoami_by_server = dict(
        sorted(Counter(ports.get(s.server_port or 0, "?") for s in whoami).items())
    )
    promoted = [
        s for s in whoami if s.in_recovery is False and ports.get(s.server_port or 0) != PRIMARY
    ]
    result.promoted_reads = len(promoted)
    result.promoted_read_times = [round(s.at - started, 2) for s in promoted[:20]]
    result.statuses = dict(
        sorted(Counter(str(s.status) if s.status else "conn-error" for s in samples).items())
    )
    result.violations = len(violations)
    result.readback_violations = sum(1 for v in violations if v["read"] == "readback")
    result.revisit_violations = result.violations - result.readback_violations
    result.violation_examples = [
        {
            **v,
            "t": round(v["at"] - started, 2),
            "primary_down": any(lo <= v["at"] <= hi for lo, hi in down),
        }
        for v in violations[:10]
    ]
    result.recoveries = recoveries(outages, history, whoami, ports, started, ended)


def recoveries(
    outages: Sequence[Outage],
    history: Sequence[Outage],
    whoami: Sequence[Sample],
    ports: dict[int, str],
    started: float,
    ended: float,
) -> list[dict[str, Any]]:
    """For each replica given back in this window: seconds to its first read, and the bound."""
    node_port = {node: port for port, node in ports.items()}
    found = []
    for outage in outages:
        if outage.node == PRIMARY or outage.returned is None:
            continue
        port = node_port[outage.node]
        first = min(
            (s.at for s in whoami if s.at >= outage.returned and s.server_port == port
             and s.in_recovery),
            default=None,
        )  # fmt: skip
        hold = hold_down(outage, history) if outage.kind in OUTAGE_KINDS else 0.0
        allowed = max(0.0, outage.began + hold - outage.returned) + RECOVERY_SLACK
        seconds = None if first is None else round(first - outage.returned, 2)
        if seconds is not None:
            ok: bool | None = seconds <= allowed
        else:  # never seen: late, unless the window ended before the bound
            ok = False if ended - outage.returned > allowed else None
        found.append(
            {
                "node": outage.node,
                "kind": outage.kind,
                "returned_at": round(outage.returned - started, 2),
                "seconds": seconds,
                "hold_down": hold,
                "allowed": round(allowed, 1),
                "ok": ok,
            }
        )
    return found


def hold_down(outage: Outage, history: Sequence[Outage]) -> float:
    """The breaker's hold-down for ``outage`` (see health/breaker.py): 2**flaps s, where a
    flap is an outage that began within RESET_TIMEOUT of the previous one's end."""
    previous = sorted(
        (o for o in history if o.node == outage.node and o.kind in OUTAGE_KINDS
         and o.began < outage.began),
        key=lambda o: o.began,
    )  # fmt: skip
    flaps = 0
    last_back: float | None = None
    for o in [*previous, outage]:
        recent = last_back is not None and o.began - last_back < RESET_TIMEOUT
        flaps = flaps + 1 if recent else 0
        last_back = o.returned
    return 0.0 if flaps == 0 else min(RESET_TIMEOUT, 2.0**flaps)
