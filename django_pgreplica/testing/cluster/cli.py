"""The command line: ``python -m django_pgreplica.testing.cluster COMMAND [--dir DIR] ...``.

Errors are one ``pgreplica: error: ...`` line (or a few, with a server log tail) on stderr
and exit status 1, never a traceback. ``status`` exits 1 unless every node is healthy.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict

from .base import DEFAULT_DBNAME, DEFAULT_DIR, DEFAULT_PORT
from .cluster import Cluster
from .errors import ClusterError
from .nodes import NodeStatus
from .patroni_cli import add_patroni_commands, run_patroni

logger = logging.getLogger(__name__)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir", default=DEFAULT_DIR, help=f"cluster directory (default: {DEFAULT_DIR})"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    parser = argparse.ArgumentParser(
        prog="python -m django_pgreplica.testing.cluster",
        description="A local PostgreSQL primary with streaming replicas, for dev and tests.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", parents=[common], help="create or start the cluster")
    up.add_argument("--replicas", type=int, default=None, help="number of replicas (default: 1)")
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"primary port (default: {DEFAULT_PORT}); replica N uses port+N",
    )
    up.add_argument(
        "--dbname", default=None, help=f"database to create (default: {DEFAULT_DBNAME})"
    )
    up.add_argument(
        "--secure",
        action="store_true",
        default=None,
        help="TLS, SCRAM passwords and least-privilege roles: pgconf/secure/, as compose "
        "runs it (only when the cluster is made; certificates need the openssl command)",
    )
    sub.add_parser("down", parents=[common], help="stop the cluster and delete its directory")
    status = sub.add_parser(
        "status", parents=[common], help="show the nodes; exit 1 unless all are healthy"
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("env", parents=[common], help="print `export DATABASE_...=` lines for a shell")
    for name, text in [
        ("pause-replay", "stop applying WAL on a replica"),
        ("resume-replay", "resume applying WAL on a replica"),
        ("stop", "fast shutdown of a node"),
        ("start", "start a node (a replica: until it streams)"),
        ("kill", "SIGKILL a node's postmaster"),
        ("promote", "promote a replica to primary"),
        ("rebuild", "re-clone a replica from the primary"),
    ]:
        cmd = sub.add_parser(name, parents=[common], help=text)
        cmd.add_argument("name", help="node name: primary, replica1, replica2, ...")
    add_patroni_commands(sub)
    return parser


def _print_status(statuses: list[NodeStatus], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{**asdict(s), "healthy": s.healthy} for s in statuses], indent=2))
        return
    print(f"{'NODE':<10} {'PORT':>6} {'PID':>8}  STATE")
    for s in statuses:
        if not s.running:
            state = "stopped"
        elif s.role == "primary" or not s.in_recovery:
            state = "primary" if s.in_recovery is False else "running"
            state += " (promoted)" if s.role == "replica" and s.in_recovery is False else ""
        else:
            state = "streaming" if s.streaming else "not streaming"
            state += ", replay paused" if s.replay_paused else ""
        print(f"{s.name:<10} {s.port:>6} {s.pid or '-':>8}  {state}")


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "patroni":
        return run_patroni(args)
    if args.command == "up":
        cluster = Cluster(
            args.dir, port=args.port, replicas=args.replicas, dbname=args.dbname, secure=args.secure
        )
        started = time.monotonic()
        cluster.up()
        logger.info("cluster up in %.1fs", time.monotonic() - started)
        shell = f"python -m django_pgreplica.cluster env --dir {shlex.quote(str(cluster.dir))}"
        logger.info('for a shell: eval "$(%s)"', shell)
        _print_status(cluster.status(), as_json=False)
        return 0
    cluster = Cluster(args.dir)
    if args.command == "down":
        cluster.down()
        return 0
    cluster._require_exists()
    if args.command == "status":
        statuses = cluster.status()
        _print_status(statuses, args.json)
        return 0 if all(s.healthy for s in statuses) else 1
    if args.command == "env":
        for key, value in cluster.env().items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    actions = {
        "pause-replay": cluster.pause_replay,
        "resume-replay": cluster.resume_replay,
        "stop": cluster.stop,
        "start": cluster.start,
        "kill": cluster.kill,
        "promote": cluster.promote,
        "rebuild": cluster.rebuild,
    }
    actions[args.command](args.name)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: one-line errors on stderr and a non-zero exit, never a traceback."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="pgreplica: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _run_command(args)
    except ClusterError as exc:
        print(f"pgreplica: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
