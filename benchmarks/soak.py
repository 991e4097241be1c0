"""The soak: a seeded, reproducible schedule of random faults (pure; run by ``faults.py``).

The seed decides everything: which fault, on which node, when, for how long, and whether
the next one starts while the last is still in force (overlap) or after it (sequential).
The planner keeps one way for reads to be served at every moment (see
:func:`faults.reads_servable`) by estimating when each node is back; the runner's gate
enforces the same at run time, so a slow rebuild only delays a fault, never breaks that.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from benchmarks.faults import PRIMARY, Fault

# kind -> (weight, shortest hold, longest hold); holds in seconds
MIX: dict[str, tuple[float, float, float]] = {
    "kill": (3.0, 3.0, 20.0),
    "stop": (2.0, 3.0, 20.0),
    "hang": (2.0, 3.0, 15.0),
    "pause": (2.0, 5.0, 45.0),
    "promote": (1.0, 3.0, 10.0),
    "primary-restart": (1.5, 3.0, 10.0),
}
# Estimated seconds for the give-back step, so the planner knows when a node is back.
GIVE_BACK = {"promote": 10.0, "kill": 3.0, "stop": 3.0, "primary-restart": 3.0}
WARMUP = 5.0  # healthy traffic before the first fault
QUIET_END = 8.0  # no fault starts this close to the end: recovery is measured too


def _conflicts(planned: Sequence[Fault], candidate: Fault, replicas: Sequence[str]) -> bool:
    """Would ``candidate`` share a node with, or leave reads unservable alongside, a
    planned fault (by estimated intervals)?"""

    def interval(f: Fault) -> tuple[float, float]:
        return f.at, f.at + f.hold + GIVE_BACK.get(f.kind, 1.0) + 2.0

    start, end = interval(candidate)
    overlapping = [f for f in planned if interval(f)[0] < end and start < interval(f)[1]]
    if any(f.node == candidate.node for f in overlapping):
        return True
    kinds = {f.node: f.kind for f in [*overlapping, candidate]}
    if PRIMARY in kinds:
        # Conservative: all overlapping faults taken as in force at once.
        if not any(kinds.get(r) in (None, "pause") for r in replicas):
            return True
        # A rebuild needs the primary: no primary outage near a promoted replica.
        if any(kind == "promote" for kind in kinds.values()):
            return True
    return False


def schedule(seed: int, seconds: float, replicas: Sequence[str]) -> list[Fault]:
    """Faults for a soak of ``seconds``; the same seed always gives the same list."""
    rng = random.Random(seed)
    kinds = list(MIX)
    weights = [MIX[k][0] for k in kinds]
    faults: list[Fault] = []
    at = WARMUP
    while at < seconds - QUIET_END:
        for _attempt in range(8):  # another draw when the first one conflicts
            kind = rng.choices(kinds, weights)[0]
            node = PRIMARY if kind == "primary-restart" else rng.choice(list(replicas))
            _, shortest, longest = MIX[kind]
            hold = round(rng.uniform(shortest, min(longest, max(shortest, seconds - at - 5))), 1)
            fault = Fault(kind, node, round(at, 1), hold)
            if not _conflicts(faults, fault, replicas):
                faults.append(fault)
                break
        else:
            fault = None
        # Overlap (the next fault strikes while this one holds) or sequential, 50/50.
        if fault is not None and rng.random() < 0.5:
            at += rng.uniform(1.0, max(1.5, fault.hold))
        else:
            at += (fault.hold if fault else 0.0) + rng.uniform(2.0, 15.0)
    return faults


def describe(faults: Sequence[Fault]) -> str:
    return "\n".join(f"  {i + 1:2d}. {f.label()}" for i, f in enumerate(faults))
