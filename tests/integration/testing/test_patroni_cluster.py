"""The Patroni dev cluster against real etcd, Patroni and PostgreSQL (ports 65130+).

One session cluster (three members, synchronous mode) from the patroni_plugin fixture;
each test that breaks it is healed afterwards. About a minute in all, most of it the hung
leader's ttl.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from django_pgreplica.testing.cluster import ClusterError, PatroniCluster
from django_pgreplica.testing.cluster.patroni_setup import PatroniLayout, pgconf_parameters

pytestmark = pytest.mark.patroni

ROOT = Path(__file__).resolve().parents[3]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django_pgreplica.testing.cluster", "patroni", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.fixture
def patroni(pgreplica_patroni_healthy: PatroniCluster) -> PatroniCluster:
    return pgreplica_patroni_healthy


@pytest.fixture
def table(patroni: PatroniCluster) -> Iterator[str]:
    leader = patroni.leader()
    patroni.execute(leader, "DROP TABLE IF EXISTS items")
    patroni.execute(leader, "CREATE TABLE items (id int PRIMARY KEY)")
    yield "items"


def ids(patroni: PatroniCluster, member: str) -> set[int]:
    return {row[0] for row in patroni.execute(member, "SELECT id FROM items")}


# -- no cluster needed ---------------------------------------------------------------


def test_ports_derive_from_one_base() -> None:
    layout = PatroniLayout(65200, 3)
    assert [layout.pg_port(n) for n in layout.names] == [65200, 65201, 65202]
    assert [layout.api_port(n) for n in layout.names] == [65210, 65211, 65212]
    assert (layout.etcd_client_port, layout.etcd_peer_port) == (65220, 65221)
    assert len(set(layout.ports)) == len(layout.ports) == 8
    with pytest.raises(ClusterError, match="1 to 9 members"):
        PatroniLayout(65200, 0)


def test_members_run_pgconf_without_the_standby_only_read_only_default() -> None:
    settings = pgconf_parameters()
    assert settings["wal_keep_size"] == "64MB"  # primary.conf, through replica.conf's include
    assert settings["wal_receiver_status_interval"] == "1s"  # replica.conf
    assert settings["log_line_prefix"] == "%m [%p] %q%a@%d "  # quoted value
    assert "default_transaction_read_only" not in settings


def test_errors_are_one_line_and_say_what_to_install(tmp_path: Path) -> None:
    missing = cli("status", "--dir", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"pgreplica: error: no Patroni cluster in {tmp_path / 'none'} (run `patroni up` first)"
    ]
    no_etcd = cli("up", "--dir", str(tmp_path / "c"), env={"PGREPLICA_ETCD": "/nonexistent"})
    assert no_etcd.returncode == 1
    assert len(no_etcd.stderr.strip().splitlines()) == 1
    assert "apt-get install etcd-server" in no_etcd.stderr
    no_patroni = cli("up", "--dir", str(tmp_path / "c"), env={"PGREPLICA_PATRONI": "/nonexistent"})
    assert no_patroni.returncode == 1
    assert len(no_patroni.stderr.strip().splitlines()) == 1
    assert "patroni[etcd3,psycopg3]" in no_patroni.stderr
    assert not (tmp_path / "c").exists()  # failed before touching the disk


# -- against the cluster -------------------------------------------------------------


def test_up_elects_one_leader_that_takes_writes_and_replicas_stream(
    patroni: PatroniCluster, table: str
) -> None:
    status = patroni.wait_until_healthy()
    leader = status.leader
    assert leader is not None
    assert [m.name for m in status.members if m.is_leader] == [leader]
    assert [m.state for m in status.replicas] == ["streaming"] * (len(patroni.names) - 1)
    assert [m.role for m in status.replicas].count("sync_standby") == 1
    replication = patroni.execute(
        leader, "SELECT application_name, state, sync_state FROM pg_stat_replication"
    )
    assert sorted(replication) == sorted(
        (m.name, "streaming", "sync" if m.role == "sync_standby" else "async")
        for m in status.replicas
    )
    # The members run pgconf/'s settings, and the leader is writable.
    assert patroni.execute(leader, "SHOW wal_keep_size") == [("64MB",)]
    assert patroni.execute(leader, "SHOW default_transaction_read_only") == [("off",)]
    patroni.execute(leader, "INSERT INTO items VALUES (1), (2)")
    patroni.wait_replayed()
    for replica in status.replicas:
        assert ids(patroni, replica.name) == {1, 2}
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            patroni.execute(replica.name, "INSERT INTO items VALUES (3)")


def test_status_and_env_commands(patroni: PatroniCluster) -> None:
    leader = patroni.leader()
    status = cli("status", "--dir", str(patroni.dir))
    assert status.returncode == 0, status.stderr
    assert status.stdout.rstrip().endswith("healthy")
    assert f"leader: {leader}" in status.stdout
    as_json = json.loads(cli("status", "--dir", str(patroni.dir), "--json").stdout)
    assert as_json["healthy"] is True
    assert as_json["leader"] == leader
    env = cli("env", "--dir", str(patroni.dir))
    assert env.returncode == 0, env.stderr
    exported = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in env.stdout.splitlines()
    )
    assert exported["DATABASE_PORT"] == str(patroni.layout.pg_port(leader))
    assert exported["DATABASE_HOSTS"] == ",".join(["127.0.0.1"] * len(patroni.names))
    ports = exported["DATABASE_PORTS"].split(",")
    assert ports == [str(patroni.layout.pg_port(n)) for n in patroni.names]
    base = (
        f"host={exported['DATABASE_HOSTS']} port={exported['DATABASE_PORTS']} "
        f"dbname={exported['DATABASE_NAME']} user={exported['DATABASE_USER']} connect_timeout=3"
    )
    # libpq picks the leader out of the list, whichever member it is.
    with psycopg.connect(base + " target_session_attrs=read-write") as conn:
        assert conn.info.port == patroni.layout.pg_port(leader)
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    with psycopg.connect(base + " target_session_attrs=standby") as conn:
        assert conn.info.port != patroni.layout.pg_port(leader)
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_switchover_moves_the_leader_and_the_old_one_rejoins(
    patroni: PatroniCluster, table: str
) -> None:
    before = patroni.wait_until_healthy()
    old = before.leader
    assert old is not None
    async_replica = next(m.name for m in before.replicas if m.role == "replica")
    with pytest.raises(ClusterError, match="sync_standby"):
        patroni.switchover(async_replica)  # synchronous mode: only to the sync standby
    started = time.monotonic()
    new = patroni.switchover()
    took = time.monotonic() - started
    assert new != old
    patroni.execute(new, "INSERT INTO items VALUES (10)")  # switchover waited for writes
    after = patroni.wait_until_healthy(timeout=60)
    assert after.leader == new
    old_member = after.member(old)
    assert old_member.role in ("replica", "sync_standby")
    assert old_member.state == "streaming"
    timeline = before.member(old).timeline
    assert timeline is not None
    assert old_member.timeline == after.member(new).timeline == timeline + 1
    patroni.wait_replayed()
    assert ids(patroni, old) == {10}
    assert took < 30


def test_kill_leader_fails_over_without_losing_an_acknowledged_write(
    patroni: PatroniCluster, table: str
) -> None:
    env = patroni.env()
    conninfo = (
        f"host={env['DATABASE_HOSTS']} port={env['DATABASE_PORTS']} dbname={patroni.dbname} "
        "user=postgres connect_timeout=2 target_session_attrs=read-write"
    )
    acked: list[int] = []
    stop = threading.Event()

    def write() -> None:
        """Insert ids one by one through the multi-host DSN, reconnecting after errors."""
        conn: psycopg.Connection[tuple[int]] | None = None
        next_id = 0
        while not stop.is_set():
            next_id += 1
            try:
                if conn is None:
                    conn = psycopg.connect(conninfo, autocommit=True)
                conn.execute("INSERT INTO items VALUES (%s)", [next_id])
                acked.append(next_id)  # committed, and flushed by the sync standby
            except psycopg.Error:
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def wait_acked(count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(acked) < count:
            assert time.monotonic() < deadline, f"only {len(acked)} writes acknowledged"
            time.sleep(0.02)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_acked(20, timeout=10)
        killed = patroni.kill_leader()
        before_kill = len(acked)
        new = patroni.wait_for_leader(timeout=30, exclude=[killed.name])
        failover = time.monotonic() - killed.sent_at
        wait_acked(before_kill + 20, timeout=15)  # writes resume through the same DSN
    finally:
        stop.set()
        writer.join(timeout=10)
    assert new != killed.name
    assert failover < 30
    lost = sorted(set(acked) - ids(patroni, new))
    assert not lost, f"acknowledged writes missing on the new leader {new}: {lost}"
    after = patroni.wait_until_healthy(timeout=60)
    assert after.member(killed.name).state == "streaming"  # the old leader rejoined


def test_a_hung_leader_fails_over_and_rejoins_after_resume(patroni: PatroniCluster) -> None:
    old = patroni.leader()
    patroni.hang(old)
    started = time.monotonic()
    status = patroni.status()
    assert status.member(old).hung
    assert not status.healthy
    report = cli("status", "--dir", str(patroni.dir))
    assert report.returncode == 1
    assert f"{old} is hung" in report.stdout
    # Nothing renews the leader lock: it expires after ttl (20 s) and a replica takes over.
    new = patroni.wait_for_leader(timeout=45, exclude=[old])
    assert time.monotonic() - started < 45
    patroni.resume(old)
    after = patroni.wait_until_healthy(timeout=60)
    assert after.leader == new
    assert after.member(old).role in ("replica", "sync_standby")
    assert after.member(old).timeline == after.member(new).timeline
