"""Finding the PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import ClusterError

__all__ = ["INSTALL_HINT", "SERVER_BINARIES", "find_bindir", "has_server"]

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_basebackup")
INSTALL_HINT = (
    "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; "
    "Fedora: dnf install postgresql-server; macOS: brew install postgresql) "
    "or point PGREPLICA_PG_BINDIR at its bin directory"
)


def _version_key(path: str) -> tuple[int, ...]:
    """``/usr/lib/postgresql/9.6/bin`` -> (9, 6), so 16 sorts above 9.6."""
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def _pg_config_bindir(pg_config: str | None) -> list[str]:
    if not pg_config:
        return []
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    return [out] if out else []


def _bindir_candidates(search_path: str | None, globs: Sequence[str]) -> list[str]:
    candidates: list[str] = []
    initdb = shutil.which("initdb", path=search_path)
    if initdb:
        # Debian puts only symlinks or wrappers on PATH: the real directory has the rest.
        candidates += [str(Path(initdb).parent), str(Path(initdb).resolve().parent)]
    candidates += _pg_config_bindir(shutil.which("pg_config", path=search_path))
    for pattern in globs:
        candidates += sorted(glob.glob(pattern), key=_version_key, reverse=True)
    return candidates


def has_server(bindir: str) -> bool:
    """Whether ``bindir`` holds every one of :data:`SERVER_BINARIES`, executable."""
    return all(os.access(os.path.join(bindir, name), os.X_OK) for name in SERVER_BINARIES)


def find_bindir(
    explicit: str | None = None,
    *,
    search_path: str | None = None,
    globs: Sequence[str] = (
        "/usr/lib/postgresql/*/bin",
        "/usr/pgsql-*/bin",
        "/usr/local/pgsql/bin",
        "/opt/homebrew/opt/postgresql@*/bin",
    ),
) -> Path:
    """The directory holding initdb, pg_ctl, postgres and pg_basebackup.

    ``explicit`` (or ``$PGREPLICA_PG_BINDIR``) is the only place looked at when given;
    otherwise PATH (``search_path``), ``pg_config --bindir``, then ``globs``, highest
    version first.
    """
    explicit = explicit or os.environ.get("PGREPLICA_PG_BINDIR") or None
    if explicit:
        if has_server(explicit):
            return Path(explicit)
        raise ClusterError(
            f"no PostgreSQL server binaries ({', '.join(SERVER_BINARIES)}) in {explicit}: "
            + INSTALL_HINT
        )
    for candidate in _bindir_candidates(search_path, globs):
        if has_server(candidate):
            return Path(candidate)
    raise ClusterError(
        "PostgreSQL server binaries not found (looked in PATH, pg_config --bindir and "
        f"/usr/lib/postgresql/*/bin): {INSTALL_HINT}"
    )
