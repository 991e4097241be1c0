"""The local cluster tool against real PostgreSQL servers (a private cluster, ports 64452+)."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import django_pgreplica.testing.cluster as package
from django_pgreplica.lsn import parse_lsn, record_end_lsn
from django_pgreplica.testing.cluster import Cluster, ClusterError, NodeStatus
from django_pgreplica.testing.cluster.binaries import find_bindir
from tests.clusters import start_private

ROOT = Path(__file__).resolve().parents[3]
FIRST_PORT = 64452  # the first free ports from here (64472+: the plugin tests)


def cli(
    *args: str, env: dict[str, str] | None = None, module: str = "django_pgreplica.testing.cluster"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def by_name(cluster: Cluster) -> dict[str, NodeStatus]:
    return {s.name: s for s in cluster.status()}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # nodes=4: room for the replica a test adds last.
    cluster = start_private("test-cluster-tool", FIRST_PORT, 2, nodes=4, dbname="tooltest")
    yield cluster
    cluster.down()


@pytest.fixture
def table(cluster: Cluster) -> str:
    cluster.execute("primary", "DROP TABLE IF EXISTS items")
    cluster.execute("primary", "CREATE TABLE items (id int PRIMARY KEY, name text)")
    cluster.wait_replayed()
    return "items"


def count(cluster: Cluster, node: str) -> int:
    return int(cluster.execute(node, "SELECT count(*) FROM items")[0][0])


def test_replicas_stream_from_their_slots(cluster: Cluster) -> None:
    assert [s.name for s in cluster.status()] == ["primary", "replica1", "replica2"]
    assert all(s.healthy for s in cluster.status())
    replication = cluster.execute(
        "primary",
        "SELECT application_name, state FROM pg_stat_replication ORDER BY 1",
    )
    assert replication == [("replica1", "streaming"), ("replica2", "streaming")]
    slots = cluster.execute(
        "primary", "SELECT slot_name, slot_type, active FROM pg_replication_slots ORDER BY 1"
    )
    assert slots == [("replica1", "physical", True), ("replica2", "physical", True)]
    base = cluster.port
    assert [n.port for n in cluster.nodes] == [base, base + 1, base + 2]


def test_settings_come_from_pgconf(cluster: Cluster) -> None:
    show = "SELECT current_setting(%s)"
    assert cluster.execute("primary", show, ["wal_level"]) == [("replica",)]
    assert cluster.execute("primary", show, ["default_transaction_read_only"]) == [("off",)]
    assert cluster.execute("replica1", show, ["default_transaction_read_only"]) == [("on",)]
    assert cluster.execute("replica1", show, ["hot_standby_feedback"]) == [("on",)]
    assert cluster.execute("replica1", show, ["listen_addresses"]) == [("127.0.0.1",)]
    assert cluster.execute("primary", "SELECT current_database()") == [("tooltest",)]


def test_replica_refuses_writes(cluster: Cluster, table: str) -> None:
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        cluster.execute("replica1", "INSERT INTO items VALUES (1, 'x')")
    # Even with read-write asked for explicitly: a standby is in recovery.
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="during recovery"):
        cluster.execute(
            "replica1",
            "BEGIN READ WRITE; INSERT INTO items VALUES (1, 'x'); COMMIT",
        )


def test_committed_row_reaches_every_replica(cluster: Cluster, table: str) -> None:
    cluster.execute("primary", "INSERT INTO items VALUES (1, 'lamp')")
    cluster.wait_replayed(timeout=10)
    for node in ("replica1", "replica2"):
        assert cluster.execute(node, "SELECT name FROM items") == [("lamp",)]


def test_pause_and_resume_replay(cluster: Cluster, table: str) -> None:
    cluster.pause_replay("replica1")
    try:
        cluster.execute("primary", "INSERT INTO items VALUES (1, 'lamp')")
        cluster.wait_replayed(names=["replica2"])
        assert count(cluster, "replica2") == 1
        assert count(cluster, "replica1") == 0
        assert by_name(cluster)["replica1"].replay_paused is True
        assert by_name(cluster)["replica1"].streaming is True  # receiving, not applying
        with pytest.raises(ClusterError, match="replica1 has not replayed"):
            cluster.wait_replayed(timeout=0.3, names=["replica1"])
    finally:
        cluster.resume_replay("replica1")
    cluster.wait_replayed()
    assert count(cluster, "replica1") == 1
    assert by_name(cluster)["replica1"].replay_paused is False


def test_kill_and_start_replica(cluster: Cluster) -> None:
    pid = cluster.pid("replica2")
    assert pid is not None
    cluster.kill("replica2")
    assert not by_name(cluster)["replica2"].running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(cluster.node("replica2").conninfo(), connect_timeout=2)
    cluster.start("replica2")  # returns once streaming again
    status = by_name(cluster)["replica2"]
    assert status.healthy and status.pid != pid
    streaming = cluster.execute(
        "primary", "SELECT state FROM pg_stat_replication WHERE application_name = 'replica2'"
    )
    assert streaming == [("streaming",)]


def test_stop_and_start_primary(cluster: Cluster, table: str) -> None:
    cluster.execute("primary", "INSERT INTO items VALUES (1, 'lamp')")
    cluster.wait_replayed()
    cluster.stop("primary")
    try:
        assert not by_name(cluster)["primary"].running
        assert count(cluster, "replica1") == 1  # replicas keep serving reads
    finally:
        cluster.start("primary")
    cluster.wait_streaming(timeout=30)
    assert all(s.healthy for s in cluster.status())


def test_promote_then_rebuild(cluster: Cluster, table: str) -> None:
    cluster.promote("replica2")
    status = by_name(cluster)["replica2"]
    assert status.running and status.in_recovery is False and not status.healthy
    cluster.execute("replica2", "INSERT INTO items VALUES (99, 'split brain')")  # writable

    cluster.rebuild("replica2")
    assert by_name(cluster)["replica2"].healthy
    assert count(cluster, "replica2") == 0  # the promoted node's own write is gone
    cluster.execute("primary", "INSERT INTO items VALUES (1, 'lamp')")
    cluster.wait_replayed()
    assert count(cluster, "replica2") == 1


def test_failed_start_shows_the_log(cluster: Cluster) -> None:
    cluster.stop("replica1")
    conf = cluster.node("replica1").datadir / "postgresql.conf"
    original = conf.read_text()
    conf.write_text(original + "no_such_setting = 1\n")
    try:
        result = cli("start", "replica1", "--dir", str(cluster.dir))
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("pgreplica: error:"))
        first, *log = lines[start:]
        port = cluster.port + 1
        assert first.startswith(f"pgreplica: error: replica1 failed to start on port {port};")
        assert any('unrecognized configuration parameter "no_such_setting"' in x for x in log)
        assert "Traceback" not in result.stderr
    finally:
        conf.write_text(original)
    cluster.start("replica1")
    assert by_name(cluster)["replica1"].healthy


def test_up_repairs_a_broken_cluster(cluster: Cluster) -> None:
    cluster.pause_replay("replica1")
    cluster.promote("replica2")
    cluster.kill("primary")
    cluster.up()  # what the pytest plugin relies on to reuse a cluster a crashed run left
    assert all(s.healthy for s in cluster.status())
    assert by_name(cluster)["replica1"].replay_paused is False


def test_cli_status_env_and_faults(cluster: Cluster) -> None:
    directory = str(cluster.dir)
    result = cli("status", "--dir", directory, "--json")
    assert result.returncode == 0, result.stderr
    assert [node["healthy"] for node in json.loads(result.stdout)] == [True, True, True]

    env = cli("env", "--dir", directory).stdout.splitlines()
    assert env == [
        "export DATABASE_HOST=127.0.0.1",
        f"export DATABASE_PORT={cluster.port}",
        "export DATABASE_NAME=tooltest",
        "export DATABASE_USER=postgres",
        f"export DATABASE_REPLICAS=127.0.0.1:{cluster.port + 1},127.0.0.1:{cluster.port + 2}",
    ]
    assert cluster.env()["DATABASE_REPLICAS"] == env[-1].split("=", 1)[1]

    assert cli("pause-replay", "replica1", "--dir", directory).returncode == 0
    assert by_name(cluster)["replica1"].replay_paused is True
    text = cli("status", "--dir", directory)
    assert "replay paused" in text.stdout
    assert cli("resume-replay", "replica1", "--dir", directory).returncode == 0
    assert by_name(cluster)["replica1"].replay_paused is False

    assert cli("stop", "replica1", "--dir", directory).returncode == 0
    degraded = cli("status", "--dir", directory)
    assert degraded.returncode == 1 and "stopped" in degraded.stdout
    assert cli("start", "replica1", "--dir", directory).returncode == 0
    assert by_name(cluster)["replica1"].healthy

    unknown = cli("kill", "replica7", "--dir", directory)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        "pgreplica: error: no node 'replica7' in this cluster (nodes: primary, replica1, replica2)"
    ]


def test_up_is_idempotent_and_adds_replicas(cluster: Cluster) -> None:
    pids = {s.name: s.pid for s in cluster.status()}
    started = time.monotonic()
    result = cli("up", "--dir", str(cluster.dir))
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 5
    assert {s.name: s.pid for s in cluster.status()} == pids  # reused, not restarted

    with pytest.raises(ClusterError, match=f"uses port {cluster.port}"):
        Cluster(cluster.dir, port=cluster.port + 100)

    bigger = Cluster(cluster.dir, replicas=3)
    bigger.up()
    assert [s.name for s in bigger.status() if s.healthy] == [
        "primary",
        "replica1",
        "replica2",
        "replica3",
    ]
    assert {s.name: s.pid for s in bigger.status()}.items() >= pids.items()
    assert Cluster(cluster.dir).replica_count == 3  # kept in cluster.json
    assert Cluster(cluster.dir, replicas=1).replica_count == 3  # never shrinks


# --- errors -------------------------------------------------------------------------


def test_cli_port_taken_is_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = cli("up", "--dir", str(directory), "--port", str(port), "--replicas", "0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"pgreplica: error: port {port} (primary) is already in use by another process: "
        "stop it or pick another --port"
    ]
    assert not (directory / "primary").exists()  # checked before building anything
    assert cli("down", "--dir", str(directory)).returncode == 0
    assert not directory.exists()


def test_cli_missing_binaries_is_one_line(tmp_path: Path) -> None:
    result = cli(
        "up",
        "--dir",
        str(tmp_path / "cluster"),
        env={"PGREPLICA_PG_BINDIR": str(tmp_path / "nowhere"), "PATH": str(tmp_path)},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgreplica: error: no PostgreSQL server")
    assert "apt-get install postgresql" in lines[0]
    assert not (tmp_path / "cluster").exists()


def test_find_bindir_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGREPLICA_PG_BINDIR", raising=False)
    with pytest.raises(ClusterError, match="apt-get install postgresql"):
        find_bindir(search_path=str(tmp_path), globs=())
    for version in ("9.6", "16", "13"):
        bindir = tmp_path / "lib" / version / "bin"
        bindir.mkdir(parents=True)
        for name in ("initdb", "pg_ctl", "postgres", "pg_basebackup"):
            (bindir / name).touch(mode=0o755)
    found = find_bindir(search_path=str(tmp_path), globs=[str(tmp_path / "lib/*/bin")])
    assert found == tmp_path / "lib" / "16" / "bin"  # highest version
    monkeypatch.setenv("PATH", str(tmp_path / "lib" / "13" / "bin"))
    assert find_bindir(globs=[str(tmp_path / "lib/*/bin")]) == tmp_path / "lib" / "13" / "bin"


def test_cli_without_cluster(tmp_path: Path) -> None:
    result = cli("status", "--dir", str(tmp_path / "none"))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"pgreplica: error: no cluster in {tmp_path / 'none'} (run `up` first)"
    )
    assert cli("down", "--dir", str(tmp_path / "none")).returncode == 0


def test_down_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ClusterError, match="not deleting"):
        Cluster(tmp_path).down()
    with pytest.raises(ClusterError, match="refusing"):
        Cluster(tmp_path, port=FIRST_PORT).up()
    assert (tmp_path / "precious.txt").exists()


# --- pure helpers -------------------------------------------------------------------


def test_record_end_lsn_steps_back_over_page_headers() -> None:
    page = 8192
    assert record_end_lsn(parse_lsn("0/3000128")) == parse_lsn("0/3000128")
    assert record_end_lsn(5 * page + 24) == 5 * page  # short page header
    assert record_end_lsn((16 << 20) * 3 + 40) == (16 << 20) * 3  # long header (segment start)
    assert record_end_lsn(5 * page + 40) == 5 * page + 40  # a record can end there
    assert parse_lsn("16/B374D848") == 0x16B374D848


def test_long_directories_get_a_short_socket_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    assert len(str(Cluster(deep).socket_dir)) < 60
    assert Cluster(tmp_path / "c").socket_dir == tmp_path / "c" / "run"


# --- the package --------------------------------------------------------------------


def test_package_exports_what_importers_use() -> None:
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    assert package.PGCONF_DIR == ROOT / "django_pgreplica" / "pgconf"
    assert (package.PGCONF_DIR / "primary.conf").is_file()
    assert package.main.__module__ == "django_pgreplica.testing.cluster.cli"


def _imports_within(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, read from the source (not run)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / package.replace(".", "/")).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        here = name.split(".") if parts[-1] == "__init__" else name.split(".")[:-1]
        imported: list[str] = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
                module = ".".join(filter(None, [base, node.module or ""]))
                imported += [module, *(f"{module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                imported += [alias.name for alias in node.names]
        graph[name] = {m for m in imported if m.startswith(package) and m != name}
    return graph


def test_no_import_cycles_in_the_testing_package() -> None:
    graph = _imports_within("django_pgreplica.testing")
    assert "django_pgreplica.testing.cluster.status" in graph
    edges = {module: deps & graph.keys() for module, deps in graph.items()}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module not in done:
            for dependency in edges[module]:
                visit(dependency, (*path, module))
            done.add(module)

    for module in edges:
        visit(module, ())


def test_alias_module_runs_the_same_command_line() -> None:
    alias = cli("--help", module="django_pgreplica.cluster")
    assert alias.returncode == 0, alias.stderr
    assert alias.stdout == cli("--help").stdout
    assert "pause-replay" in alias.stdout
