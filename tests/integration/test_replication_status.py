"""``manage.py replication_status`` against the real cluster: output and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import CommandError, call_command

from django_pgreplica.consistency import outgoing_token, scope
from django_pgreplica.db import fetch_one
from django_pgreplica.health.probe import PROBE_SQL
from django_pgreplica.management.commands import replication_status
from django_pgreplica.routing import fleet, stats
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from django_pgreplica.units import parse_bytes as parse_size
from testproject.shop.models import Product
from tests.monitoring_support import closed_port, primary_unreachable, write_rows
from tests.support import pgreplica_settings

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str]:
    """(exit code, stdout) of the command run through call_command."""
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("replication_status", *args, stdout=out, stderr=io.StringIO())
    code = exited.value.code
    assert isinstance(code, int)
    return code, out.getvalue()


def row_of(text: str, alias: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.split()[:1] == [alias])
    return line.split()


def test_healthy_table_and_exit_0() -> None:
    wait_for_replay()
    code, text = run()
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0] == "Replication status: OK"
    header = next(line for line in lines if line.startswith("REPLICA "))
    for column in (
        "STATE",
        "SYNC",
        "WRITE LAG",
        "FLUSH LAG",
        "REPLAY LAG",
        "LAG BYTES",
        "SLOT RETAINED",
        "CIRCUIT",
        "HEALTHY",
    ):
        assert column in header
    for alias in ("replica", "replica2"):
        cells = row_of(text, alias)
        assert cells[1:4] == ["OK", "streaming", "async"]
        assert cells[-2:] == ["closed", "yes"]
    assert "Replication slots:" in text
    assert "W104 default: wal_keep_size" in text  # the audit, as a warning only


def test_json_is_one_document() -> None:
    code, text = run("--json")
    assert code == 0
    data = json.loads(text)  # the whole output parses: nothing else was printed
    assert data["status"] == "OK" and data["exit_code"] == 0
    assert [r["alias"] for r in data["replicas"]] == ["replica", "replica2"]
    first = data["replicas"][0]
    assert first["state"] == "streaming" and first["application_name"] == "replica1"
    assert first["circuit_state"] == "closed" and first["healthy"] is True
    assert {s["slot_name"] for s in data["slots"]} == {"replica1", "replica2"}
    assert data["audit"][0]["code"] == "W104"


def test_database_limits_the_check_to_one_replica() -> None:
    code, text = run("--json", "--database", "replica2")
    assert code == 0
    data = json.loads(text)
    assert [r["alias"] for r in data["replicas"]] == ["replica2"]
    assert [s["slot_name"] for s in data["slots"]] == ["replica2"]


def test_unknown_database_is_a_usage_error_with_code_3() -> None:
    with pytest.raises(CommandError, match="not a replica alias") as raised:
        call_command("replication_status", "--database", "default", stdout=io.StringIO())
    assert raised.value.returncode == 3


def test_lag_exit_codes_follow_the_threshold_flags() -> None:
    wait_for_replay()
    with replay_paused("replica"):
        write_rows(5)
        code, text = run("--database", "replica")
        assert code == 1, text  # paused replay is a warning
        assert "streaming, paused" in text
        code, text = run("--database", "replica", "--critical-bytes", "1")
        assert code == 2, text
        assert row_of(text, "replica")[1] == "CRITICAL"
        assert "behind > 1 B" in text
        code, text = run("--json", "--database", "replica2", "--critical-bytes", "1")
        assert code == 0  # the other replica is not paused and caught up
    wait_for_replay()


def test_warning_threshold_flag() -> None:
    wait_for_replay()
    with replay_paused("replica2"):
        write_rows(2)
        code, text = run(
            "--json",
            "--database",
            "replica2",
            "--warning-seconds",
            "0",
            "--critical-seconds",
            "3600",
        )
        data = json.loads(text)
        assert data["thresholds"]["warning_seconds"] == 0.0
        assert data["thresholds"]["critical_seconds"] == 3600.0
        assert code == 1
    wait_for_replay()


def test_stopped_replica_exits_2(pgreplica: Any) -> None:
    pgreplica.stop("replica2")
    code, text = run()
    assert code == 2
    cells = row_of(text, "replica2")
    assert cells[1:3] == ["CRITICAL", "down"]
    assert "replica2: unreachable:" in text
    assert "Traceback" not in text


def test_promoted_replica_exits_2(pgreplica: Any) -> None:
    pgreplica.promote("replica")
    code, text = run("--json")
    data = json.loads(text)
    assert code == 2
    promoted = data["replicas"][0]
    assert promoted["status"] == "CRITICAL" and promoted["in_recovery"] is False
    assert promoted["reasons"][0].startswith("promoted")


def test_unreachable_primary_exits_3_with_a_message() -> None:
    with primary_unreachable():
        code, text = run()
        assert code == 3
        assert text.splitlines()[0] == "Replication status: UNKNOWN"
        assert "! primary default unreachable:" in text
        code, text = run("--json")
        assert code == 3
        assert json.loads(text)["primary"]["reachable"] is False


def test_watch_repeats_until_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(replication_status, "pause", fake_sleep)
    code, text = run("--watch", "0.5", "--json")
    assert code == 0
    documents = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert len(documents) == 3 and sleeps == [0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    "args",
    [
        ["--watch", "0"],
        ["--watch", "99999999999999999999"],
        ["--critical-bytes", "lots"],
        ["--warning-seconds", "-1"],
    ],
)
def test_bad_arguments_are_unknown_not_critical(args: list[str]) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("replication_status", *args, stdout=io.StringIO())
    assert raised.value.returncode == 3


def test_parse_size() -> None:
    assert parse_size("104857600") == 104857600
    assert parse_size("100MB") == parse_size("100MiB") == parse_size("100m") == 100 * 1024**2
    assert parse_size("1.5GB") == 1536 * 1024**2


def test_real_command_line_exit_code_and_no_traceback() -> None:
    """From a shell: the exit code is what Nagios reads; stderr carries no traceback."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "DATABASE_HOST": "127.0.0.1",
        "DATABASE_PORT": str(closed_port()),
        "DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
        "DATABASE_REPLICAS": ",".join(
            f"127.0.0.1:{settings.DATABASES[alias]['PORT']}" for alias in ("replica", "replica2")
        ),
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "replication_status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Replication status: UNKNOWN" in done.stdout
    assert "Traceback" not in done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "django", "replication_status", "--watch", "nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 3
    assert "--watch" in bad.stderr


def test_an_unexpected_error_is_unknown_not_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(replication_status, "check_replication", broken)
    with pytest.raises(CommandError, match="boom") as raised:
        call_command("replication_status", stdout=io.StringIO())
    assert raised.value.returncode == 3


def test_lag_after_an_idle_spell_is_how_long_replay_stopped_not_the_quiet_before() -> None:
    # now() - last replayed commit counts the quiet before the pause too; the primary's
    # replay_lag (extrapolated while replay is stuck) does not. A commit of the server's
    # own (autovacuum's ANALYZE of the rows just written) can break the quiet spell: then
    # the scene is played again, since the replica's own figure no longer includes it.
    for _ in range(3):
        wait_for_replay()
        write_rows(1, prefix="before quiet")
        wait_for_replay()
        time.sleep(8)  # nothing commits
        with replay_paused("replica"):
            write_rows(1, prefix="after quiet")
            time.sleep(2)
            code, text = run("--json", "--database", "replica")
            (item,) = json.loads(text)["replicas"]
            own = fetch_one("replica", PROBE_SQL)[3]
        wait_for_replay()
        if own > 6.0:  # the replica's own figure: quiet spell included
            break
    assert own > 6.0, f"something committed during every quiet spell: {own}"
    assert 1.5 < item["lag_seconds"] < 5.0, item
    assert code == 1 and item["status"] == "WARNING", text  # paused, not lagging


def _token_wait_read() -> None:
    """A read that goes to the primary because the replica lacks the client's write."""
    with pgreplica_settings(REPLICAS=["replica"], REPLAY_WAIT_SECONDS=0.005):
        with replay_paused("replica"):
            with scope() as writer:
                write_rows(1, prefix=f"token {time.monotonic()}")
                token = outgoing_token(writer)
            with scope(token):
                assert Product.objects.count() > 0
    wait_for_replay()


def test_routing_counts_show_reads_that_waited_for_a_token() -> None:
    before = stats.snapshot().by_reason().get("token-wait", 0)
    _token_wait_read()
    _, text = run("--json")
    routing = json.loads(text)["routing"]
    assert routing["source"] == "process"
    assert routing["token_wait_reads"] == before + 1
    assert routing["replay_waits"]["by_outcome"]["timeout"] >= 1
    _, text = run()
    assert "this process only" in text and "token-wait:" in text


@pytest.mark.redis
def test_routing_counts_of_every_process_through_the_cache() -> None:
    _token_wait_read()
    caches["shared"].delete_many([fleet.slot_key(i) for i in range(fleet.SLOTS)])
    with pgreplica_settings(CACHE="shared", HEALTH_CHECK_INTERVAL=0.2):
        # The health-sync thread publishes this process's counts on its own.
        Product.objects.using("replica").exists()
        assert Product.objects.count() >= 0
        deadline = time.monotonic() + 10
        while fleet.fleet_counts("shared").processes == 0:
            assert time.monotonic() < deadline, "no process published its routing counts"
            time.sleep(0.1)
        _, text = run("--json")
        routing = json.loads(text)["routing"]
        assert routing["source"] == "fleet" and routing["processes"] >= 1
        assert routing["token_wait_reads"] >= 1
