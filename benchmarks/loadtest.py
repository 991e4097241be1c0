"""Proof under fire: the demo shop under concurrent load while replicas and the primary fail.

One command builds everything, runs the phases and/or a soak and tears it all down again::

    .venv/bin/python benchmarks/loadtest.py [--duration-per-phase 20] [--clients 32]
        [--workers 2] [--phases healthy,replica-killed,...] [--soak MINUTES --seed N]
        [--pause-seconds 30] [--outage-seconds 5] [--pgbouncer] [--conn-max-age 60]

It starts a private cluster (``--dir``, first free block of ports from ``--port``, 2
replicas), migrates and seeds it, serves ``testproject`` with gunicorn (gthread workers) on
a free port, optionally behind one PgBouncer per node in transaction pooling mode, and
drives it with :mod:`loadclient` clients. Phases (any order, any length, repeats allowed),
each one fault (``faults.py``) at fixed times scaled to ``--duration-per-phase``:

``healthy``            no fault
``replica-killed``     replica1 is SIGKILLed, then started again mid-phase
``replay-paused``      replica1 stops replaying WAL for ``--pause-seconds``
``replica-promoted``   replica2 is promoted (split brain), later rebuilt from the primary
``replica-stopped``    replica1 is stopped (pg_ctl stop), then started again mid-phase
``replica-hung``       replica2 is SIGSTOPped (it still accepts TCP), SIGCONTed mid-phase
``primary-restarted``  the primary is stopped and started: writes fail meanwhile (expected)

``--soak MINUTES`` adds (or with no ``--phases``, is) a window of random faults from a
seeded schedule (``soak.py``), overlapping or sequential as the seed decides, always
leaving a server for every read. After each window the cluster is healed (nodes started,
replicas rebuilt or resumed, caught up, and each one serving reads through gunicorn again),
so no window depends on what the one before it did. At the end every order that was
answered 201 is looked up on the primary: one missing is a lost write. ``loadmetrics.py``
judges each window against the contract.

Results: a table on stdout, JSON in ``benchmarks/results/`` (``--json``), and the
gunicorn / PostgreSQL / PgBouncer logs in ``.pgreplica/loadtest-logs/<label>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import soak  # noqa: E402
from benchmarks.faults import PRIMARY, Fault, FaultRunner  # noqa: E402
from benchmarks.loadclient import run_clients  # noqa: E402
from benchmarks.loadmetrics import Outage, WindowResult, summarize  # noqa: E402
from django_pgreplica.testing.cluster import (  # noqa: E402
    Cluster,
    ClusterError,
    find_bindir,
    free_base_port,
    port_in_use,
)

HOST = "127.0.0.1"
PRIMARY_ALIAS = "default"
PYTHON = sys.executable
PGBOUNCER_TEMPLATE = ROOT / "benchmarks" / "pgbouncer" / "pgbouncer.ini.template"
PGBOUNCER_USERLIST = ROOT / "benchmarks" / "pgbouncer" / "userlist.txt"
DEFAULT_PHASES = (
    "healthy",
    "replica-killed",
    "replay-paused",
    "replica-promoted",
    "replica-stopped",
    "replica-hung",
    "primary-restarted",
)
# Lines of the gunicorn log worth counting per phase (evidence for the report).
LOG_PATTERNS = {
    "tracebacks": re.compile(r"^Traceback", re.MULTILINE),
    "server_errors": re.compile(r"ERROR django\.request"),
    "not_found_logged": re.compile(r"WARNING django\.request: Not Found"),
    "fallback_mid_query": re.compile(r"failed mid-query"),
    "fallback_connect": re.compile(r"connection failed \("),
    "circuit_opened": re.compile(r"circuit opened"),
    "circuit_closed": re.compile(r"circuit closed"),
    "task_stale_read": re.compile(r"not found \(stale replica read\?\)"),
    "worker_timeouts": re.compile(r"WORKER TIMEOUT"),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port(start: int | None = None) -> int:
    """A free TCP port on 127.0.0.1: the first free from ``start``, else any."""
    if start is not None:
        for port in range(start, start + 200):
            if not port_in_use(port):
                return port
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- processes we own -------------------------------------------------------------------


@dataclass
class Managed:
    """A child process in its own session, so stopping it takes its whole group."""

    name: str
    proc: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop on {sig.name}")


def spawn(name: str, cmd: Sequence[str], logfile: Path, env: dict[str, str]) -> Managed:
    handle = logfile.open("ab")
    try:
        proc = subprocess.Popen(
            list(cmd),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    finally:
        handle.close()
    return Managed(name, proc)


def wait_port(port: int, proc: Managed, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} is not listening on {port} after {timeout:.0f}s")


# --- the stack: cluster, pgbouncer, gunicorn --------------------------------------------


@dataclass
class Options:
    dir: Path = ROOT / ".pgreplica" / "load"
    port: int = 62432
    clients: int = 32
    duration: float = 20.0
    phases: tuple[str, ...] = DEFAULT_PHASES
    workers: int = 2
    threads: int = 4
    conn_max_age: str = "0"
    pgbouncer: bool = False
    think: float = 0.01
    pause_seconds: float = 30.0
    outage_seconds: float = 5.0
    soak_minutes: float = 0.0
    seed: int = 1
    label: str = "loadtest"
    logdir: Path | None = None  # default: .pgreplica/loadtest-logs/<label>
    json_path: Path | None = ROOT / "benchmarks" / "results" / "loadtest.json"
    keep: bool = False
    monitor: bool = True
    quiet: bool = False


class Stack:
    """Everything the load test runs, started in order and stopped in reverse."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.cluster = Cluster(opts.dir)  # an old one to clear first; replaced in _start
        self.logdir = opts.logdir or ROOT / ".pgreplica" / "loadtest-logs" / opts.label
        self.bouncers: dict[str, tuple[int, Managed]] = {}  # node -> (port, process)
        self.gunicorn: Managed | None = None
        self.http_port = 0
        self.products: list[str] = []
        self._exit = contextlib.ExitStack()

    # -- lifecycle --
    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    def _start(self) -> None:
        shutil.rmtree(self.logdir, ignore_errors=True)
        self.logdir.mkdir(parents=True)
        if self.cluster.exists():  # left over by a run that was killed: start clean
            log(f"removing the old cluster in {self.cluster.dir}")
            self.cluster.down()
        # Other engineers' clusters may hold the base port: take the next free block.
        port = free_base_port(self.opts.port, 3)
        self.cluster = Cluster(self.opts.dir, port=port, replicas=2)
        started = time.monotonic()
        self._exit.callback(self._down_cluster)
        self.cluster.up()
        log(f"cluster up on ports {port}-{port + 2} in {time.monotonic() - started:.1f}s")
        if self.opts.pgbouncer:
            for node in ("primary", "replica1", "replica2"):
                self._start_pgbouncer(node)
        self._manage("migrate", "--verbosity", "0")
        self._manage("seed_demo", "--no-admin")
        # Seeded stock is small; the load must never run out (a 409 is not what we test).
        self.cluster.execute("primary", "UPDATE shop_product SET stock = 1000000000")
        self.products = [
            row[0]
            for row in self.cluster.execute(
                "primary", "SELECT slug FROM shop_product ORDER BY slug"
            )
        ]
        self.cluster.wait_replayed(timeout=30)
        self._start_gunicorn()

    def _down_cluster(self) -> None:
        logs = self.cluster.dir / "logs"
        if logs.is_dir():
            for path in logs.glob("*.log"):
                shutil.copy(path, self.logdir / f"postgres-{path.name}")
        if self.opts.keep:
            log(f"keeping the cluster in {self.cluster.dir} (--keep)")
            return
        try:
            self.cluster.down()
        except ClusterError as exc:
            log(f"cluster down failed: {exc}")

    # -- environment --
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            **self.cluster.env(),
            "DJANGO_SETTINGS_MODULE": "benchmarks.bench_settings",
            "PYTHONPATH": str(ROOT),
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CELERY_TASK_ALWAYS_EAGER": "1",  # confirmations run inline: no broker needed
            "PGREPLICA_BENCH_CONN_MAX_AGE": self.opts.conn_max_age,
            "PGREPLICA_BENCH_VARIANT": "pgreplica",
        }
        if self.bouncers:
            env["DATABASE_PORT"] = str(self.bouncers["primary"][0])
            env["DATABASE_REPLICAS"] = ",".join(
                f"{HOST}:{self.bouncers[name][0]}" for name in ("replica1", "replica2")
            )
            env["PGREPLICA_BENCH_PGBOUNCER"] = "1"
        return env

    def _manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [PYTHON, str(ROOT / "testproject" / "manage.py"), *args]
        result = subprocess.run(
            cmd, env=self.env(), cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-2000:]}")
        return result

    def replication_status(self) -> dict[str, Any]:
        """``manage.py replication_status --json``: its exit code and the gist of its verdict."""
        cmd = [PYTHON, str(ROOT / "testproject" / "manage.py"), "replication_status", "--json"]
        started = time.monotonic()
        result = subprocess.run(
            cmd, env=self.env(), cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        summary: dict[str, Any] = {
            "exit_code": result.returncode,
            "seconds": round(time.monotonic() - started, 2),
        }
        try:
            doc = json.loads(result.stdout)
        except ValueError:
            summary["error"] = (result.stderr or result.stdout)[-500:]
            return summary
        summary["status"] = doc.get("status")
        summary["replicas"] = {
            item["alias"]: {
                "status": item["status"],
                "reasons": item["reasons"],
                "matched_by": item.get("matched_by"),
                "lag_bytes": item.get("lag_bytes"),
            }
            for item in doc.get("replicas", [])
        }
        summary["messages"] = doc.get("messages", [])
        return summary

    # -- pgbouncer --
    def _start_pgbouncer(self, node: str) -> None:
        workdir = self.cluster.dir / "pgbouncer"
        workdir.mkdir(exist_ok=True)
        listen = free_port(self.cluster.port + 100 + len(self.bouncers))
        ini = workdir / f"{node}.ini"
        ini.write_text(
            PGBOUNCER_TEMPLATE.read_text().format(
                name=node,
                listen_addr=HOST,
                listen_port=listen,
                backend_host=HOST,
                backend_port=self.cluster.node(node).port,
                dir=workdir,
                userlist=workdir / "userlist.txt",
            )
        )
        shutil.copy(PGBOUNCER_USERLIST, workdir / "userlist.txt")
        self.cluster.user.own(workdir)
        for path in workdir.iterdir():
            self.cluster.user.own(path)
        logfile = self.logdir / f"pgbouncer-{node}.log"
        cmd = self.cluster.user.wrap(["pgbouncer", str(ini)])
        proc = spawn(f"pgbouncer-{node}", cmd, logfile, dict(os.environ))
        self._exit.callback(proc.stop)
        wait_port(listen, proc)
        self.bouncers[node] = (listen, proc)
        log(f"pgbouncer for {node} on port {listen}")

    # -- gunicorn --
    def _start_gunicorn(self) -> None:
        self.http_port = free_port(self.cluster.port + 200)
        gunicorn = str(Path(PYTHON).with_name("gunicorn"))
        cmd = [
            gunicorn, "testproject.wsgi:application",
            "--bind", f"{HOST}:{self.http_port}",
            "--workers", str(self.opts.workers),
            "--worker-class", "gthread",
            "--threads", str(self.opts.threads),
            "--backlog", "2048",
            "--timeout", "60",
            "--graceful-timeout", "5",
            "--capture-output",
            "--log-level", "info",
        ]  # fmt: skip
        self.gunicorn = spawn("gunicorn", cmd, self.gunicorn_log, self.env())
        self._exit.callback(self.gunicorn.stop)
        wait_port(self.http_port, self.gunicorn)
        deadline = time.monotonic() + 30
        url = f"http://{HOST}:{self.http_port}/whoami-db/"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or not self.gunicorn.alive():
                    raise RuntimeError(
                        f"gunicorn does not answer; see {self.gunicorn_log}"
                    ) from None
                time.sleep(0.2)
        log(
            f"gunicorn: {self.opts.workers} gthread workers x {self.opts.threads} threads "
            f"on port {self.http_port}"
        )

    @property
    def gunicorn_log(self) -> Path:
        return self.logdir / "gunicorn.log"

    def log_size(self) -> int:
        try:
            return self.gunicorn_log.stat().st_size
        except OSError:
            return 0

    def log_counts(self, start: int, end: int) -> dict[str, int]:
        with self.gunicorn_log.open("rb") as handle:
            handle.seek(start)
            text = handle.read(end - start).decode(errors="replace")
        return {name: len(pattern.findall(text)) for name, pattern in LOG_PATTERNS.items()}

    # -- healing between phases --
    def heal(self) -> float:
        """Every node up, replicas streaming and caught up; returns the seconds it took."""
        started = time.monotonic()
        if not self.cluster.is_running("primary"):
            self.cluster.start("primary")
        for status in self.cluster.status():
            if status.role != "replica":
                continue
            if not status.running:
                self.cluster.start(status.name)
            elif status.in_recovery is False:
                self.cluster.rebuild(status.name)
            elif status.replay_paused:
                self.cluster.resume_replay(status.name)
        self.cluster.wait_streaming(timeout=60)
        self.cluster.wait_replayed(timeout=60)
        self.wait_serving()
        return time.monotonic() - started

    def wait_serving(self, timeout: float = 90.0) -> bool:
        """Until /whoami-db/ has been answered by every replica: the next window starts with
        the workers using them all, whatever the last one did (a flap hold-down, a ramp)."""
        ports = {node.port for node in self.cluster.replicas}
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        url = f"http://{HOST}:{self.http_port}/whoami-db/"
        while seen != ports and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(url, timeout=5) as response:
                    doc = json.loads(response.read())
                if doc.get("in_recovery"):
                    seen.add(doc.get("server_port"))
            time.sleep(0.05)
        if seen != ports:
            log(f"replicas on ports {sorted(ports - seen)} served no read in {timeout:.0f}s")
        return seen == ports


# --- phases and the soak ------------------------------------------------------------------


@dataclass
class Probe:
    at: float  # seconds into the window
    label: str
    action: Callable[[], Any]


@dataclass
class Window:
    """A stretch of load with its faults: a named phase, or the soak."""

    name: str
    description: str
    duration: float  # load runs at least this long, and until every fault is over + tail
    faults: list[Fault]
    probes: list[Probe] = field(default_factory=list)
    tail: float = 5.0


PHASES: dict[str, str] = {
    "healthy": "no fault",
    "replay-paused": "pause replay on replica1 for --pause-seconds",
    "replica-promoted": "promote replica2 (split brain), then rebuild it from the primary",
    "replica-killed": "SIGKILL replica1, start it again mid-phase",
    "replica-stopped": "pg_ctl stop replica1, start it again mid-phase",
    "replica-hung": "SIGSTOP replica2 (it still accepts TCP), SIGCONT mid-phase",
    "primary-restarted": "stop the primary, start it --outage-seconds later",
}


def plan(name: str, stack: Stack, opts: Options) -> Window:
    """A phase: one fault at fixed times, scaled to --duration-per-phase."""
    d = opts.duration
    first = min(3.0, d * 0.15)  # when the fault strikes: after some healthy traffic
    mid = max(d * 0.5, first + 3.5) - first  # held until mid-phase
    probes = [Probe(first + 1.5, "replication_status", stack.replication_status)]
    faults = {
        "healthy": [],
        "replay-paused": [Fault("pause", "replica1", first, opts.pause_seconds)],
        "replica-promoted": [Fault("promote", "replica2", first, max(d * 0.6, first + 4) - first)],
        "replica-killed": [Fault("kill", "replica1", first, mid)],
        "replica-stopped": [Fault("stop", "replica1", first, mid)],
        "replica-hung": [Fault("hang", "replica2", first, mid)],
        "primary-restarted": [Fault("primary-restart", PRIMARY, first, opts.outage_seconds)],
    }[name]
    if name == "replay-paused":
        description = f"pause replay on replica1 for {opts.pause_seconds:g}s"
        probes.append(Probe(first + opts.pause_seconds - 2, "replication_status",
                            stack.replication_status))  # fmt: skip
    elif name == "primary-restarted":
        description = f"stop the primary, start it {opts.outage_seconds:g}s later"
    else:
        description = PHASES[name]
    end = max((f.at + f.hold for f in faults), default=0.0)
    return Window(name, description, max(d, end + 5), faults, probes if opts.monitor else [])


def soak_window(stack: Stack, opts: Options) -> Window:
    seconds = opts.soak_minutes * 60
    faults = soak.schedule(opts.seed, seconds, [n.name for n in stack.cluster.replicas])
    probes = (
        [Probe(at, "replication_status", stack.replication_status)
         for at in range(30, int(seconds), 60)]
        if opts.monitor else []
    )  # fmt: skip
    return Window(
        "soak",
        f"{opts.soak_minutes:g} min of random faults, seed {opts.seed}",
        seconds,
        faults,
        probes,
        tail=10.0,
    )


@dataclass
class Run:
    """State carried from window to window: flap history, the port of each node."""

    history: list[Outage] = field(default_factory=list)
    ports: dict[int, str] = field(default_factory=dict)


def run_window(stack: Stack, window: Window, opts: Options, state: Run, seed: int) -> WindowResult:
    result = WindowResult(window.name, window.description)
    stop = threading.Event()
    log_start = stack.log_size()
    log(f"{window.name}: {window.description}")
    if window.faults and window.name == "soak":
        log("schedule:\n" + soak.describe(window.faults))
    clients = run_clients(
        opts.clients, HOST, stack.http_port, stack.products, stop,
        think=opts.think, revisit_after=6.0, seed=seed,
    )  # fmt: skip
    started = time.monotonic()
    runner = FaultRunner(stack.cluster, started, log)
    try:
        runner.start(window.faults)
        for probe in window.probes:
            time.sleep(max(0.0, started + probe.at - time.monotonic()))
            at = time.monotonic() - started
            try:
                outcome = probe.action()
            except Exception as exc:  # a probe that fails is evidence, not a reason to stop
                outcome = f"{type(exc).__name__}: {exc}"
            result.events.append({"at": round(at, 2), "step": probe.label, "result": outcome})
        time.sleep(max(0.0, started + window.duration - time.monotonic()))
        runner.join(timeout=300)
        time.sleep(window.tail)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=30)
        runner.join(timeout=120)  # on an interrupt too: give every node back
    ended = time.monotonic()
    time.sleep(0.5)  # let the workers flush their last log lines
    outages = [o for o in (Outage.of(r, started) for r in runner.records) if o is not None]
    state.history.extend(outages)
    samples = [s for c in clients for s in c.result.samples]
    violations = [v for c in clients for v in c.result.violations]
    summarize(result, samples, violations, started, ended, outages, state.history, state.ports)
    result.faults = [r.as_json() for r in runner.records]
    result.acknowledged_ids = [i for c in clients for i in c.result.acknowledged]
    result.acknowledged = len(result.acknowledged_ids)
    result.log_counts = stack.log_counts(log_start, stack.log_size())
    result.heal_seconds = round(stack.heal(), 1)
    if opts.monitor:
        result.events.append(
            {"at": "after heal", "step": "replication_status", "result": stack.replication_status()}
        )
    return result


def check_lost_writes(cluster: Cluster, results: Sequence[WindowResult]) -> None:
    """Every order answered 201 must be on the primary now."""
    for result in results:
        ids = result.acknowledged_ids
        if not ids:
            result.lost_writes = 0
            continue
        rows = cluster.execute("primary", "SELECT id FROM shop_order WHERE id = ANY(%s)", [ids])
        missing = sorted(set(ids) - {row[0] for row in rows})
        result.lost_writes = len(missing)
        if missing:
            result.events.append({"at": "end", "step": "lost writes", "result": missing[:50]})


# --- report -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": run([str(find_bindir() / "postgres"), "--version"]),
        "pgbouncer": run(["pgbouncer", "--version"]).splitlines()[0]
        if shutil.which("pgbouncer")
        else None,
        "loadavg": os.getloadavg(),
        "git": run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
    }


def format_table(results: Sequence[WindowResult]) -> str:
    header = (
        f"{'window':17} {'secs':>5} {'reqs':>6} {'req/s':>5} {'read fail':>9} "
        f"{'(no token)':>10} {'write fail':>10} {'(primary up)':>12} {'RYW viol':>8} "
        f"{'lost':>4} {'recover s':>9} {'p50 ms':>6} {'p99 ms':>7} {'replica %':>9}  goals"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lost = "?" if r.lost_writes is None else str(r.lost_writes)
        rec = "-" if r.recovery_max is None else f"{r.recovery_max:.1f}"
        goals = "ok" if r.goals_met else "MISSED"
        lines.append(
            f"{r.name:17} {r.seconds:5.0f} {r.requests:6d} {r.throughput:5.0f} "
            f"{r.read_failures:9d} {r.tokenless_read_failures:10d} {r.write_failures:10d} "
            f"{r.write_failures_unexpected:12d} {r.violations:8d} {lost:>4} {rec:>9} "
            f"{r.p50_ms:6.1f} {r.p99_ms:7.1f} {r.replica_share * 100:8.1f}%  {goals}"
        )
    return "\n".join(lines)


def format_faults(result: WindowResult) -> str:
    """The soak's faults as they ran, with the recovery of each replica given back."""
    recovered = {(r["node"], r["returned_at"]): r for r in result.recoveries}
    lines = [f"{'#':>2} {'fault':16} {'node':8} {'planned':>7} {'began':>6} {'hold':>5} "
             f"{'back':>6} {'first read s':>12} {'allowed':>7}"]  # fmt: skip
    for i, f in enumerate(result.faults, 1):
        rec = recovered.get((f["node"], f["returned"]), {})
        first = rec.get("seconds")
        lines.append(
            f"{i:2d} {f['kind']:16} {f['node']:8} {f['at']:7.1f} {f['began'] or 0:6.1f} "
            f"{f['hold']:5.1f} {f['returned'] or 0:6.1f} "
            f"{'-' if first is None else first:>12} {rec.get('allowed', '-'):>7}"
            + (f"  errors: {f['errors']}" if f["errors"] else "")
        )
    return "\n".join(lines)


def run(opts: Options) -> dict[str, Any]:
    """Run the whole load test; returns the JSON-able report (also written to --json)."""
    for name in opts.phases:
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; known: {', '.join(PHASES)}")
    report: dict[str, Any] = {"machine": machine()}
    results: list[WindowResult] = []
    with Stack(opts) as stack:
        state = Run(ports={node.port: node.name for node in stack.cluster.nodes})
        report["config"] = {
            "clients": opts.clients,
            "workers": opts.workers,
            "threads": opts.threads,
            "worker_class": "gthread",
            "conn_max_age": opts.conn_max_age,
            "pgbouncer": opts.pgbouncer,
            "think_seconds": opts.think,
            "duration_per_phase": opts.duration,
            "phases": list(opts.phases),
            "pause_seconds": opts.pause_seconds,
            "outage_seconds": opts.outage_seconds,
            "soak_minutes": opts.soak_minutes,
            "seed": opts.seed,
            "cluster": str(stack.cluster.dir),
            "base_port": stack.cluster.port,
            "http_port": stack.http_port,
            "pgbouncer_ports": {node: port for node, (port, _) in stack.bouncers.items()},
            "logs": str(stack.logdir),
        }
        windows = [plan(name, stack, opts) for name in opts.phases]
        if opts.soak_minutes:
            windows.append(soak_window(stack, opts))
            report["soak_schedule"] = [asdict(f) for f in windows[-1].faults]
        for index, window in enumerate(windows):
            result = run_window(stack, window, opts, state, seed=opts.seed * 7919 + index * 1000)
            results.append(result)
            log(
                f"  {result.requests} requests, {result.read_failures} failed reads, "
                f"{result.write_failures} failed writes, {result.violations} RYW violations, "
                f"replica share {result.replica_share:.1%}, healed in {result.heal_seconds:.1f}s"
            )
        check_lost_writes(stack.cluster, results)
        report["final_replication_status"] = stack.replication_status() if opts.monitor else None
    report["machine"]["loadavg_after"] = os.getloadavg()
    report["windows"] = [
        {k: v for k, v in asdict(r).items() if k != "acknowledged_ids"}
        | {"goals_met": r.goals_met, "recovery_max": r.recovery_max}
        for r in results
    ]
    report["goals_met"] = all(r.goals_met for r in results)
    table = format_table(results)
    report["table"] = table
    soaks = [r for r in results if r.name == "soak"]
    if soaks:
        report["soak_table"] = format_faults(soaks[0])
    if not opts.quiet:
        print(table)
        if soaks:
            print("\nsoak faults (seconds from the soak's start):\n" + report["soak_table"])
    if opts.json_path is not None:
        opts.json_path.parent.mkdir(parents=True, exist_ok=True)
        opts.json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        log(f"results written to {opts.json_path}")
    return report


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwind through the finally blocks: everything gets stopped


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """SIGTERM and SIGINT unwind like Ctrl-C (SIGINT too: a shell starts background jobs
    with it ignored, and Python then leaves it so)."""
    previous = {sig: signal.signal(sig, _sigterm) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Load + fault test of django-pgreplica behind gunicorn (see docstring)."
    )
    parser.add_argument("--duration-per-phase", type=float, default=20.0, metavar="S")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--conn-max-age", default="0",
        help="Django CONN_MAX_AGE for every alias: seconds or 'none' (default 0, as the demo)",
    )  # fmt: skip
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="put PgBouncer (transaction pooling) in front of every node",
    )
    parser.add_argument(
        "--phases",
        default=None,
        help=f"comma-separated, any order, repeats allowed, from {','.join(PHASES)} "
        f"(default: {','.join(DEFAULT_PHASES)}; none with --soak alone)",
    )
    parser.add_argument(
        "--soak", type=float, default=0.0, metavar="MINUTES",
        help="after the phases, MINUTES of random overlapping faults (see soak.py)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="the soak's schedule and the clients")
    parser.add_argument(
        "--think",
        type=float,
        default=0.01,
        help="mean think time between a client's actions, seconds",
    )
    parser.add_argument("--pause-seconds", type=float, default=30.0)
    parser.add_argument("--outage-seconds", type=float, default=5.0)
    parser.add_argument("--dir", type=Path, default=ROOT / ".pgreplica" / "load")
    parser.add_argument("--port", type=int, default=62432, help="cluster base port")
    parser.add_argument("--label", default=None, help="names the log directory")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results file (default benchmarks/results/loadtest[-pgbouncer].json)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument(
        "--no-monitor", action="store_true", help="skip the replication_status probes"
    )
    args = parser.parse_args(argv)
    suffix = "-pgbouncer" if args.pgbouncer else ""
    if args.phases is None:
        phases = () if args.soak else DEFAULT_PHASES
    else:
        phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    label = args.label or f"loadtest{suffix}" + ("-soak" if args.soak else "")
    return Options(
        dir=args.dir,
        port=args.port,
        clients=args.clients,
        duration=args.duration_per_phase,
        phases=phases,
        soak_minutes=args.soak,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        conn_max_age=args.conn_max_age,
        pgbouncer=args.pgbouncer,
        think=args.think,
        pause_seconds=args.pause_seconds,
        outage_seconds=args.outage_seconds,
        label=label,
        json_path=args.json or ROOT / "benchmarks" / "results" / f"{label}.json",
        keep=args.keep,
        monitor=not args.no_monitor,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.pgbouncer and not shutil.which("pgbouncer"):
        print("pgbouncer not found: apt-get install -y pgbouncer", file=sys.stderr)
        return 2
    try:
        with terminate_cleanly():
            report = run(opts)
    except KeyboardInterrupt:
        log("interrupted: everything started was stopped")
        return 130
    return 0 if report["goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
