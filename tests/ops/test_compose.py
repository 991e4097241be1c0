"""The operations kit (compose.yaml, docker/, ops/) is consistent with the code it runs.

No Docker engine is needed (none runs here): these tests read the files, check-jsonschema
validates compose.yaml against the Compose Specification's schema, and promtool checks the
Prometheus configuration. That the PostgreSQL files compose mounts work is proven on a
real cluster by tests/integration/secure/ (``cluster up --secure`` runs the same files).
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import posixpath
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
ENV_EXAMPLE = ROOT / ".env.example"
SETTINGS = ROOT / "testproject" / "settings.py"
GUNICORN_CONF = ROOT / "docker" / "gunicorn.conf.py"
POSTGRES_SERVICES = ("primary", "replica1", "replica2")
REPLICAS = ("replica1", "replica2")
APP_SERVICES = ("migrate", "web", "worker", "beat")
SECURE = cluster.SECURE_PGCONF_DIR.resolve()
# Variables Django itself reads (createsuperuser --noinput), not testproject/settings.py.
DJANGO_OWN_ENV = {
    "DJANGO_SUPERUSER_USERNAME",
    "DJANGO_SUPERUSER_PASSWORD",
    "DJANGO_SUPERUSER_EMAIL",
}


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
    """The host file behind ``container_path``, through the service's bind mounts (the
    deepest mount wins, as in a container)."""
    wanted = PurePosixPath(container_path)
    found: tuple[int, Path] | None = None
    for source, target in bind_mounts(service):
        mount = PurePosixPath(target)
        if (wanted == mount or mount in wanted.parents) and (
            found is None or len(mount.parts) > found[0]
        ):
            found = (len(mount.parts), source.joinpath(*wanted.relative_to(mount).parts))
    return found[1] if found else None


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> named volume, for the service's named-volume mounts."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        if not source.startswith((".", "/")):
            mounts[target] = source
    return mounts


def volume_at(service: dict[str, Any], container_path: str) -> str | None:
    """The named volume that holds ``container_path`` in the service, if one does."""
    wanted = PurePosixPath(container_path)
    for target, volume in volume_mounts(service).items():
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            return volume
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
        unread = set(env) - readable - DJANGO_OWN_ENV
        assert not unread, f"{name}: settings.py never reads {unread}"
        assert required <= set(env), f"{name}: missing {required - set(env)}"
        host = env["DATABASE_HOST"]
        assert host == "primary"
        replicas = [item.rpartition(":")[0] for item in env["DATABASE_REPLICAS"].split(",")]
        assert replicas == list(REPLICAS), name
        redis_host = re.match(r"redis://([^:/]+)", env["REDIS_URL"])
        assert redis_host and redis_host.group(1) in all_services, name


def included_files(service: dict[str, Any], container_path: str) -> list[Path]:
    """A PostgreSQL config file as mounted and every file its ``include`` lines pull in
    (relative to the including file, as PostgreSQL resolves them), as host paths."""
    source = host_path(service, container_path)
    assert source is not None and source.is_file(), f"{container_path} is not mounted"
    found = [source]
    for target in re.findall(r"^include\s+'([^']+)'", source.read_text(), re.MULTILINE):
        # PostgreSQL resolves "../x" against the including file's directory, as normpath does.
        found += included_files(service, posixpath.normpath(posixpath.join(
            posixpath.dirname(container_path), target)))  # fmt: skip
    return found


def test_postgres_runs_the_secure_config_files_and_the_settings_they_share() -> None:
    """The containers read django_pgreplica/pgconf/secure itself, as `cluster up --secure`
    does: secure/<role>.conf (TLS, SCRAM) including the dev <role>.conf for everything
    else, mounted beside it, and secure/pg_hba.conf, never the dev (trust) one."""
    pgconf = cluster.PGCONF_DIR.resolve()
    for name in POSTGRES_SERVICES:
        service = services()[name]
        assert str(service["image"]).startswith("postgres:15"), name
        options = command_settings(service)
        role = "primary" if name == "primary" else "replica"
        files = included_files(service, options["config_file"])
        assert files[0] == SECURE / f"{role}.conf", name
        assert SECURE / "security.conf" in files, name
        shared = {pgconf / "primary.conf"} | (
            {pgconf / "replica.conf"} if role == "replica" else set()
        )
        assert shared <= set(files), f"{name} does not reach the shared settings: {files}"
        assert host_path(service, options["hba_file"]) == SECURE / "pg_hba.conf", name
        assert host_path(service, "/etc/postgresql/pgreplica/pg_hba.conf") is None, name
        assert options["listen_addresses"] == "*", name
        assert options["cluster_name"] == name, name
        healthcheck = " ".join(service["healthcheck"]["test"])
        assert "pg_isready" in healthcheck, name
    # Containers reach each other over the compose network, not 127.0.0.1.
    hba = (SECURE / "pg_hba.conf").read_text()
    for database in ("all", "replication"):
        assert re.search(rf"^hostssl\s+{database}\s+\S+\s+samenet\s+scram-sha-256", hba, re.M), (
            database
        )


def server_tls_dir(service: dict[str, Any]) -> str:
    """The directory security.conf names for the certificate files (one for all three)."""
    (conf,) = (f for f in included_files(service, command_settings(service)["config_file"])
               if f.name == "security.conf")  # fmt: skip
    paths = dict(re.findall(r"^(ssl_\w+_file)\s*=\s*'([^']+)'", conf.read_text(), re.M))
    assert set(paths) == {"ssl_cert_file", "ssl_key_file", "ssl_ca_file"}, paths
    (folder,) = {str(PurePosixPath(path).parent) for path in paths.values()}
    return folder


def test_each_server_gets_its_own_certificate_from_the_certs_step() -> None:
    """The one-shot certs service writes each server's TLS volume under the server's service
    name (the host name clients verify), each server mounts only its own volume where
    security.conf looks, and starts only after the certificates exist."""
    all_services = services()
    certs = all_services["certs"]
    assert certs["restart"] == "no"
    script = host_path(certs, certs["entrypoint"][-1])
    assert script == SECURE / "make-certs.sh"
    args = certs["command"]
    out_root = PurePosixPath(args[args.index("--owner") + 2])
    names = args[args.index("--owner") + 3 :]
    assert args[args.index("--owner") + 1] == "postgres"  # PostgreSQL reads its key as postgres
    assert sorted(names) == sorted(POSTGRES_SERVICES)
    ca_volume = volume_at(certs, args[args.index("--ca") + 1])
    for name in POSTGRES_SERVICES:
        service = all_services[name]
        volume = volume_at(certs, str(out_root / name))
        assert volume is not None, f"certs does not write {name}'s certificate to a volume"
        assert volume_at(service, server_tls_dir(service) + "/server.crt") == volume, name
        others = {volume_at(certs, str(out_root / other)) for other in POSTGRES_SERVICES} - {volume}
        assert not others & set(volume_mounts(service).values()), f"{name} sees another key"
        assert ca_volume not in volume_mounts(service).values(), f"{name} mounts the CA key"
        assert service["depends_on"]["certs"]["condition"] == "service_completed_successfully"


def test_every_client_checks_the_server_certificate() -> None:
    """Django, the replicas and the exporter connect with sslmode=verify-full against the CA
    certificate the certs step publishes, to host names the certificates carry."""
    all_services = services()
    certs = all_services["certs"]
    args = certs["command"]
    cert_names = set(args[args.index("--owner") + 3 :])
    public = volume_at(certs, args[args.index("--public") + 1])
    ca_key = volume_at(certs, args[args.index("--ca") + 1])
    for name in (*APP_SERVICES, "replication-status"):
        service = all_services[name]
        env = service["environment"]
        assert env["DATABASE_SSLMODE"] == "verify-full", name
        assert volume_at(service, env["DATABASE_SSLROOTCERT"]) == public, name
        assert ca_key not in volume_mounts(service).values(), f"{name} mounts the CA key"
        hosts = {env["DATABASE_HOST"]} | {
            item.rpartition(":")[0] for item in env["DATABASE_REPLICAS"].split(",")
        }
        assert hosts <= cert_names, f"{name}: no certificate names {hosts - cert_names}"
    for name in REPLICAS:
        service = all_services[name]
        env = service["environment"]
        assert env["PRIMARY_HOST"] in cert_names
        assert volume_at(service, env["PRIMARY_SSLROOTCERT"]) is not None, name
        script = host_path(service, service["entrypoint"][-1])
        assert script is not None
        assert "sslmode=verify-full sslrootcert=$PRIMARY_SSLROOTCERT" in script.read_text()
    exporter = all_services["postgres-exporter"]
    uri = exporter["environment"]["DATA_SOURCE_URI"]
    host, _, query = uri.partition("?")
    params = dict(item.split("=", 1) for item in query.split("&"))
    assert params["sslmode"] == "verify-full"
    assert volume_at(exporter, params["sslrootcert"]) == public
    assert host.partition(":")[0] in cert_names


def test_each_job_has_its_own_role() -> None:
    """roles.sql's roles, as compose names them: the application, replication and
    monitoring each log in as their own role, with their own password."""
    all_services = services()
    primary = all_services["primary"]["environment"]
    assert all_services["primary"]["environment"]["POSTGRES_USER"] == "postgres"
    assert "POSTGRES_DB" not in primary  # roles.sql makes the app's database, owned by it
    app = all_services["web"]["environment"]
    assert app["DATABASE_USER"] == primary["APP_USER"] != "postgres"
    assert app["DATABASE_PASSWORD"] == primary["APP_PASSWORD"]
    assert app["DATABASE_NAME"] == primary["APP_DATABASE"]
    # monitoring from the app (admin page, /metrics) as the monitoring role, not the app's
    assert app["DATABASE_MONITOR_USER"] == primary["MONITOR_USER"]
    assert app["DATABASE_MONITOR_PASSWORD"] == primary["MONITOR_PASSWORD"]
    for name in REPLICAS:
        env = all_services[name]["environment"]
        assert env["REPLICATION_USER"] == primary["REPLICATION_USER"]
        assert env["REPLICATION_PASSWORD"] == primary["REPLICATION_PASSWORD"]
    exporter = all_services["postgres-exporter"]["environment"]
    status = all_services["replication-status"]["environment"]
    assert exporter["DATA_SOURCE_USER"] == status["DATABASE_USER"] == primary["MONITOR_USER"]
    assert (
        exporter["DATA_SOURCE_PASS"] == status["DATABASE_PASSWORD"] == primary["MONITOR_PASSWORD"]
    )
    passwords = [
        primary[key] for key in ("APP_PASSWORD", "REPLICATION_PASSWORD", "MONITOR_PASSWORD")
    ]
    assert len(set([*passwords, primary["POSTGRES_PASSWORD"]])) == 4, "two roles share a secret"
    assert all_services["replication-status"]["profiles"] == ["tools"]  # not started by `up`
    # roles.sql reads exactly what the primary's environment sets.
    wanted = set(re.findall(r"^\\getenv \w+ (\w+)$", (SECURE / "roles.sql").read_text(), re.M))
    assert wanted and wanted <= set(primary)


# --- nothing insecure in what compose mounts or sets ------------------------------------

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|_PASS$|_KEY$|TOKEN", re.IGNORECASE)
REQUIRED_VARIABLE = re.compile(r"\$\{\w+:?\?[^}]*\}")
WEAK_SSLMODE = re.compile(r"sslmode\W{1,3}(disable|allow|prefer)\b", re.IGNORECASE)
PASSWORD_IN_URL = re.compile(r"://[^/\s:@]+:[^@\s/]+@")
SECRET_DEFAULT = re.compile(r"\$\{(\w+):?-")


def mounted_files(data: dict[str, Any]) -> list[Path]:
    """Every host file a service bind-mounts (directories: every file in them)."""
    found: set[Path] = set()
    for service in data["services"].values():
        for source, _ in bind_mounts(service):
            found |= {source} if source.is_file() else {f for f in source.rglob("*") if f.is_file()}
    return sorted(found)


def code_lines(text: str) -> list[tuple[int, str]]:
    """Numbered lines without their comments (# for conf, shell and YAML; -- for SQL)."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        code = re.sub(r"(^|\s)(#|--\s).*$", "", line).strip()
        if code:
            lines.append((number, code))
    return lines


def insecure_findings(
    data: dict[str, Any], compose_text: str, read: Callable[[Path], str]
) -> list[str]:
    """What would make the stack trust a client, talk in clear or run with a known secret."""
    findings = []
    for name, service in data["services"].items():
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        for key, value in env.items():
            value = str(value)
            if SECRET_NAME.search(key) and not REQUIRED_VARIABLE.fullmatch(value):
                findings.append(f"{name}: {key} is not a required ${{VAR:?...}}: {value!r}")
            if WEAK_SSLMODE.search(value) or PASSWORD_IN_URL.search(value):
                findings.append(f"{name}: {key} = {value!r}")
            if key.endswith("SSLMODE") and value != "verify-full":
                findings.append(f"{name}: {key} = {value!r}, not verify-full")
        command = " ".join(map(str, service.get("command") or []))
        if "seed_demo" in command and "--no-admin" not in command:
            findings.append(f"{name}: seed_demo makes its admin/admin superuser")
    for match in SECRET_DEFAULT.finditer(compose_text):
        if SECRET_NAME.search(match[1]):
            findings.append(f"compose.yaml: {match[1]} has a default")
    for path in mounted_files(data):
        try:
            text = read(path)
        except UnicodeDecodeError:
            continue
        where = path.relative_to(ROOT)
        for number, line in code_lines(text):
            if re.search(r"\btrust\b", line):
                findings.append(f"{where}:{number}: trust: {line}")
            if WEAK_SSLMODE.search(line) or PASSWORD_IN_URL.search(line):
                findings.append(f"{where}:{number}: {line}")
            for match in SECRET_DEFAULT.finditer(line):
                if SECRET_NAME.search(match[1]):
                    findings.append(f"{where}:{number}: {match[1]} has a default")
    return findings


def test_nothing_compose_mounts_or_sets_trusts_talks_in_clear_or_has_a_default_secret() -> None:
    data = load_compose()
    assert mounted_files(data), "no mounted files found: the scan would prove nothing"
    assert SECURE / "pg_hba.conf" in mounted_files(data)
    assert insecure_findings(data, COMPOSE.read_text(), Path.read_text) == []


def _trust_line(data: dict[str, Any], files: dict[Path, str]) -> str:
    files[SECURE / "pg_hba.conf"] += "host all all samenet trust\n"
    return "trust"


def _dev_pgconf_mounted(data: dict[str, Any], files: dict[Path, str]) -> str:
    data["services"]["primary"]["volumes"].append("./django_pgreplica/pgconf:/etc/dev:ro")
    return "pg_hba.conf"


def _exporter_in_clear(data: dict[str, Any], files: dict[Path, str]) -> str:
    data["services"]["postgres-exporter"]["environment"]["DATA_SOURCE_URI"] = (
        "primary:5432/postgres?sslmode=disable"
    )
    return "DATA_SOURCE_URI"


def _password_default(data: dict[str, Any], files: dict[Path, str]) -> str:
    data["services"]["primary"]["environment"]["POSTGRES_PASSWORD"] = "${POSTGRES_PASSWORD:-pg}"
    return "POSTGRES_PASSWORD"


def _literal_secret_key(data: dict[str, Any], files: dict[Path, str]) -> str:
    data["services"]["web"]["environment"]["DJANGO_SECRET_KEY"] = "change-me"
    return "DJANGO_SECRET_KEY"


def _script_default(data: dict[str, Any], files: dict[Path, str]) -> str:
    script = ROOT / "docker" / "postgres" / "replica-entrypoint.sh"
    files[script] += 'REPLICATION_PASSWORD="${REPLICATION_PASSWORD:-replicator}"\n'
    return "REPLICATION_PASSWORD has a default"


def _demo_admin(data: dict[str, Any], files: dict[Path, str]) -> str:
    command = data["services"]["migrate"]["command"]
    command[-1] = command[-1].replace(" --no-admin", "")
    return "admin/admin"


def _weak_sslmode(data: dict[str, Any], files: dict[Path, str]) -> str:
    data["services"]["worker"]["environment"]["DATABASE_SSLMODE"] = "prefer"
    return "DATABASE_SSLMODE"


@pytest.mark.parametrize(
    "breakage",
    [
        _trust_line,
        _dev_pgconf_mounted,
        _exporter_in_clear,
        _password_default,
        _literal_secret_key,
        _script_default,
        _demo_admin,
        _weak_sslmode,
    ],
)
def test_the_scan_finds_each_insecure_setting(
    breakage: Callable[[dict[str, Any], dict[Path, str]], str],
) -> None:
    """So the test above can fail: each way back to an open stack is reported."""
    data = load_compose()
    files = {path: path.read_text() for path in mounted_files(data)}
    expected = breakage(data, files)
    compose_text = COMPOSE.read_text()
    if expected == "POSTGRES_PASSWORD":
        compose_text += "\n# ${POSTGRES_PASSWORD:-pg}\n"
    findings = insecure_findings(
        data, compose_text, lambda path: files.get(path) or path.read_text()
    )
    assert any(expected in finding for finding in findings), findings


def test_env_example_lists_every_secret_compose_requires() -> None:
    """.env.example names each ${VAR:?...} of compose.yaml, with no value to copy."""
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{(\w+):?\?", text))
    assert required, "compose.yaml requires no variable"
    example = ENV_EXAMPLE.read_text()
    assigned = dict(re.findall(r"^(\w+)=(.*)$", example, re.MULTILINE))
    assert set(assigned) == required
    assert all(value == "" for value in assigned.values()), "a secret has an example value"
    for optional in set(re.findall(r"\$\{(\w+):-", text)):
        assert re.search(rf"^# {optional}=", example, re.MULTILINE), optional


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
    "script",
    [
        "docker/postgres/replica-entrypoint.sh",
        "docker/postgres/initdb/10-roles.sh",
        "django_pgreplica/pgconf/secure/make-certs.sh",
    ],
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


def gunicorn_conf() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(GUNICORN_CONF.read_text(), str(GUNICORN_CONF), "exec"), namespace)
    return namespace


def test_metrics_are_on_the_workers_export_ports_not_the_web_port() -> None:
    """gunicorn's workers get django-prometheus's export port range (METRICS_PORTS) and no
    other process does; compose publishes the web port only, so /metrics is reachable from
    the compose network (Prometheus) and not from the host."""
    conf = gunicorn_conf()
    env = dict(item.split("=", 1) for item in conf["raw_env"])
    ports = conf["METRICS_PORTS"]
    assert env["PROMETHEUS_METRICS_EXPORT_PORT_RANGE"] == f"{ports.start}-{ports.stop - 1}"
    assert env["PROMETHEUS_METRICS_EXPORT_ADDRESS"] == "0.0.0.0"
    assert {"PROMETHEUS_METRICS_EXPORT_PORT_RANGE", "PROMETHEUS_METRICS_EXPORT_ADDRESS"} <= (
        env_names_read_by_settings()
    )
    all_services = services()
    for name in APP_SERVICES:  # a metrics port in the worker or migrate would be shared
        assert not set(env) & set(all_services[name]["environment"]), name
    web = all_services["web"]
    assert web["ports"] == ["127.0.0.1:8000:8000"]
    assert conf["bind"].endswith(":8000")
    assert "/metrics" not in " ".join(web["healthcheck"]["test"])


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
    command = all_services["web"]["command"]
    workers = int(command[command.index("--workers") + 1])
    assert ports == list(gunicorn_conf()["METRICS_PORTS"])[:workers]
    exporter = jobs["postgres-exporter"]["static_configs"][0]["targets"]
    assert exporter == ["postgres-exporter:9187"]
    image = all_services["postgres-exporter"]["image"]
    assert image.startswith("quay.io/prometheuscommunity/postgres-exporter:")


def relabel(job: dict[str, Any], name: str) -> bool:
    """Whether the job's metric_relabel_configs keep a series called ``name``."""
    for rule in job.get("metric_relabel_configs", []):
        assert rule["source_labels"] == ["__name__"]
        matched = re.fullmatch(rule["regex"], name) is not None
        if (rule["action"] == "drop" and matched) or (rule["action"] == "keep" and not matched):
            return False
    return True


FLEET_COUNTERS = (
    "django_pgreplica_reads_total",
    "django_pgreplica_fallback_total",
    "django_pgreplica_replay_wait_seconds_bucket",
    "django_pgreplica_replay_wait_seconds_count",
    "django_pgreplica_routing_processes",
)
PER_WORKER = (
    "django_pgreplica_replica_lag_seconds",
    "django_pgreplica_circuit_state",
    "django_pgreplica_replication_status",
    "django_http_requests_total_by_method_total",
)


def test_fleet_wide_counters_are_scraped_once() -> None:
    """With CACHE (compose sets PGREPLICA_CACHE_URL) every worker reports the fleet's
    routing counters: they come from one target, so sum(rate(...)) in the alert rules and
    the dashboard counts each read once; everything else comes from every worker."""
    assert "PGREPLICA_CACHE_URL" in services()["web"]["environment"]
    config, _ = load_prometheus()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (fleet,) = [job for name, job in jobs.items() if name != "django" and any(
        t.startswith("web:") for s in job["static_configs"] for t in s["targets"])]  # fmt: skip
    (target,) = [t for s in fleet["static_configs"] for t in s["targets"]]
    assert target in [t for s in jobs["django"]["static_configs"] for t in s["targets"]]
    for name in FLEET_COUNTERS:
        assert relabel(fleet, name) and not relabel(jobs["django"], name), name
    for name in PER_WORKER:
        assert relabel(jobs["django"], name) and not relabel(fleet, name), name


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
