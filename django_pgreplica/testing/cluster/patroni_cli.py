"""``python -m django_pgreplica.testing.cluster patroni COMMAND [--dir DIR] ...``.

The commands of :class:`~.patroni.PatroniCluster`; :mod:`.cli` mounts them as the
``patroni`` group and turns a ClusterError into one ``pgreplica: error: ...`` line.
``patroni status`` exits 1 unless the cluster is healthy.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import time
from typing import Any

from .errors import ClusterError
from .patroni import PatroniCluster
from .patroni_setup import DEFAULT_PATRONI_DIR, DEFAULT_PATRONI_PORT
from .patroni_status import PatroniStatus

logger = logging.getLogger(__name__)

__all__ = ["add_patroni_commands", "run_patroni"]


def add_patroni_commands(sub: Any) -> None:
    """Add the ``patroni`` command group to the main parser's subparsers ``sub``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        default=DEFAULT_PATRONI_DIR,
        help=f"cluster directory (default: {DEFAULT_PATRONI_DIR})",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log more")
    group = sub.add_parser(
        "patroni",
        help="a Patroni cluster: etcd + N Patroni members (`patroni --help`)",
        description="A local Patroni cluster (etcd + Patroni members) for failover work.",
    )
    commands = group.add_subparsers(dest="patroni_command", required=True, metavar="COMMAND")
    up = commands.add_parser("up", parents=[common], help="create or start the cluster")
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"base port (default: {DEFAULT_PATRONI_PORT}): member N's PostgreSQL on "
        "port+N-1, its REST API on port+10+N-1, etcd on port+20 and port+21",
    )
    up.add_argument("--members", type=int, default=None, help="Patroni members (default: 3)")
    up.add_argument("--dbname", default=None, help="database to create (default: pgreplica)")
    up.add_argument(
        "--synchronous",
        choices=["on", "off", "quorum"],
        default=None,
        help="Patroni's synchronous_mode (default: on; off: asynchronous replication)",
    )
    up.add_argument("--timeout", type=float, default=90, help="seconds to wait (default: 90)")
    commands.add_parser("down", parents=[common], help="stop everything, delete the directory")
    status = commands.add_parser(
        "status", parents=[common], help="leader and members; exit 1 unless healthy"
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    commands.add_parser(
        "env", parents=[common], help="print `export DATABASE_...=` lines (incl. multi-host)"
    )
    switchover = commands.add_parser(
        "switchover", parents=[common], help="planned switchover; waits for the new leader"
    )
    switchover.add_argument(
        "candidate", nargs="?", help="member to promote (default: any eligible)"
    )
    switchover.add_argument("--timeout", type=float, default=60)
    kill = commands.add_parser(
        "kill-leader", parents=[common], help="SIGKILL the leader's postmaster"
    )
    kill.add_argument("--no-wait", action="store_true", help="do not wait for a new leader")
    kill.add_argument("--timeout", type=float, default=60)
    hang = commands.add_parser(
        "hang", parents=[common], help="SIGSTOP a member (Patroni and PostgreSQL)"
    )
    hang.add_argument("name", help="member: pg1, pg2, ...")
    hang.add_argument(
        "--only",
        choices=["postgres", "patroni"],
        default=None,
        help="freeze only its PostgreSQL, or only its Patroni",
    )
    resume = commands.add_parser("resume", parents=[common], help="SIGCONT a hung member")
    resume.add_argument("name", help="member: pg1, pg2, ...")
    for name, text in [
        ("wait-leader", "wait until a leader takes writes; print its name"),
        ("wait-healthy", "wait until one leader runs and every other member streams"),
    ]:
        wait = commands.add_parser(name, parents=[common], help=text)
        wait.add_argument("--timeout", type=float, default=60)


def _print_status(status: PatroniStatus, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status.as_dict(), indent=2))
        return
    print(
        f"{'MEMBER':<7} {'PORT':>6} {'API':>6} {'PATRONI':>8} {'POSTGRES':>8}  "
        f"{'ROLE':<14} {'STATE':<11} {'TL':>3} {'LAG':>9}"
    )
    for m in status.members:
        state = "hung" if m.hung else (m.state or ("unreachable" if not m.reachable else "-"))
        lag = "-" if m.lag is None else str(m.lag)
        print(
            f"{m.name:<7} {m.pg_port:>6} {m.api_port:>6} {m.patroni_pid or '-':>8} "
            f"{m.postgres_pid or '-':>8}  {m.role or '-':<14} {state:<11} "
            f"{m.timeline or '-':>3} {lag:>9}"
        )
    print(
        f"etcd: {'running' if status.etcd_running else 'not running'}; "
        f"leader: {status.leader or 'none'}"
    )
    print("healthy" if status.healthy else "unhealthy: " + "; ".join(status.problems))


def run_patroni(args: argparse.Namespace) -> int:
    command = args.patroni_command
    if command == "up":
        cluster = PatroniCluster(
            args.dir,
            port=args.port,
            members=args.members,
            dbname=args.dbname,
            synchronous=args.synchronous,
        )
        started = time.monotonic()
        cluster.up(timeout=args.timeout)
        logger.info("Patroni cluster up in %.1fs", time.monotonic() - started)
        shell = (
            "python -m django_pgreplica.testing.cluster patroni env "
            f"--dir {shlex.quote(str(cluster.dir))}"
        )
        logger.info('for a shell: eval "$(%s)"', shell)
        _print_status(cluster.status(), as_json=False)
        return 0
    cluster = PatroniCluster(args.dir)
    if command == "down":
        cluster.down()
        return 0
    cluster._require_exists()
    if command == "status":
        status = cluster.status()
        _print_status(status, args.json)
        return 0 if status.healthy else 1
    if command == "env":
        for key, value in cluster.env().items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    if command == "switchover":
        old, started = cluster.leader(), time.monotonic()
        new = cluster.switchover(args.candidate, timeout=args.timeout)
        logger.info(
            "switched over from %s to %s in %.1fs (it takes writes)",
            old,
            new,
            time.monotonic() - started,
        )
        return 0
    if command == "kill-leader":
        killed = cluster.kill_leader()
        logger.info("killed the postmaster of the leader %s", killed.name)
        if not args.no_wait:
            new = cluster.wait_for_leader(timeout=args.timeout, exclude=[killed.name])
            logger.info(
                "%s leads and takes writes %.1fs later", new, time.monotonic() - killed.sent_at
            )
        return 0
    if command == "hang":
        cluster.hang(args.name, only=args.only or "member")
        return 0
    if command == "resume":
        cluster.resume(args.name)
        return 0
    if command == "wait-leader":
        print(cluster.wait_for_leader(timeout=args.timeout))
        return 0
    if command == "wait-healthy":
        cluster.wait_until_healthy(timeout=args.timeout)
        return 0
    raise ClusterError(f"unknown patroni command {command!r}")
