"""The operations kit (compose.yaml, docker/, ops/) is consistent with the code it runs.

No Docker engine is needed (none runs here): these tests read the files, check-jsonschema
validates compose.yaml against the Compose Specification's schema, and promtool checks the
Prometheus configuration.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from django_pgreplica.testing import cluster

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
SETTINGS = ROOT / "testproject" / "settings.py"
GUNICORN_CONF = ROOT / "docker" / "gunicorn.conf.py"
POSTGRES_SERVICES = ("primary", "replica1", "replica2")
REPLICAS = ("replica1", "replica2")
APP_SERVICES = ("migrate", "web", "worker", "beat")
PGCONF_MOUNT = "/etc/postgresql/pgreplica"


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = load_compose()["services"]
    return result


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of each bind mount; named volumes are left out."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type") != "bind":
                continue
            source, target = entry["source"], entry["target"]
        else:
            source, target = entry.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((ROOT / source).resolve(), target))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The host file behind ``container_path``, through the service's bind mounts."""
    wanted = PurePosixPath(container_path)
    for source, target in bind_mounts(service):
        mount = PurePosixPath(target)
        if wanted == mount or mount in wanted.parents:
            return source.joinpath(*wanted.relative_to(mount).parts)
    return None


def command_settings(service: dict[str, Any]) -> dict[str, str]:
    """The ``-c name=value`` options of a postgres command."""
    command = service["command"]
    assert isinstance(command, list), "postgres commands are lists, not shell strings"
    found = {}
    for flag, option in itertools.pairwise(command):
        if flag == "-c":
            name, _, value = option.partition("=")
            found[name] = value
    return found


def env_names_read_by_settings() -> set[str]:
    """Every environment variable testproject/settings.py reads."""
    tree = ast.parse(SETTINGS.read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        func = ast.unparse(node.func)
        if func in ("os.environ.get", "os.getenv", "env_bool"):
            names.add(first.value)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            names.add(str(node.slice.value))
    return names


def test_compose_parses_with_the_expected_services() -> None:
    found = set(services())
    expected = {
        *POSTGRES_SERVICES,
        "redis",
        *APP_SERVICES,
        "postgres-exporter",
        "prometheus",
        "grafana",
    }
    assert expected <= found, f"missing: {sorted(expected - found)}"


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against the Compose Specification's schema, which it ships (no
    download): the schema `docker compose` itself validates with."""
    assert importlib.util.find_spec("check_jsonschema"), (
        "check-jsonschema is missing: pip install -e '.[dev]' (scripts/test does)"
    )
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_compose_file_follows_the_compose_specification() -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def _misspell_a_service_key(data: dict[str, Any]) -> None:
    data["services"]["web"]["enviroment"] = data["services"]["web"].pop("environment")


def _unknown_depends_on_condition(data: dict[str, Any]) -> None:
    data["services"]["replica1"]["depends_on"]["primary"]["condition"] = "service_ready"


def _volumes_as_a_list(data: dict[str, Any]) -> None:
    data["volumes"] = list(data["volumes"])


@pytest.mark.parametrize(
    ("breakage", "where"),
    [
        (_misspell_a_service_key, "$.services.web"),
        (_unknown_depends_on_condition, "$.services.replica1.depends_on.primary.condition"),
        (_volumes_as_a_list, "$.volumes"),
    ],
)
def test_the_schema_check_rejects_a_broken_compose_file(
    tmp_path: Path, breakage: Callable[[dict[str, Any]], None], where: str
) -> None:
    """So the test above can fail: each mistake is caught, and reported where it is."""
    data = load_compose()
    intact = tmp_path / "intact.yaml"
    intact.write_text(yaml.safe_dump(data))
    assert check_compose_schema(intact).returncode == 0  # the round trip alone breaks nothing
    breakage(data)
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(data))
    result = check_compose_schema(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{where}:" in result.stdout, result.stdout


def test_every_bind_mount_exists() -> None:
    for name, service in services().items():
        for source, target in bind_mounts(service):
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_app_image_builds_from_existing_files() -> None:
    for name in APP_SERVICES:
        build = services()[name]["build"]
        context = (ROOT / build["context"]).resolve()
        assert context == ROOT, name
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), name
    text = (ROOT / "docker" / "Dockerfile").read_text()
    for line in re.findall(r"^COPY\s+(.+)$", text, re.MULTILINE):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert re.search(r'pip install "?\.\[prometheus,celery\]"?', text)
    assert "gunicorn" in text


def test_app_environment_is_what_settings_read() -> None:
    readable = env_names_read_by_settings()
    required = {
        "DATABASE_HOST",
        "DATABASE_PORT",
        "DATABASE_NAME",
        "DATABASE_USER",
        "DATABASE_PASSWORD",
        "DATABASE_REPLICAS",
        "REDIS_URL",
        "DJANGO_DEBUG",
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
    }
    assert required <= readable, "testproject/settings.py no longer reads these"
    all_services = services()
    for name in APP_SERVICES:
        env = all_services[name]["environment"]
        assert isinstance(env, dict), name
        assert set(env) <= readable, f"{name}: settings.py never reads {set(env) - readable}"
        assert required <= set(env), f"{name}: missing {required - set(env)}"
        host = env["DATABASE_HOST"]
        assert host == "primary"
        replicas = [item.rpartition(":")[0] for item in env["DATABASE_REPLICAS"].split(",")]
        assert replicas == list(REPLICAS), name
        redis_host = re.match(r"redis://([^:/]+)", env["REDIS_URL"])
        assert redis_host and redis_host.group(1) in all_services, name


def test_postgres_runs_the_cluster_tools_config_files() -> None:
    """The containers read django_pgreplica/pgconf itself, like the cluster tool: the
    primary with primary.conf, replicas with replica.conf, both with its pg_hba.conf."""
    for name in POSTGRES_SERVICES:
        service = services()[name]
        assert str(service["image"]).startswith("postgres:15"), name
        mounted = host_path(service, PGCONF_MOUNT)
        assert mounted == cluster.PGCONF_DIR.resolve(), f"{name} mounts {mounted}"
        options = command_settings(service)
        role = "primary" if name == "primary" else "replica"
        config_file = host_path(service, options["config_file"])
        hba_file = host_path(service, options["hba_file"])
        assert config_file == cluster.PGCONF_DIR.resolve() / f"{role}.conf", name
        assert hba_file == cluster.PGCONF_DIR.resolve() / "pg_hba.conf", name
        assert config_file.is_file() and hba_file.is_file()
        assert options["listen_addresses"] == "*", name
        assert options["cluster_name"] == name, name
        healthcheck = " ".join(service["healthcheck"]["test"])
        assert "pg_isready" in healthcheck, name
    # Containers reach each other over the compose network, not 127.0.0.1.
    hba = (cluster.PGCONF_DIR / "pg_hba.conf").read_text()
    for database in ("all", "replication"):
        assert re.search(rf"^host\s+{database}\s+\S+\s+samenet\s", hba, re.MULTILINE), database


def test_replicas_clone_with_their_own_slot() -> None:
    slots = []
    for name in REPLICAS:
        service = services()[name]
        entrypoint = service["entrypoint"]
        script = host_path(service, entrypoint[-1])
        assert script is not None and script.is_file(), name
        text = script.read_text()
        assert "pg_basebackup" in text
        for flag in ("-R", "-C", '-S "$REPLICATION_SLOT"', "-X stream"):
            assert flag in text, flag
        assert "exec docker-entrypoint.sh" in text
        env = service["environment"]
        assert env["PRIMARY_HOST"] in services()
        slots.append(env["REPLICATION_SLOT"])
        depends = service["depends_on"]
        assert depends["primary"]["condition"] == "service_healthy"
    assert len(set(slots)) == len(slots), "two replicas share a slot"


@pytest.mark.parametrize(
    "script", ["docker/postgres/replica-entrypoint.sh", "docker/postgres/initdb/10-roles.sh"]
)
def test_shell_scripts_parse(script: str) -> None:
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the container scripts"
    subprocess.run([bash, "-n", str(ROOT / script)], check=True)


def test_depends_on_names_services_that_can_satisfy_the_condition() -> None:
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        for dep, spec in depends.items():
            assert dep in all_services, f"{name} depends on unknown service {dep}"
            assert dep != name, f"{name} depends on itself"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in all_services[dep], f"{dep} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert all_services[dep].get("restart", "no") == "no", dep
            else:
                assert condition == "service_started", condition

    # no cycles
    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        for dep in all_services[name].get("depends_on", {}):
            visit(dep, (*path, name))

    for name in all_services:
        visit(name, ())


def test_web_runs_gunicorn_with_several_workers() -> None:
    command = services()["web"]["command"]
    assert command[0] == "gunicorn"
    workers = int(command[command.index("--workers") + 1])
    assert workers >= 2
    # The image keeps repository paths under its WORKDIR (docker/Dockerfile).
    assert (ROOT / command[command.index("--config") + 1]).is_file()
    assert "testproject.wsgi" in command


def prometheus_service() -> dict[str, Any]:
    return services()["prometheus"]


def load_prometheus() -> tuple[dict[str, Any], PurePosixPath]:
    """prometheus.yml as mounted, and its directory in the container."""
    service = prometheus_service()
    config_arg = next(a for a in service["command"] if a.startswith("--config.file="))
    container_path = PurePosixPath(config_arg.split("=", 1)[1])
    path = host_path(service, str(container_path))
    assert path == ROOT / "ops" / "prometheus" / "prometheus.yml"
    return yaml.safe_load(path.read_text()), container_path.parent


def test_prometheus_loads_the_mounted_alert_rules() -> None:
    config, config_dir = load_prometheus()
    rule_files = config["rule_files"]
    assert rule_files
    for rule_file in rule_files:
        container_path = config_dir / rule_file  # relative paths: to the config file
        source = host_path(prometheus_service(), str(container_path))
        assert source == ROOT / "ops" / "prometheus" / "alerts.yml"
        assert source.is_file(), f"{source} is referenced but missing"
        assert yaml.safe_load(source.read_text())["groups"]


def test_prometheus_scrapes_every_gunicorn_worker_and_the_exporter() -> None:
    config, _ = load_prometheus()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    all_services = services()
    for job in jobs.values():
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host = target.rpartition(":")[0]
                assert host == "localhost" or host in all_services, target
    django_targets = [t for s in jobs["django"]["static_configs"] for t in s["targets"]]
    assert jobs["django"].get("metrics_path", "/metrics") == "/metrics"
    ports = sorted(int(t.rpartition(":")[2]) for t in django_targets)
    namespace: dict[str, Any] = {}
    exec(compile(GUNICORN_CONF.read_text(), str(GUNICORN_CONF), "exec"), namespace)
    command = all_services["web"]["command"]
    workers = int(command[command.index("--workers") + 1])
    assert ports == list(namespace["METRICS_PORTS"])[:workers]
    exporter = jobs["postgres-exporter"]["static_configs"][0]["targets"]
    assert exporter == ["postgres-exporter:9187"]
    image = all_services["postgres-exporter"]["image"]
    assert image.startswith("quay.io/prometheuscommunity/postgres-exporter:")


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (scripts/test does)"
    result = subprocess.run(
        [promtool, "check", "config", str(ROOT / "ops" / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    grafana = services()["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "ops" / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    url_host = re.match(r"http://([^:/]+):9090", source["url"])
    assert url_host and url_host.group(1) == "prometheus"
    providers = yaml.safe_load((provisioning / "dashboards" / "pgreplica.yml").read_text())
    (provider,) = providers["providers"]
    folder = host_path(grafana, provider["options"]["path"])
    assert folder == ROOT / "ops" / "grafana" / "dashboards"
    assert (folder / "pgreplica.json").is_file()
