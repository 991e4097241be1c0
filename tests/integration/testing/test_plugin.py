"""The pytest plugin, run in inner pytest sessions against a private cluster (ports 64472+).

Each inner session uses a minimal settings module whose aliases point nowhere: only the
plugin can make its tests pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_pgreplica.testing import aliases, plugin
from django_pgreplica.testing.cluster import Cluster, free_base_port
from tests.clusters import start_private

FIRST_PORT = 64472  # the first free ports from here: other clusters share this machine

SETTINGS = """
SECRET_KEY = "inner"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes"]
NOWHERE = {"ENGINE": "django.db.backends.postgresql", "HOST": "nowhere.invalid", "NAME": "x"}
DATABASES = {"default": dict(NOWHERE), "replica": dict(NOWHERE), "replica2": dict(NOWHERE)}
PGREPLICA = {"PRIMARY": "default", "REPLICAS": ["replica", "replica2"]}
"""

TESTS = """
import pytest
from django.db import connections

from django_pgreplica.testing.plugin import replay_paused, wait_for_replay

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def execute(alias, sql):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone() if cursor.description else None


def count(alias):
    return execute(alias, "SELECT count(*) FROM plugin_items")[0]


def test_aliases_point_at_the_cluster(pgreplica_cluster):
    ports = [connections[a].settings_dict["PORT"] for a in ("default", "replica", "replica2")]
    assert ports == [str(node.port) for node in pgreplica_cluster.nodes]
    replica = connections["replica"].settings_dict
    assert replica["TEST"]["MIRROR"] == "default"
    assert replica["OPTIONS"]["connect_timeout"] == 2
    test_db = connections["default"].settings_dict["NAME"]
    assert test_db.startswith("test_")
    assert execute("replica", "SELECT pg_is_in_recovery(), current_database()") == (True, test_db)


def test_wait_for_replay_and_replay_paused():
    execute("default", "CREATE TABLE plugin_items (id int)")
    execute("default", "INSERT INTO plugin_items VALUES (1)")
    wait_for_replay()
    assert count("replica") == count("replica2") == 1
    with replay_paused("replica"):
        execute("default", "INSERT INTO plugin_items VALUES (2)")
        wait_for_replay(["replica2"])
        assert (count("replica"), count("replica2")) == (1, 2)
        with pytest.raises(TimeoutError, match="replica alias 'replica' has not replayed"):
            wait_for_replay(["replica"], timeout=0.3)
    wait_for_replay()
    assert count("replica") == 2


def test_pgreplica_fixture_faults(pgreplica):
    assert pgreplica.node_name("replica") == "replica1"
    assert pgreplica.node_name("replica2") == "replica2"
    assert pgreplica.node_name("default") == "primary"
    pgreplica.kill("replica")
    pgreplica.promote("replica2")
    assert not pgreplica.cluster.is_running("replica1")


def test_faults_were_healed(pgreplica_cluster):
    assert all(status.healthy for status in pgreplica_cluster.status())
    assert execute("replica", "SELECT pg_is_in_recovery()") == (True,)
"""


def run_inner(
    tmp_path: Path, plugins: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "inner_settings.py").write_text(SETTINGS)
    (tmp_path / "test_inner.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PGREPLICA_", "DATABASE"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, "-q", "-rA", "test_inner.py"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={
            **clean,
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "DJANGO_SETTINGS_MODULE": "inner_settings",
            "PYTHONPATH": str(tmp_path),
            **env,
        },
    )


@pytest.fixture(scope="module")
def plugin_cluster() -> Iterator[Cluster]:
    """Made here so the inner sessions reuse it (the KEEP=0 test covers a fresh start)."""
    cluster = start_private("test-plugin", FIRST_PORT, 2, nodes=3)
    yield cluster
    cluster.down()


@pytest.mark.parametrize(
    "plugins",
    [
        pytest.param(
            ["-p", "pytest_django.plugin", "-p", "django_pgreplica.testing.plugin"], id="override"
        ),
        # Registered first, the plugin's fixture loses to pytest-django's: the hook covers it.
        pytest.param(
            ["-p", "django_pgreplica.testing.plugin", "-p", "pytest_django.plugin"], id="hook"
        ),
    ],
)
def test_plugin_runs_tests_against_the_cluster(
    tmp_path: Path, plugins: list[str], plugin_cluster: Cluster
) -> None:
    pids = [status.pid for status in plugin_cluster.status()]
    env = {
        "PGREPLICA_CLUSTER_DIR": str(plugin_cluster.dir),
        "PGREPLICA_CLUSTER_PORT": str(plugin_cluster.port),
    }
    result = run_inner(tmp_path, plugins, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    assert plugin_cluster.status()[0].pid == pids[0]  # reused and kept running
    assert all(status.healthy for status in plugin_cluster.status())


def test_default_dir_and_keep_zero(tmp_path: Path) -> None:
    result = run_inner(
        tmp_path,
        ["-p", "pytest_django.plugin", "-p", "django_pgreplica.testing.plugin", "-k", "point"],
        {
            "PGREPLICA_CLUSTER_PORT": str(free_base_port(FIRST_PORT, 3)),
            "PGREPLICA_CLUSTER_KEEP": "0",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / ".pgreplica" / "test" / "cluster.json").exists()


def test_missing_server_fails_with_install_hint(tmp_path: Path) -> None:
    result = run_inner(
        tmp_path,
        ["-p", "pytest_django.plugin", "-p", "django_pgreplica.testing.plugin"],
        {"PGREPLICA_PG_BINDIR": str(tmp_path / "nowhere"), "PGREPLICA_CLUSTER_PORT": "1"},
    )
    assert result.returncode == 1
    assert "SKIPPED" not in result.stdout
    assert "django_pgreplica test cluster: no PostgreSQL server binaries" in result.stdout
    assert "apt-get install postgresql" in result.stdout


def test_plugin_module_keeps_its_names() -> None:
    for name in [*plugin.__all__, "REPLICA_CONNECT_TIMEOUT"]:
        assert getattr(plugin, name) is not None, name
    # Defined next to the other alias helpers, still imported from the plugin by tests.
    assert plugin.wait_for_replay is aliases.wait_for_replay
    assert plugin.replay_paused is aliases.replay_paused
