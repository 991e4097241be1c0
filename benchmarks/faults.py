"""The faults the load test inflicts, and running a schedule of them against a live cluster.

A :class:`Fault` is one node put out of action for ``hold`` seconds and then given back.
:class:`FaultRunner` runs a whole schedule, one thread per fault so that faults overlap as
planned, behind a gate that keeps one way for every read to be served: the primary up, or
at least one replica that answers reads (a paused one does: it lags but answers). A fault
whose start would break that waits until it holds (recorded as ``delayed``); so does a
rebuild while the primary is down, and a primary stop while a replica is being rebuilt
from it. The gate is what lets the soak's seed overlap faults freely.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django_pgreplica.testing.cluster import Cluster
from django_pgreplica.testing.cluster.processes import children

PRIMARY = "primary"
# kind -> what it does to the node, and how it is given back
KINDS: dict[str, str] = {
    "kill": "SIGKILL the postmaster; later start it",
    "stop": "pg_ctl stop (fast); later start it",
    "hang": "SIGSTOP the postmaster and its children (TCP still accepts); later SIGCONT",
    "pause": "pg_wal_replay_pause(); later pg_wal_replay_resume()",
    "promote": "pg_ctl promote (split brain); later rebuild it from the primary",
    "primary-restart": "stop the primary; later start it",
}
# Kinds after which the replica answers reads while the fault is in force.
ANSWERS_READS = {"pause"}


@dataclass(frozen=True)
class Fault:
    kind: str
    node: str
    at: float  # planned start, seconds from the start of the run
    hold: float  # seconds in force before the node is given back

    def label(self) -> str:
        return f"{self.kind} {self.node} at {self.at:.1f}s for {self.hold:.1f}s"


@dataclass
class FaultRecord:
    """What happened to one fault: planned and real times (seconds from the run's start)."""

    fault: Fault
    began: float | None = None  # the fault action was sent
    begin_took: float = 0.0
    delayed: float = 0.0  # waited at the gate before starting
    ending: float | None = None  # the give-back action was sent
    returned: float | None = None  # the give-back action finished: the node is back
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(doc.pop("fault"))
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in doc.items()}


def _postgres_pids(cluster: Cluster, node: str) -> list[int]:
    pid = cluster.pid(node)
    return [] if pid is None else [pid, *children(pid)]


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class FaultRunner:
    """Runs faults in threads against ``cluster``; times are relative to ``t0``."""

    def __init__(
        self, cluster: Cluster, t0: float, log: Callable[[str], None] = lambda _: None
    ) -> None:
        self.cluster = cluster
        self.t0 = t0
        self.log = log
        self.records: list[FaultRecord] = []
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._in_force: dict[str, str] = {}  # node -> kind
        self._rebuilding = 0
        self._hung: dict[str, list[int]] = {}

    # -- the gate --------------------------------------------------------------------------
    def _admissible(self, fault: Fault) -> bool:
        if fault.node in self._in_force:
            return False
        if fault.kind == "primary-restart" and self._rebuilding:
            return False
        return reads_servable({**self._in_force, fault.node: fault.kind}, self.cluster)

    # -- running ---------------------------------------------------------------------------
    def start(self, faults: list[Fault]) -> None:
        for fault in faults:
            record = FaultRecord(fault)
            self.records.append(record)
            thread = threading.Thread(
                target=self._run, args=(record,), name=f"fault-{fault.kind}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def join(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def busy(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _run(self, record: FaultRecord) -> None:
        fault = record.fault
        time.sleep(max(0.0, self.t0 + fault.at - time.monotonic()))
        asked = self.now()
        with self._cond:
            self._cond.wait_for(lambda: self._admissible(fault))
            self._in_force[fault.node] = fault.kind
        record.delayed = self.now() - asked
        record.began = self.now()
        self._step(record, "begin", lambda: self._begin(fault))
        record.begin_took = self.now() - record.began
        self.log(f"  t={record.began:6.1f}s {fault.kind} {fault.node}")
        time.sleep(max(0.0, self.t0 + record.began + fault.hold - time.monotonic()))
        if fault.kind == "promote":  # the rebuild clones from the primary: it must be up
            with self._cond:
                self._cond.wait_for(lambda: PRIMARY not in self._in_force)
                self._rebuilding += 1
        record.ending = self.now()
        try:
            self._step(record, "end", lambda: self._end(fault))
        finally:
            record.returned = self.now()
            with self._cond:
                del self._in_force[fault.node]
                if fault.kind == "promote":
                    self._rebuilding -= 1
                self._cond.notify_all()
        self.log(f"  t={record.returned:6.1f}s {fault.node} back ({fault.kind} ended)")

    def _step(self, record: FaultRecord, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # a fault helper failed: report it, keep the run going
            record.errors.append(f"{what}: {type(exc).__name__}: {exc}")
            self.log(f"  {record.fault.label()}: {what} failed: {exc}")

    def _begin(self, fault: Fault) -> None:
        cluster, node = self.cluster, fault.node
        if fault.kind == "kill":
            cluster.kill(node)
        elif fault.kind in ("stop", "primary-restart"):
            cluster.stop(node)
        elif fault.kind == "hang":
            pids = _postgres_pids(cluster, node)
            _signal_all(pids, signal.SIGSTOP)
            self._hung[node] = pids
        elif fault.kind == "pause":
            cluster.pause_replay(node)
        elif fault.kind == "promote":
            cluster.promote(node)
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _end(self, fault: Fault) -> None:
        cluster, node = self.cluster, fault.node
        if fault.kind in ("kill", "stop", "primary-restart"):
            cluster.start(node)
        elif fault.kind == "hang":
            _signal_all(self._hung.pop(node, []) + _postgres_pids(cluster, node), signal.SIGCONT)
        elif fault.kind == "pause":
            cluster.resume_replay(node)
        elif fault.kind == "promote":
            cluster.rebuild(node, timeout=60)


def reads_servable(in_force: dict[str, str], cluster: Cluster) -> bool:
    """With these faults in force, can every read still be answered by someone?"""
    if PRIMARY not in in_force:
        return True
    return any(in_force.get(node.name) in (None, *ANSWERS_READS) for node in cluster.replicas)
