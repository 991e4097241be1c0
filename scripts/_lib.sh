# Shared setup for scripts/demo and scripts/test. Sourced, not executed.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export REDIS_URL

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/_patroni.sh
source "$ROOT/scripts/_patroni.sh"

# The first of the candidates that is a Python >= 3.$1.
first_python() {
    local minor="$1" candidate
    shift
    for candidate in "$@"; do
        if [[ -n $candidate ]] && command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c "import sys; sys.exit(sys.version_info < (3, $minor))" 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# A Python >= 3.11 to create the virtualenv with ($PYTHON wins if set).
find_python() {
    first_python 11 "${PYTHON:-}" python3 python3.13 python3.12 python3.11
}

# Are the current pyproject.toml's runtime + dev requirements (and entry points) what the
# virtualenv has? Lets a pre-existing venv be adopted without reinstalling into it.
venv_matches_pyproject() {
    "$PY" - <<'PY' 2>/dev/null
import sys
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: no parser at hand, let pip decide
    sys.exit(1)
from pip._vendor.packaging.requirements import Requirement

project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
wanted = list(project.get("dependencies", []))
wanted += project.get("optional-dependencies", {}).get("dev", [])
for line in wanted:
    req = Requirement(line)
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        sys.exit(1)
dist = metadata.distribution(project["name"])
installed = {(ep.group, ep.name, ep.value) for ep in dist.entry_points}
declared = {
    (group, name, value)
    for group, entries in project.get("entry-points", {}).items()
    for name, value in entries.items()
}
sys.exit(0 if installed == declared else 1)
PY
}

# A Python >= 3.12 for the Django 6 leg: on PATH, else one pyenv has.
find_python312() {
    first_python 12 "${PYTHON6:-}" python3.13 python3.12 \
        "$(pyenv prefix 3.13 2>/dev/null)/bin/python3" "$(pyenv prefix 3.12 2>/dev/null)/bin/python3"
}

# The venv's Django matches the pin, else pip installs it (no-op once it does).
ensure_django() {
    local python="$1" pin="$2"
    "$python" - "$pin" <<'PY' 2>/dev/null && return 0
import sys
from importlib.metadata import version

from pip._vendor.packaging.requirements import Requirement

sys.exit(0 if Requirement(sys.argv[1]).specifier.contains(version("Django")) else 1)
PY
    say "Installing $pin into $(dirname "$(dirname "$python")")"
    "$python" -m pip install --quiet "$pin"
}

# .venv-django6: the same install on Python 3.12+, with the newest Django 6.
VENV6="$ROOT/.venv-django6"
ensure_django6_venv() {
    local python
    python="$(find_python312)" \
        || die "The Django 6 leg needs Python 3.12+ (e.g. pyenv install 3.13, or apt-get install python3.13-venv); run one leg with --django 5.2"
    (VENV="$VENV6" PY="$VENV6/bin/python" PYTHON="$python" ensure_venv)
    ensure_django "$VENV6/bin/python" "Django>=6.1,<7"
}

# .venv with `pip install -e .[dev]`; skipped while pyproject.toml is unchanged since the
# last successful install (the stamp holds its hash).
ensure_venv() {
    local python stamp hash
    if [[ ! -x "$PY" ]]; then
        python="$(find_python)" || die "Python 3.11+ is required (apt-get install python3 python3-venv)."
        say "Creating virtualenv ${VENV#"$ROOT"/} with $python"
        "$python" -m venv "$VENV" \
            || die "'$python -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv"
    fi
    stamp="$VENV/.pgreplica-pyproject.sha256"
    hash="$("$PY" -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$hash" ]] \
        && "$PY" -c 'from importlib.metadata import version; version("django-pgreplica")' 2>/dev/null; then
        return 0
    fi
    if ! venv_matches_pyproject; then
        say "Installing django-pgreplica and dev dependencies into ${VENV#"$ROOT"/}"
        "$PY" -m pip install --quiet --upgrade pip
        "$PY" -m pip install --quiet -e ".[dev]"
    fi
    echo "$hash" >"$stamp"
}

# PostgreSQL server binaries are needed by the cluster tool; say how to get them.
ensure_postgres() {
    if command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null \
        || compgen -G "/usr/pgsql-*/bin/pg_ctl" >/dev/null; then
        return 0
    fi
    die "PostgreSQL 15+ server binaries not found (pg_ctl). Install them, e.g. apt-get install postgresql"
}

redis_answers() {
    "$PY" - "$REDIS_URL" <<'PY' >/dev/null 2>&1
import sys

import redis

redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=1).ping()
PY
}

# Celery's broker. Reuse whatever answers at $REDIS_URL, else start a throwaway local one.
ensure_redis() {
    redis_answers && return 0
    if [[ "$REDIS_URL" != redis://127.0.0.1:6379* && "$REDIS_URL" != redis://localhost:6379* ]]; then
        die "No Redis answers at REDIS_URL=$REDIS_URL: start it, or unset REDIS_URL to use a local one."
    fi
    command -v redis-server >/dev/null 2>&1 \
        || die "No Redis answers on 127.0.0.1:6379 and redis-server is not installed. Install it (apt-get install redis-server) or point REDIS_URL at a running Redis."
    say "Starting redis-server on 127.0.0.1:6379 (no persistence)"
    redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
    local _
    for _ in $(seq 50); do
        redis_answers && return 0
        sleep 0.1
    done
    die "redis-server was started but does not answer on 127.0.0.1:6379"
}

# Tools some tests drive for real: promtool checks the alert rules, Chromium renders the
# admin page. Installed from Debian's packages when missing and we may (root + apt-get);
# otherwise those tests fail with the same install hint.
ensure_test_tools() {
    local missing=()
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    ((${#missing[@]})) || return 0
    if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        say "Missing ${missing[*]}: some tests will fail. Install: apt-get install ${missing[*]}"
        return 0
    fi
    say "Installing ${missing[*]} (Debian packages)"
    # policy-rc.d 101: install the packages without starting their services.
    local policy=/usr/sbin/policy-rc.d created=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null; } \
        || say "apt-get install ${missing[*]} failed: the tests that need them will fail"
    ((created)) && rm -f "$policy"
    return 0
}
