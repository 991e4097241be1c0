"""``manage.py replication_status``: streaming replication at a glance, Nagios-style.

Exit codes: 0 OK, 1 WARNING, 2 CRITICAL (a replica down, promoted, not streaming, or over a
critical threshold), 3 UNKNOWN (the primary is unreachable, or the command line is wrong).
An unreachable server is reported in the output, never as a traceback.

    manage.py replication_status                      # tables
    manage.py replication_status --json               # one JSON document
    manage.py replication_status --watch 5            # again every 5 s until Ctrl-C
    manage.py replication_status --database replica   # only that replica
    manage.py replication_status --warning-seconds 2 --critical-bytes 50MB
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_pgreplica.conf import get_settings
from django_pgreplica.monitoring import Report, Status, Thresholds, check_replication
from django_pgreplica.monitoring.render import render_text, report_to_dict
from django_pgreplica.units import parse_bytes, parse_seconds


def _argument(parse: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type from a :mod:`django_pgreplica.units` parser."""

    def convert(text: str) -> float:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


WATCH_LONGEST = 86400.0


def _interval(text: str) -> float:
    value = parse_seconds(text)
    if value <= 0:
        raise ValueError("the --watch interval must be more than 0 seconds")
    if value > WATCH_LONGEST:  # a typo's huge number would overflow the clock, not wait
        raise ValueError("the --watch interval must be at most 1 day (86400 seconds)")
    return value


def pause(seconds: float) -> None:
    """Between two --watch checks (a seam for tests)."""
    time.sleep(seconds)


class Command(BaseCommand):
    help = (
        "Show the state and lag of each PostgreSQL streaming replica, its replication slot "
        "and the primary's configuration. Exit code: 0 OK, 1 WARNING, 2 CRITICAL, "
        "3 UNKNOWN (primary unreachable)."
    )
    # A monitoring probe must answer even when the project's system checks fail.
    requires_system_checks: list[str] = []  # noqa: RUF012 - Django's own attribute

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.error = self._usage_error  # type: ignore[method-assign]
        self._parser = parser
        return parser

    def _usage_error(self, message: str) -> NoReturn:
        # argparse exits 2 on a bad option, which would read as CRITICAL: usage is UNKNOWN.
        if getattr(self._parser, "called_from_command_line", False):
            self._parser.print_usage(sys.stderr)
            sys.stderr.write(f"{self._parser.prog}: error: {message}\n")
            sys.exit(int(Status.UNKNOWN))
        raise CommandError(f"Error: {message}", returncode=int(Status.UNKNOWN))

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print one JSON document instead of tables"
        )
        parser.add_argument(
            "--watch",
            type=_argument(_interval),
            metavar="SECONDS",
            help="check again every SECONDS until Ctrl-C (with --json: one document per line)",
        )
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="check only this replica alias (repeatable)",
        )
        parser.add_argument(
            "--warning-seconds",
            type=_argument(parse_seconds),
            metavar="S",
            help="lag warning threshold (default: PGREPLICA['LAG_WARNING_SECONDS'])",
        )
        parser.add_argument(
            "--critical-seconds",
            type=_argument(parse_seconds),
            metavar="S",
            help="lag critical threshold (default: PGREPLICA['LAG_CRITICAL_SECONDS'])",
        )
        parser.add_argument(
            "--critical-bytes",
            type=_argument(parse_bytes),
            metavar="SIZE",
            help="byte lag critical threshold, e.g. 100MB (default: LAG_CRITICAL_BYTES)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        settings = get_settings()
        databases: list[str] | None = options["databases"]
        for alias in databases or ():
            if alias not in settings.replicas:
                raise CommandError(
                    f"{alias!r} is not a replica alias; PGREPLICA['REPLICAS'] is "
                    f"{', '.join(settings.replicas) or 'empty'}.",
                    returncode=int(Status.UNKNOWN),
                )
        thresholds = Thresholds.from_settings(
            settings,
            warning_seconds=options["warning_seconds"],
            critical_seconds=options["critical_seconds"],
            critical_bytes=options["critical_bytes"],
        )
        watch: float | None = options["watch"]
        status = Status.UNKNOWN
        try:
            while True:
                report = check_replication(databases, thresholds=thresholds, with_routing=True)
                status = report.status
                self._show(report, as_json=options["json"], watching=watch is not None)
                if watch is None:
                    break
                pause(watch)
        except KeyboardInterrupt:
            self.stdout.write("")
        except Exception as exc:
            # Anything unexpected is UNKNOWN to a monitoring system, never WARNING (exit 1).
            raise CommandError(
                f"replication check failed: {exc}", returncode=int(Status.UNKNOWN)
            ) from exc
        sys.exit(int(status))

    def _show(self, report: Report, *, as_json: bool, watching: bool) -> None:
        if as_json:
            document = report_to_dict(report)
            self.stdout.write(json.dumps(document) if watching else json.dumps(document, indent=2))
        else:
            if watching and self.stdout.isatty():
                self.stdout.write("\033[H\033[2J", ending="")  # clear the terminal
            elif watching:
                self.stdout.write("")
            self.stdout.write(render_text(report))
        self.stdout.flush()
