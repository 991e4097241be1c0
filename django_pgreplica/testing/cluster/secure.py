"""A cluster that authenticates and encrypts, as compose.yaml runs it: ``up --secure``.

The servers run ``django_pgreplica/pgconf/secure/`` — the files compose.yaml mounts, not
copies of them: ``{primary,replica}.conf`` (the dev settings plus ``security.conf``: TLS,
SCRAM), ``pg_hba.conf`` (``hostssl`` + ``scram-sha-256``, no ``trust``), ``roles.sql`` (the
application, ``replicator`` and ``monitor`` roles) and ``make-certs.sh`` (a private CA and a
certificate per server, with the openssl CLI). What is host-specific goes on the server's
command line, as the port does: the certificate paths.

Files under the cluster directory::

    tls/ca/ca.crt, ca.key       the private CA (directory 0700)
    tls/ca.crt                  what clients verify servers with (sslrootcert)
    tls/NODE/server.crt, .key   each server's certificate (DNS:NODE, 127.0.0.1) and key (0600)
    secrets/passwords.json      a random password per role, made once
    secrets/pgpass              the replication role's passfile: pg_basebackup -R writes
                                passfile=, not the password, into primary_conninfo
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ClusterError
from .nodes import HOST, SUPERUSER
from .processes import OsUser

__all__ = [
    "APP_USER",
    "MONITOR_USER",
    "REPLICATION_USER",
    "SECURE_PGCONF_DIR",
    "SecureFiles",
]

SECURE_PGCONF_DIR = Path(__file__).resolve().parents[2] / "pgconf" / "secure"
APP_USER = "app"
REPLICATION_USER = "replicator"
MONITOR_USER = "monitor"
ROLES = (SUPERUSER, APP_USER, REPLICATION_USER, MONITOR_USER)
OPENSSL_HINT = "install the openssl command (Debian/Ubuntu: apt-get install openssl)"


@dataclass(frozen=True)
class SecureFiles:
    """Where a secure cluster keeps its certificates and passwords, and making them."""

    dir: Path
    user: OsUser

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def ca_cert(self) -> Path:
        """The CA certificate clients verify servers with (``sslrootcert``)."""
        return self.tls_dir / "ca.crt"

    def server_dir(self, name: str) -> Path:
        return self.tls_dir / name

    @property
    def secrets_dir(self) -> Path:
        return self.dir / "secrets"

    @property
    def passfile(self) -> Path:
        return self.secrets_dir / "pgpass"

    # -- certificates --

    def make_certs(self, names: list[str]) -> None:
        """Run make-certs.sh for ``names`` (existing certificates are checked and kept)."""
        if not shutil.which("openssl"):
            raise ClusterError(f"--secure needs the openssl command: {OPENSSL_HINT}")
        bash = shutil.which("bash")
        if not bash:
            raise ClusterError("--secure needs bash to run pgconf/secure/make-certs.sh")
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tls_dir, 0o755)
        owner = ["--owner", self.user.name] if self.user.name else []
        command = [
            bash,
            str(SECURE_PGCONF_DIR / "make-certs.sh"),
            "--ca", str(self.tls_dir / "ca"),
            "--public", str(self.tls_dir),
            *owner,
            str(self.tls_dir),
            *names,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            detail = "\n".join("    " + line for line in done.stderr.strip().splitlines()[-6:])
            raise ClusterError(f"make-certs.sh failed (exit {done.returncode}):\n{detail}")

    def server_settings(self, name: str) -> dict[str, str]:
        """Settings naming ``name``'s files, for its command line (security.conf has
        compose's paths)."""
        folder = self.server_dir(name)
        return {
            "ssl_cert_file": str(folder / "server.crt"),
            "ssl_key_file": str(folder / "server.key"),
            "ssl_ca_file": str(folder / "ca.crt"),
        }

    def client_params(self) -> dict[str, str]:
        """libpq options of every client: TLS, the certificate checked against the host."""
        return {"sslmode": "verify-full", "sslrootcert": str(self.ca_cert)}

    # -- passwords --

    def passwords(self) -> dict[str, str]:
        """Each role's password, made (random) on the first call and kept."""
        path = self.secrets_dir / "passwords.json"
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            saved = {}
        except (OSError, ValueError) as exc:
            raise ClusterError(f"unreadable {path}: {exc}") from None
        if isinstance(saved, dict) and all(isinstance(saved.get(role), str) for role in ROLES):
            return {role: str(saved[role]) for role in ROLES}
        made = {role: secrets.token_urlsafe(24) for role in ROLES}
        self.write_secret(path, json.dumps(made, indent=2) + "\n")
        return made

    def write_passfile(self) -> None:
        """The replication role's entry, readable by the server's OS user only."""
        password = self.passwords()[REPLICATION_USER]
        self.write_secret(self.passfile, f"{HOST}:*:replication:{REPLICATION_USER}:{password}\n")

    def write_secret(self, path: Path, text: str) -> None:
        """``path`` (in secrets/) holding ``text``, 0600 and owned by the server's OS user."""
        self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
        self.user.own(self.secrets_dir)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        self.user.own(tmp)
        tmp.replace(path)

    def role_env(self, dbname: str) -> dict[str, str]:
        """What roles.sql reads (\\getenv), as compose's initdb script passes it."""
        passwords = self.passwords()
        return {
            "APP_USER": APP_USER,
            "APP_PASSWORD": passwords[APP_USER],
            "APP_DATABASE": dbname,
            "REPLICATION_USER": REPLICATION_USER,
            "REPLICATION_PASSWORD": passwords[REPLICATION_USER],
            "MONITOR_USER": MONITOR_USER,
            "MONITOR_PASSWORD": passwords[MONITOR_USER],
        }

    def connect_kwargs(self, user: str = SUPERUSER) -> dict[str, Any]:
        """psycopg.connect() keywords that log ``user`` in over TLS."""
        return {"user": user, "password": self.passwords()[user], **self.client_params()}


def psql_version(psql: Path) -> tuple[int, ...]:
    """``psql --version`` as numbers (roles.sql's \\getenv needs 15 or newer)."""
    try:
        out = subprocess.run(
            [str(psql), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        raise ClusterError(
            f"--secure runs roles.sql with {psql}, which is missing or does not run "
            "(Debian/Ubuntu: apt-get install postgresql-client)"
        ) from None
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    return tuple(int(part) for part in match.groups() if part) if match else (0,)
