"""Primary failover under load: the demo shop behind gunicorn on a real Patroni cluster.

One command builds everything, runs every scenario with every connection mode, and tears
it all down again::

    .venv/bin/python benchmarks/patroni_failover.py [--scenario switchover,kill-leader,...]
        [--conn 0,60,pool,pool-8] [--workers 4] [--threads 8] [--clients 32]

It starts a 3-member Patroni cluster (etcd, ``synchronous_mode: on``) in ``--dir`` from
base port ``--port`` with the cluster tool, migrates and seeds the shop, and for each run
serves ``testproject.settings`` with gunicorn (gthread) pointed at every member the way a
Patroni site is configured: the primary alias is all three hosts with
``target_session_attrs=read-write``, the replica alias all three with ``standby`` and
random load balancing (``DATABASE_REPLICAS=members``). Half the clients are writers (order,
read the order back with the token the POST handed out, now and then revisit an older
order), half are tokenless readers (a product, or ``/whoami-db/``: which server answered).

Scenarios, each struck after ``--warmup`` seconds of load:

``switchover``   a planned switchover (Patroni's REST API), to the synchronous standby
``kill-leader``  SIGKILL of the leader's postmaster (Patroni fails over at once)
``hang-leader``  SIGSTOP of the leader's Patroni and PostgreSQL; resumed ``--hang-seconds``
                 after the fault, once the new leader takes writes

Connection modes (``--conn``): ``0`` (a connection per request, Django's default), ``60``
(``CONN_MAX_AGE=60``), ``pool`` (Django's psycopg pool) and ``pool-8`` (its ``max_size``
8, a worker's threads); kept connections are checked
before reuse (``CONN_HEALTH_CHECKS``). The load runs until the old primary streams again
(or ``--max-after`` seconds), then the cluster is healed before the next run.

Per run: the longest stretch without a successful write, failed requests by kind, the
failed writes' error classes (from the tracebacks in the gunicorn log), read-your-writes
violations (an own order answered 404), acknowledged orders missing on the new leader, and
when the old primary streamed again (Patroni's view). JSON in
``benchmarks/results/patroni-failover.json``, logs in ``.pgreplica/patroni-bench-logs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.loadclient import Sample, ShopClient  # noqa: E402
from benchmarks.loadtest import (  # noqa: E402
    Managed,
    free_port,
    log,
    machine,
    spawn,
    terminate_cleanly,
    wait_port,
)
from django_pgreplica.testing.cluster import ClusterError, PatroniCluster  # noqa: E402

HOST = "127.0.0.1"
PYTHON = sys.executable
SCENARIOS = {
    "switchover": "planned switchover to the synchronous standby",
    "kill-leader": "SIGKILL the leader's postmaster",
    "hang-leader": "SIGSTOP the leader (Patroni and PostgreSQL), SIGCONT later",
}
CONNS = {
    "0": {"DATABASE_CONN_MAX_AGE": "0"},
    "60": {"DATABASE_CONN_MAX_AGE": "60"},
    "pool": {"DATABASE_POOL": "1"},
    # a pool per alias as large as a worker's threads: no request queues for a connection
    "pool-8": {"DATABASE_POOL": "1", "DATABASE_POOL_MAX_SIZE": "8"},
}
WRITE, OWN_READ, TOKENLESS = "write", "own read", "tokenless read"
GROUP = {
    "order": WRITE,
    "readback": OWN_READ,
    "revisit": OWN_READ,
    "product": TOKENLESS,
    "whoami": TOKENLESS,
}
REVISIT_AFTER = 3.0  # an order this old is revisited: its token must still be honoured
STATUS_POLL = 0.5  # seconds between two reads of Patroni's view of the cluster
SLOW = 5.0  # seconds: a request slower than the primary's connect_timeout waited on a server


# --- the clients ------------------------------------------------------------------------


class Shopper(ShopClient):
    """A writer (orders, reads each order back with its token, revisits older ones) or a
    tokenless reader (a product, or which server answered ``/whoami-db/``)."""

    def __init__(
        self,
        index: int,
        writer: bool,
        port: int,
        products: Sequence[str],
        stop: threading.Event,
        think: float,
    ) -> None:
        # The client's timeout outlasts gunicorn's (60 s): a request is never given up by
        # the client before the server has answered or killed its worker.
        super().__init__(index, HOST, port, products, stop, think=think, timeout=70.0, seed=index)
        self.writer = writer

    def revisit_own(self) -> None:
        cutoff = time.monotonic() - REVISIT_AFTER
        old = [entry for entry in self.placed if entry[0] <= cutoff]
        if not old:
            return
        placed_at, order_id = self.rng.choice(old)
        sample = self.record(self.call("revisit", "GET", f"/api/orders/{order_id}/")[0])
        if sample.status == 404:
            self.violation(sample, order_id, placed_at)

    def run(self) -> None:
        turn = 0
        while not self.stop_event.is_set():
            turn += 1
            if self.writer:
                self.place_and_read_back()
                if turn % 3 == 0:
                    self.revisit_own()
            elif turn % 2:
                slug = self.rng.choice(self.products)
                self.record(self.call("product", "GET", f"/api/products/{slug}/")[0])
            else:
                self.record(self.call("whoami", "GET", "/whoami-db/")[0])
            self.stop_event.wait(self.rng.uniform(0, 2 * self.think))


# --- watching the cluster ---------------------------------------------------------------


class Watcher(threading.Thread):
    """Polls Patroni's view: the leader and each member's role, state and timeline, kept
    whenever they change, so that the old primary's return is read off afterwards."""

    def __init__(self, cluster: PatroniCluster) -> None:
        super().__init__(name="patroni-watcher", daemon=True)
        self.cluster = cluster
        self.stop_event = threading.Event()
        self.events: list[tuple[float, str | None, dict[str, tuple[Any, ...]]]] = []

    def run(self) -> None:
        last: tuple[Any, ...] | None = None
        while not self.stop_event.is_set():
            try:
                status = self.cluster.status()
            except (ClusterError, OSError):
                status = None
            if status is not None:
                members = {m.name: (m.role, m.state, m.timeline, m.hung) for m in status.members}
                if (status.leader, members) != last:
                    self.events.append((time.monotonic(), status.leader, members))
                    last = (status.leader, members)
            self.stop_event.wait(STATUS_POLL)

    def streams_again(self, name: str, since: float) -> float | None:
        """When ``name`` first streamed from another leader, on its timeline, after ``since``."""
        for at, leader, members in self.events:
            if at < since or leader in (None, name) or leader not in members:
                continue
            _role, state, timeline, hung = members[name]
            if state == "streaming" and not hung and timeline == members[leader][2]:
                return at
        return None

    def timeline(self, t0: float) -> list[dict[str, Any]]:
        return [
            {
                "at": round(at - t0, 2),
                "leader": leader,
                "members": {
                    n: f"{r}/{s}/tl{tl}" + ("/hung" if h else "")
                    for n, (r, s, tl, h) in members.items()
                },
            }
            for at, leader, members in self.events
        ]


# --- the faults -------------------------------------------------------------------------


@dataclass
class Fault:
    """What the fault thread did, in ``time.monotonic()`` seconds."""

    scenario: str
    old_leader: str
    hang_seconds: float
    struck: float = 0.0
    new_leader: str | None = None
    new_leader_at: float | None = None  # the new leader took a write (the tool's probe)
    resumed_at: float | None = None  # hang-leader: SIGCONT sent
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def run(self, cluster: PatroniCluster) -> None:
        try:
            if self.scenario == "switchover":
                self.struck = time.monotonic()
                self.new_leader = cluster.switchover(timeout=60)
            elif self.scenario == "kill-leader":
                self.struck = cluster.kill_leader().sent_at
                self.new_leader = cluster.wait_for_leader(timeout=60, exclude=[self.old_leader])
            else:
                self.struck = time.monotonic()
                cluster.hang(self.old_leader)
                try:
                    self.new_leader = cluster.wait_for_leader(timeout=60, exclude=[self.old_leader])
                    self.new_leader_at = time.monotonic()
                    time.sleep(max(0.0, self.struck + self.hang_seconds - time.monotonic()))
                finally:
                    cluster.resume(self.old_leader)
                    self.resumed_at = time.monotonic()
            if self.new_leader_at is None:
                self.new_leader_at = time.monotonic()
        except Exception as exc:  # evidence for the report; the heal afterwards repairs it
            self.error = f"{type(exc).__name__}: {exc}"
            if not self.struck:
                self.struck = time.monotonic()
        finally:
            self.done.set()


# --- the gunicorn log -------------------------------------------------------------------

RECORD_START = re.compile(
    r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: |\[\d{4}-\d\d-\d\d )", re.M
)
REQUEST_ERROR = re.compile(r"^\S+ \S+ ERROR django\.request: Internal Server Error: (\S+)")
EXCEPTION = re.compile(r"^[\w.]*(?:Error|Exception|Timeout)\w*: ", re.M)
# Router and server lines worth counting per run (evidence for the report).
LOG_COUNTS = {
    "primary_waits": "waiting up to",
    "primary_waits_connected": "connected after",
    "primary_waits_gave_up": "no server took the connection",
    "read_only_reruns": "reconnecting to the new primary",
    "replica_fallbacks": "reading elsewhere",
    "last_resort_reads": "last resort",
    "on_commit_errors": "in on_commit()",
    "worker_timeouts": "WORKER TIMEOUT",
    "tracebacks": "Traceback (most recent call last)",
}
IN_FLIGHT = (
    "terminating connection",
    "server closed the connection",
    "consuming input failed",
    "connection is lost",
    "the connection is closed",
    "connection is bad",
    "sending query failed",
    "canceling",
    "ssl syscall",
    "eof detected",
)


def error_class(exception: str) -> str:
    """connect: no server took the request's connection (psycopg prefixes "connection
    failed:"; a pool's getconn() that timed out is one too); in-flight: the connection was
    open and the server went away or refused mid-request; read-only: a statement a
    standby refused (25006) inside a transaction, which is not rerun."""
    text = exception.lower()
    if "connection failed" in text or "timeout expired" in text:
        return "connect"
    if "couldn't get a connection" in text or "pooltimeout" in text:
        return "connect (pool timeout)"
    if "read-only transaction" in text:
        return "read-only"
    if any(marker in text for marker in IN_FLIGHT):
        return "in-flight"
    return "other"


def short(text: str, limit: int = 200) -> str:
    """One line, digits of ports and pids kept (they say which server), trimmed."""
    return " ".join(text.split())[:limit]


def read_log(path: Path) -> dict[str, Any]:
    """500s by path group and error class, and the counts of LOG_COUNTS, from one log."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    starts = [m.start() for m in RECORD_START.finditer(text)] + [len(text)]
    classes: dict[str, Counter[str]] = {}
    messages: Counter[str] = Counter()
    for begin, end in itertools.pairwise(starts):
        record = text[begin:end]
        found = REQUEST_ERROR.match(record)
        if not found:
            continue
        path_ = found.group(1)
        group = (
            WRITE
            if path_ == "/api/orders/"
            else OWN_READ
            if path_.startswith("/api/orders/")
            else TOKENLESS
        )
        exceptions = list(EXCEPTION.finditer(record))
        exception = record[exceptions[-1].start() :] if exceptions else record
        kind = error_class(exception)
        if "__qualname__" in exception and "in on_commit()" in record:
            # Django 5.2 cannot log a robust on_commit callback that is a functools.partial
            # (the shop's confirmation): the order committed, the response is a 500 anyway.
            kind = "committed, on_commit crash"
        classes.setdefault(group, Counter())[kind] += 1
        messages[f"{group} [{kind}] {short(exception)}"] += 1
    return {
        "server_errors": {group: dict(counts) for group, counts in classes.items()},
        "messages": [{"count": n, "message": m} for m, n in messages.most_common(12)],
        "counts": {name: text.count(marker) for name, marker in LOG_COUNTS.items()},
    }


# --- one run ----------------------------------------------------------------------------


@dataclass
class Options:
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    conns: tuple[str, ...] = tuple(CONNS)
    workers: int = 4
    threads: int = 8
    clients: int = 32
    writers: int = 16
    think: float = 0.05
    warmup: float = 6.0
    hang_seconds: float = 25.0
    min_after: float = 15.0  # load runs at least this long after the fault...
    tail: float = 3.0  # ...and this long after the old primary streams again...
    max_after: float = 60.0  # ...but no longer than this after the fault
    dir: Path = ROOT / ".pgreplica" / "patroni-bench"
    port: int = 65210
    logdir: Path = ROOT / ".pgreplica" / "patroni-bench-logs"
    json_path: Path | None = ROOT / "benchmarks" / "results" / "patroni-failover.json"
    keep: bool = False


def site_env(cluster: PatroniCluster, conn: str) -> dict[str, str]:
    """testproject.settings pointed at every member, as a Patroni site has it."""
    members = cluster.env()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "DJANGO_", "PGREPLICA_", "PG"))
    }
    env.update(
        DATABASE_HOST=members["DATABASE_HOSTS"],
        DATABASE_PORT=members["DATABASE_PORTS"],
        DATABASE_NAME=members["DATABASE_NAME"],
        DATABASE_USER=members["DATABASE_USER"],
        DATABASE_PASSWORD="",
        DATABASE_REPLICAS="members",
        DJANGO_SETTINGS_MODULE="testproject.settings",
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        CELERY_TASK_ALWAYS_EAGER="1",  # the order confirmation runs inline: no broker
        PYTHONPATH=str(ROOT),
        **CONNS[conn],
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PYTHON, str(ROOT / "testproject" / "manage.py"), *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


# gunicorn's access log: pid, µs in the worker (from when a thread took the request, so
# not its wait in the worker's queue), status, path, the client's X-Sent header
ACCESS_FORMAT = "%(p)s %(D)s %(s)s %(U)s %({x-sent}i)s"
ACCESS_RE = re.compile(r"^<(\d+)> (\d+) (\d+) (\S+) (\S+)")


def start_gunicorn(opts: Options, env: dict[str, str], logfile: Path) -> tuple[Managed, int]:
    port = free_port(opts.port + 40)
    cmd = [
        PYTHON, "-m", "gunicorn", "testproject.wsgi:application",
        "--bind", f"{HOST}:{port}",
        "--workers", str(opts.workers),
        "--worker-class", "gthread",
        "--threads", str(opts.threads),
        "--backlog", "2048",
        "--timeout", "60",
        "--graceful-timeout", "5",
        "--access-logfile", str(logfile.with_name("access.log")),
        "--access-logformat", ACCESS_FORMAT,
        "--capture-output",
    ]  # fmt: skip
    server = spawn("gunicorn", cmd, logfile, env)
    try:
        wait_port(port, server)
        # Every worker loads Django before the load starts: ask until each pid answered.
        pids: set[int] = set()
        deadline = time.monotonic() + 60
        while len(pids) < opts.workers and time.monotonic() < deadline and server.alive():
            with contextlib.suppress(OSError, ValueError):
                url = f"http://{HOST}:{port}/whoami-db/"
                with urllib.request.urlopen(url, timeout=10) as response:
                    pids.add(int(json.loads(response.read())["worker_pid"]))
            time.sleep(0.05)
        if not pids or not server.alive():
            tail = logfile.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"gunicorn does not serve; {logfile} ends:\n{tail}")
    except BaseException:
        server.stop()
        raise
    return server, port


def worker_times(access: Path) -> dict[str, tuple[int, float]]:
    """X-Sent -> (worker pid, seconds in a worker thread), from gunicorn's access log."""
    if not access.exists():
        return {}
    found = {}
    for match in map(ACCESS_RE.match, access.read_text(errors="replace").splitlines()):
        if match:
            found[match.group(5)] = (int(match.group(1)), round(int(match.group(2)) / 1e6, 3))
    return found


def write_outage(completions: Sequence[float], t0: float, end: float) -> tuple[float, float]:
    """The longest stretch (from, to) with no write completing that ends after the fault
    (the first writes of cold workers are no outage); to is ``end`` if none came back."""
    points = [*sorted(completions), end]
    gaps = [gap for gap in itertools.pairwise(points) if gap[1] > t0]
    return max(gaps, key=lambda gap: gap[1] - gap[0], default=(t0, end))


def failed(sample: Sample) -> bool:
    if sample.status is None or sample.status >= 500:
        return True
    # An own order answered 404 is a read-your-writes violation, counted apart.
    return sample.status >= 400 and not (sample.status == 404 and GROUP[sample.kind] == OWN_READ)


def served_by(whoami: Sequence[Sample], t0: float) -> dict[str, Any]:
    """Tokenless /whoami-db/ answers before and after the fault by (alias, server role), and
    when the ones a primary answered came: they should have gone to a standby."""
    found: dict[str, Any] = {}
    for when, chosen in (
        ("before", [s for s in whoami if s.at < t0]),
        ("after", [s for s in whoami if s.at >= t0]),
    ):
        found[when] = dict(
            Counter(
                f"{s.database}@{'standby' if s.in_recovery else 'primary'}:{s.server_port}"
                for s in chosen
            )
        )
        on_primary = [s.at - t0 for s in chosen if s.in_recovery is False]
        if on_primary:
            found[f"{when}_on_primary_s"] = [round(min(on_primary), 2), round(max(on_primary), 2)]
    return found


def client_error_class(sample: Sample) -> str:
    if sample.status is not None:
        return f"http {sample.status}"
    error = (sample.error or "").lower()
    return "client timeout" if "timed out" in error else "no response (connection dropped)"


def run_one(
    opts: Options, cluster: PatroniCluster, products: Sequence[str], scenario: str, conn: str
) -> dict[str, Any]:
    label = f"{scenario}-conn{conn}"
    logdir = opts.logdir / label
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True)
    healed = time.monotonic()
    cluster.wait_until_healthy(timeout=120)
    cluster.wait_replayed(timeout=30)
    heal_seconds = time.monotonic() - healed
    env = site_env(cluster, conn)
    server, port = start_gunicorn(opts, env, logdir / "gunicorn.log")
    watcher = Watcher(cluster)
    stop = threading.Event()
    clients = [
        Shopper(i, i < opts.writers, port, products, stop, opts.think) for i in range(opts.clients)
    ]
    fault = Fault(scenario, cluster.leader(), opts.hang_seconds)
    log(f"{label}: {SCENARIOS[scenario]} ({fault.old_leader} leads), gunicorn on {port}")
    wall_t0 = time.time()
    try:
        watcher.start()
        load_start = time.monotonic()
        for client in clients:
            client.start()
        time.sleep(opts.warmup)
        wall_t0 = time.time()
        thread = threading.Thread(target=fault.run, args=(cluster,), daemon=True)
        thread.start()
        while True:
            time.sleep(0.25)
            if not fault.done.is_set() or not fault.struck:
                continue
            now = time.monotonic()
            back = watcher.streams_again(fault.old_leader, fault.resumed_at or fault.struck)
            if now >= fault.struck + opts.max_after:
                break
            if now >= fault.struck + opts.min_after and back and now >= back + opts.tail:
                break
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=90)
        load_end = time.monotonic()
        time.sleep(0.5)  # the workers' last log lines
        server.stop()
    t0 = fault.struck
    # The old primary may still be on its way back: keep watching while the cluster heals.
    with contextlib.suppress(ClusterError):
        cluster.wait_until_healthy(timeout=90)
    watcher.stop_event.set()
    watcher.join(timeout=10)
    back = watcher.streams_again(fault.old_leader, fault.resumed_at or t0)

    samples = [s for c in clients for s in c.result.samples]
    violations = [v for c in clients for v in c.result.violations]
    acknowledged = [i for c in clients for i in c.result.acknowledged]
    leader = cluster.wait_for_leader(timeout=60)
    stored = {
        row[0]
        for row in cluster.execute(
            leader, "SELECT id FROM shop_order WHERE id = ANY(%s)", [acknowledged]
        )
    }
    lost = sorted(set(acknowledged) - stored)

    requests = Counter(GROUP[s.kind] for s in samples)
    failures = [s for s in samples if failed(s)]
    failed_by = Counter(GROUP[s.kind] for s in failures)
    client_side = Counter(
        f"{GROUP[s.kind]}: {client_error_class(s)}" for s in failures if s.status is None
    )
    writes_ok = [s for s in samples if s.kind == "order" and s.status == 201]
    completed = sorted(s.at + s.latency for s in writes_ok)
    gap = write_outage(completed, t0, load_end)
    after = [at for at in completed if at > t0]
    # Writes flow again when the longest stretch without one ends (it begins at the fault,
    # or just after it while the old primary still commits); never, if it lasted to the end.
    again = gap[1] if gap[1] < load_end else None
    tokenless = [s for s in samples if GROUP[s.kind] == TOKENLESS and s.status == 200]
    whoami = [s for s in tokenless if s.kind == "whoami"]
    own_reads = [s for s in samples if GROUP[s.kind] == OWN_READ and s.status == 200]
    server_log = read_log(logdir / "gunicorn.log")
    in_worker = worker_times(logdir / "access.log")

    def rel(at: float | None) -> float | None:
        return None if at is None else round(at - t0, 2)

    result: dict[str, Any] = {
        "scenario": scenario,
        "conn": conn,
        "old_leader": fault.old_leader,
        "new_leader": fault.new_leader,
        "fault_error": fault.error,
        "fault_wallclock": time.strftime("%H:%M:%S", time.localtime(wall_t0)),
        "new_leader_takes_writes_s": rel(fault.new_leader_at),
        "resumed_s": rel(fault.resumed_at),
        "old_primary_streams_s": rel(back),
        "old_primary_streams_after_resume_s": (
            round(back - fault.resumed_at, 2) if back and fault.resumed_at else None
        ),
        "load_seconds": round(load_end - load_start, 1),
        "load_after_fault_s": round(load_end - t0, 1),
        "requests": dict(requests),
        "failed": {kind: failed_by.get(kind, 0) for kind in (WRITE, OWN_READ, TOKENLESS)},
        "failed_before_fault": sum(1 for s in failures if s.at + s.latency < t0),
        "failed_writes_by_class": server_log.get("server_errors", {}).get(WRITE, {}),
        "server_errors": server_log.get("server_errors", {}),
        "client_side_failures": dict(client_side),
        "failure_times_s": {
            kind: [rel(min(s.at for s in fs)), rel(max(s.at + s.latency for s in fs))]
            for kind in (WRITE, OWN_READ, TOKENLESS)
            if (fs := [s for s in failures if GROUP[s.kind] == kind])
        },
        "writes_acknowledged": len(acknowledged),
        "write_outage_s": round(gap[1] - gap[0], 2),
        "write_outage_from_to_s": [rel(gap[0]), rel(gap[1])],
        "first_write_after_fault_s": rel(after[0]) if after else None,
        "writes_again_s": rel(again),
        "max_write_latency_s": round(max((s.latency for s in writes_ok), default=0.0), 2),
        "max_tokenless_read_latency_s": round(max((s.latency for s in tokenless), default=0.0), 2),
        # Successful requests slower than the primary's connect_timeout (5 s): each waited
        # on something that was not answering.
        "slow_over_5s": dict(
            Counter(GROUP[s.kind] for s in samples if not failed(s) and s.latency > SLOW)
        ),
        "slow_samples": [
            {
                "at": rel(s.at),
                "kind": s.kind,
                "seconds": round(s.latency, 2),
                "alias": s.database,
                "server_port": s.server_port,
                # (pid, seconds in a worker thread): much less than "seconds" means it
                # waited for a thread of that worker
                "in_worker": in_worker.get(f"{s.sent_wall:.6f}"),
            }
            for s in sorted(samples, key=lambda s: s.at)
            if not failed(s) and s.latency > SLOW
        ][:40],
        "tokenless_served_by": served_by(whoami, t0),
        "own_reads_served_by": {
            when: dict(Counter(s.database for s in chosen))
            for when, chosen in (
                ("before", [s for s in own_reads if s.at < t0]),
                ("after", [s for s in own_reads if s.at >= t0]),
            )
        },
        "read_your_writes_violations": len(violations),
        "violations": [{**v, "at": rel(v["at"])} for v in violations[:20]],
        "lost_writes": len(lost),
        "lost_ids": lost[:50],
        "heal_seconds_before": round(heal_seconds, 1),
        "log_counts": server_log.get("counts", {}),
        "log_messages": server_log.get("messages", []),
        "patroni_timeline": watcher.timeline(t0),
        "logs": str(logdir),
    }
    log(
        f"  writes {len(writes_ok)} ok / {failed_by[WRITE]} failed, outage "
        f"{result['write_outage_s']}s, own reads failed {failed_by[OWN_READ]}, tokenless "
        f"failed {failed_by[TOKENLESS]}, RYW {len(violations)}, lost {len(lost)}, old primary "
        f"streams at {result['old_primary_streams_s']}s"
    )
    return result


# --- report -----------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def classes(run: dict[str, Any]) -> str:
    merged = Counter(run["failed_writes_by_class"])
    for key, count in run["client_side_failures"].items():
        group, _, kind = key.partition(": ")
        if group == WRITE:
            merged[kind] += count
    return ", ".join(f"{kind} {n}" for kind, n in sorted(merged.items())) or "-"


def on_primary_share(run: dict[str, Any]) -> str:
    """Of the tokenless /whoami-db/ reads after the fault, the share a primary answered."""
    after = run["tokenless_served_by"].get("after", {})
    total = sum(after.values())
    primary = sum(n for key, n in after.items() if "@primary:" in key)
    return f"{100 * primary / total:.0f}% of {total}" if total else "-"


def slowest(run: dict[str, Any], key: str, kind: str) -> str:
    """The slowest successful request of a kind, and how many took over SLOW seconds."""
    slow = run["slow_over_5s"].get(kind, 0)
    return f"{fmt(run[key])}" + (f" ({slow})" if slow else "")


def table(runs: Sequence[dict[str, Any]]) -> str:
    header = (
        "| scenario | conn | writes ok | failed writes (class) | write outage s "
        "| writes again s | new leader s | failed own reads | failed tokenless reads "
        "| RYW violations | lost writes | old primary streams s | slowest write s (> 5 s) "
        "| slowest tokenless read s (> 5 s) | tokenless reads a primary answered |"
    )
    lines = [header, "|" + " --- |" * 2 + " ---: |" + " --- |" + " ---: |" * 11]
    for r in runs:
        failed_writes = r["failed"][WRITE]
        if failed_writes:
            failed_writes = f"{failed_writes} ({classes(r)})"
        lines.append(
            f"| {r['scenario']} | {r['conn']} | {r['writes_acknowledged']} | {failed_writes} "
            f"| {fmt(r['write_outage_s'])} | {fmt(r['writes_again_s'])} "
            f"| {fmt(r['new_leader_takes_writes_s'])} | {r['failed'][OWN_READ]} "
            f"| {r['failed'][TOKENLESS]} | {r['read_your_writes_violations']} "
            f"| {r['lost_writes']} | {fmt(r['old_primary_streams_s'])} "
            f"| {slowest(r, 'max_write_latency_s', WRITE)} "
            f"| {slowest(r, 'max_tokenless_read_latency_s', TOKENLESS)} "
            f"| {on_primary_share(r)} |"
        )
    return "\n".join(lines)


def copy_cluster_logs(cluster: PatroniCluster, logdir: Path) -> None:
    logs = cluster.dir / "logs"
    if logs.is_dir():
        target = logdir / "cluster"
        target.mkdir(parents=True, exist_ok=True)
        for path in logs.glob("*.log"):
            shutil.copy(path, target / path.name)


def run(opts: Options) -> dict[str, Any]:
    started = time.monotonic()
    report: dict[str, Any] = {"machine": machine()}
    report["machine"].pop("pgbouncer", None)
    opts.logdir.mkdir(parents=True, exist_ok=True)
    cluster = PatroniCluster(opts.dir)
    if cluster.exists():  # left over by a run that was killed: start clean
        log(f"removing the old cluster in {cluster.dir}")
        cluster.down()
    cluster = PatroniCluster(opts.dir, port=opts.port, members=3, synchronous="on")
    runs: list[dict[str, Any]] = []
    try:
        up = time.monotonic()
        cluster.up(timeout=180)
        log(f"Patroni cluster up in {time.monotonic() - up:.1f}s, ports {opts.port}-")
        env = site_env(cluster, "0")
        manage(env, "migrate", "--noinput", "--verbosity", "0")
        manage(env, "seed_demo", "--no-admin")
        leader = cluster.leader()
        # Seeded stock is small; the load must never run out (a 409 is not what we test).
        cluster.execute(leader, "UPDATE shop_product SET stock = 1000000000")
        products = [r[0] for r in cluster.execute(leader, "SELECT slug FROM shop_product")]
        report["config"] = {
            "gunicorn": f"{opts.workers} gthread workers x {opts.threads} threads",
            "clients": opts.clients,
            "writers": opts.writers,
            "tokenless_readers": opts.clients - opts.writers,
            "think_seconds_mean": opts.think,
            "warmup_seconds": opts.warmup,
            "hang_seconds": opts.hang_seconds,
            "cluster": f"Patroni, 3 members, synchronous_mode on, base port {opts.port}",
            "conn_health_checks": True,
            "products": len(products),
        }
        for scenario in opts.scenarios:
            for conn in opts.conns:
                runs.append(run_one(opts, cluster, products, scenario, conn))
    finally:
        copy_cluster_logs(cluster, opts.logdir)
        if opts.keep:
            log(f"keeping the cluster in {cluster.dir} (--keep)")
        else:
            try:
                cluster.down()
            except ClusterError as exc:
                log(f"cluster down failed: {exc}")
    report["machine"]["loadavg_after"] = os.getloadavg()
    report["seconds"] = round(time.monotonic() - started)
    report["runs"] = runs
    report["table"] = table(runs)
    print(report["table"])
    if opts.json_path is not None:
        opts.json_path.parent.mkdir(parents=True, exist_ok=True)
        opts.json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        log(f"results written to {opts.json_path} ({report['seconds']}s in all)")
    return report


def names(value: str, known: dict[str, Any]) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in chosen if v not in known]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(known)}, got {value!r}")
    return chosen


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Primary failover under load on a real Patroni cluster (see the docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        type=lambda v: names(v, SCENARIOS),
        default=",".join(SCENARIOS),  # a string default goes through type= too
        metavar="NAMES",
        help=f"comma-separated, from {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--conn",
        type=lambda v: names(v, CONNS),
        default=tuple(CONNS),
        metavar="MODES",
        help="comma-separated: 0 / 60 (CONN_MAX_AGE), pool (Django's psycopg pool), "
        "pool-8 (its max_size 8) (default: all)",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--clients", type=int, default=32, help="client threads")
    parser.add_argument("--writers", type=int, default=16, help="of them, writers")
    parser.add_argument("--think", type=float, default=0.05, help="mean think time, seconds")
    parser.add_argument("--warmup", type=float, default=6.0, help="load before the fault, s")
    parser.add_argument(
        "--hang-seconds", type=float, default=25.0, help="hang-leader: SIGCONT this late"
    )
    parser.add_argument("--max-after", type=float, default=60.0, help="load after the fault")
    parser.add_argument("--dir", type=Path, default=Options.dir, help="cluster directory")
    parser.add_argument("--port", type=int, default=65210, help="cluster base port")
    parser.add_argument("--json", type=Path, default=Options.json_path, help="results file")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args(argv)
    if not 0 < args.writers < args.clients:
        parser.error("--writers must be between 1 and --clients - 1")
    return Options(
        scenarios=args.scenario,
        conns=args.conn,
        workers=args.workers,
        threads=args.threads,
        clients=args.clients,
        writers=args.writers,
        think=args.think,
        warmup=args.warmup,
        hang_seconds=args.hang_seconds,
        max_after=args.max_after,
        dir=args.dir,
        port=args.port,
        json_path=args.json,
        keep=args.keep,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        with terminate_cleanly():
            run(opts)
    except KeyboardInterrupt:
        log("interrupted: everything started was stopped")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
