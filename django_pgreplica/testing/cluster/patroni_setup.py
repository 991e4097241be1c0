"""What a Patroni dev cluster is made of: its ports, executables and configuration files.

Pure functions and small values, no processes: :class:`PatroniLayout` derives every port
from one base, :func:`find_etcd` / :func:`find_patroni` locate the executables,
:func:`pgconf_parameters` reads ``django_pgreplica/pgconf/`` and :func:`member_config`
builds one member's Patroni configuration (written as JSON, which Patroni's YAML loader
reads as it is).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .building import PGCONF_DIR
from .errors import ClusterError
from .nodes import HOST, SUPERUSER
from .processes import port_in_use

__all__ = [
    "DEFAULT_PATRONI_DIR",
    "DEFAULT_PATRONI_PORT",
    "ETCD_HINT",
    "MAX_MEMBERS",
    "PATRONI_HINT",
    "SCOPE",
    "PatroniLayout",
    "SyncMode",
    "dcs_settings",
    "find_etcd",
    "find_patroni",
    "free_patroni_port",
    "member_config",
    "pgconf_parameters",
]

# Far above Linux's ephemeral range (32768-60999) and clear of the plain cluster's
# defaults (61432 dev, 64432 test), so client sockets never hold one of our ports.
DEFAULT_PATRONI_PORT = 65100
DEFAULT_PATRONI_DIR = ".pgreplica/patroni"
SCOPE = "pgreplica"  # Patroni's cluster name (its etcd key prefix /service/pgreplica/)
MAX_MEMBERS = 9

SyncMode = Literal["on", "off", "quorum"]

ETCD_HINT = "etcd not found: apt-get install etcd-server (or set PGREPLICA_ETCD to its path)"
PATRONI_HINT = (
    "patroni not found: run ensure_patroni from scripts/_patroni.sh (a .venv-patroni with "
    "pip install 'patroni[etcd3,psycopg3]'), or set PGREPLICA_PATRONI to its patroni script"
)
_REPO_ROOT = PGCONF_DIR.parents[1]


@dataclass(frozen=True)
class PatroniLayout:
    """Ports from one base: PostgreSQL at base+0.., REST at base+10.., etcd at base+20/21."""

    base: int
    members: int

    def __post_init__(self) -> None:
        if not 1 <= self.members <= MAX_MEMBERS:
            raise ClusterError(f"a Patroni cluster has 1 to {MAX_MEMBERS} members")
        if not 1024 <= self.base <= 65535 - 21:
            raise ClusterError(f"--port must be between 1024 and {65535 - 21}")

    @property
    def names(self) -> list[str]:
        return [f"pg{i}" for i in range(1, self.members + 1)]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            names = ", ".join(self.names)
            raise ClusterError(f"no member {name!r} in this cluster (members: {names})") from None

    def pg_port(self, name: str) -> int:
        return self.base + self.index(name)

    def api_port(self, name: str) -> int:
        return self.base + 10 + self.index(name)

    @property
    def etcd_client_port(self) -> int:
        return self.base + 20

    @property
    def etcd_peer_port(self) -> int:
        return self.base + 21

    @property
    def ports(self) -> list[int]:
        """Every port the cluster listens on."""
        members = [p for n in self.names for p in (self.pg_port(n), self.api_port(n))]
        return [*members, self.etcd_client_port, self.etcd_peer_port]


def free_patroni_port(start: int, members: int, *, step: int = 30) -> int:
    """The first base port from ``start`` (by ``step``) whose whole layout is free."""
    for base in range(start, 65535 - 21 + 1, step):
        if not any(port_in_use(port) for port in PatroniLayout(base, members).ports):
            return base
    raise ClusterError(f"no free ports for a Patroni cluster from {start}")


def _executable(env_var: str, candidates: list[Path | str | None], hint: str) -> Path:
    explicit = os.environ.get(env_var)
    if explicit:
        if os.access(explicit, os.X_OK):
            return Path(explicit)
        raise ClusterError(f"${env_var}={explicit} is not an executable: {hint}")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ClusterError(hint)


def find_etcd() -> Path:
    """``$PGREPLICA_ETCD``, else ``etcd`` on PATH (Debian's etcd-server: /usr/bin/etcd)."""
    return _executable("PGREPLICA_ETCD", [shutil.which("etcd"), "/usr/bin/etcd"], ETCD_HINT)


def find_patroni() -> Path:
    """``$PGREPLICA_PATRONI``, else ``.venv-patroni/bin/patroni`` (checkout or cwd), else PATH."""
    candidates: list[Path | str | None] = [
        _REPO_ROOT / ".venv-patroni" / "bin" / "patroni",
        Path.cwd() / ".venv-patroni" / "bin" / "patroni",
        shutil.which("patroni"),
    ]
    return _executable("PGREPLICA_PATRONI", candidates, PATRONI_HINT)


# -- PostgreSQL settings from pgconf/ --------------------------------------------------

_SETTING_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=?\s*('(?:[^']|'')*'|[^\s#]+)")

# A member changes role at runtime, so it runs one configuration: replica.conf (which
# includes primary.conf) without the standby-only read-only default, which would make a
# promoted leader refuse writes. Hot standby rejects writes on a replica anyway.
_ROLE_ONLY = {"default_transaction_read_only"}


def pgconf_parameters(path: Path = PGCONF_DIR / "replica.conf") -> dict[str, str]:
    """The settings of a postgresql.conf-style file, following ``include`` lines."""
    found: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ClusterError(f"cannot read {path}: {exc}") from None
    for line in lines:
        match = _SETTING_RE.match(line)
        if not match:
            continue
        name, raw = match.groups()
        value = raw[1:-1].replace("''", "'") if raw.startswith("'") else raw
        if name == "include":
            found.update(pgconf_parameters(path.parent / value))
        elif name not in _ROLE_ONLY:
            found[name] = value
    return found


def _hba_lines(path: Path = PGCONF_DIR / "pg_hba.conf") -> list[str]:
    """pg_hba.conf's rules without comments: Patroni writes the file itself from a list."""
    rules = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [" ".join(rule.split()) for rule in rules if rule]


# -- Patroni's configuration -----------------------------------------------------------


def dcs_settings(sync: SyncMode) -> dict[str, Any]:
    """The cluster-wide (etcd-held) settings, used when the cluster is bootstrapped."""
    return {
        # Patroni's floors: failover ~ttl after a leader stops renewing its lock.
        "ttl": 20,
        "loop_wait": 1,
        "retry_timeout": 3,
        # A crashed primary fails over at once instead of being restarted in place.
        "primary_start_timeout": 0,
        "maximum_lag_on_failover": 1024 * 1024,
        "synchronous_mode": {"on": True, "off": False, "quorum": "quorum"}[sync],
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            # Patroni puts its own defaults for max_connections, wal_keep_size, ... on the
            # postmaster's command line unless these name them: all of pgconf/ goes here.
            "parameters": pgconf_parameters(),
        },
    }


def member_config(
    layout: PatroniLayout,
    name: str,
    *,
    cluster_dir: Path,
    bindir: Path,
    socket_dir: Path,
    sync: SyncMode,
) -> dict[str, Any]:
    """Patroni's configuration for member ``name`` (passwordless: pg_hba trusts loopback)."""
    member_dir = cluster_dir / name
    pg = f"{HOST}:{layout.pg_port(name)}"
    api = f"{HOST}:{layout.api_port(name)}"
    user = {"username": SUPERUSER}
    return {
        "scope": SCOPE,
        "name": name,
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
        "restapi": {"listen": api, "connect_address": api},
        "etcd3": {"hosts": [f"{HOST}:{layout.etcd_client_port}"], "protocol": "http"},
        "bootstrap": {
            "dcs": dcs_settings(sync),
            "initdb": [{"encoding": "UTF8"}, "no-locale", {"auth": "trust"}, "no-sync"],
        },
        "postgresql": {
            "listen": pg,
            "connect_address": pg,
            "data_dir": str(member_dir / "data"),
            "bin_dir": str(bindir),
            "pgpass": str(member_dir / "pgpass"),
            "authentication": {"superuser": user, "replication": user, "rewind": user},
            "pg_hba": _hba_lines(),
            "parameters": {
                "unix_socket_directories": str(socket_dir),
                "logging_collector": "on",
                "log_directory": str(cluster_dir / "logs"),
                "log_filename": f"{name}.postgres.log",
                "log_file_mode": "0644",
            },
            "basebackup": [{"checkpoint": "fast"}],
            # A dev cluster always rejoins: re-clone when pg_rewind cannot bring it back.
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
    }
