# Patroni dev/test cluster prerequisites: etcd and Patroni. Sourced (by scripts/_lib.sh),
# not executed; expects $ROOT, say and die from _lib.sh (falls back to its own).
# shellcheck shell=bash
#
#   ensure_patroni   install what is missing: Debian's etcd-server, and Patroni 4.x in its
#                    own virtualenv $PATRONI_VENV (default $ROOT/.venv-patroni)
#
# Patroni gets a venv of its own, built from the system /usr/bin/python3, because it runs as
# the postgres OS user (PostgreSQL refuses root): that user must be able to read and execute
# it, which rules out a venv made from a pyenv or /root Python, and the project's .venv may
# live where postgres cannot look. python -m django_pgreplica.testing.cluster patroni ...
# finds it there (or through $PGREPLICA_PATRONI).

: "${ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
PATRONI_VENV="${PATRONI_VENV:-$ROOT/.venv-patroni}"
PATRONI_REQUIREMENT='patroni[etcd3,psycopg3]>=4,<5'
declare -F say >/dev/null || say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
declare -F die >/dev/null || die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# apt-get install without starting the packages' services (policy-rc.d exit 101), with
# at most one apt-get update per shell.
_patroni_apt_install() {
    local policy=/usr/sbin/policy-rc.d created=0 status=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    if [[ -z ${_PGREPLICA_APT_UPDATED:-} ]]; then
        apt-get update -qq && _PGREPLICA_APT_UPDATED=1 || status=$?
    fi
    ((status)) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "$@" >/dev/null || status=$?
    ((created)) && rm -f "$policy"
    return "$status"
}

# The user Patroni and PostgreSQL run as: ourselves, or postgres when we are root.
_patroni_os_user() {
    if [[ $EUID -eq 0 ]]; then echo "${PGREPLICA_OS_USER:-postgres}"; else id -un; fi
}

# Let $1 (a directory) be entered by everyone: postgres must reach the venv (e.g. under
# /root, which is 0700). Only the execute (search) bit is added, never read.
_patroni_traversable() {
    local dir="$1"
    while [[ $dir != / && -n $dir ]]; do
        [[ -d $dir ]] && chmod o+x "$dir"
        dir="$(dirname "$dir")"
    done
}

# Does the venv's patroni run (as the server user) and speak etcd3?
_patroni_works() {
    local run=()
    [[ -x $PATRONI_VENV/bin/patroni ]] || return 1
    [[ $EUID -eq 0 ]] && run=(runuser -u "$(_patroni_os_user)" --)
    "${run[@]}" "$PATRONI_VENV/bin/patroni" --version >/dev/null 2>&1 \
        && "${run[@]}" "$PATRONI_VENV/bin/python" -c 'import patroni.dcs.etcd3, psycopg' 2>/dev/null
}

ensure_patroni() {
    local missing=()
    command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
    [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null \
        || missing+=(python3-venv)
    if ((${#missing[@]})); then
        if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
            die "The Patroni cluster needs ${missing[*]}: apt-get install ${missing[*]}"
        fi
        say "Installing ${missing[*]} (Debian packages)"
        _patroni_apt_install "${missing[@]}" || die "apt-get install ${missing[*]} failed"
    fi
    # etcd 3.4's v3 API (what Patroni's etcd3 driver uses) is always on; etcdctl defaults to
    # the v2 API until 3.4, so anything shelling out to it needs ETCDCTL_API=3.
    _patroni_works && return 0
    say "Creating ${PATRONI_VENV#"$ROOT"/} (Patroni, from /usr/bin/python3)"
    if [[ ! -x $PATRONI_VENV/bin/python ]]; then
        rm -rf "$PATRONI_VENV"
        /usr/bin/python3 -m venv "$PATRONI_VENV" || die "/usr/bin/python3 -m venv failed"
    fi
    # A venv is not a project file: keep git from offering it (Python < 3.13 adds none).
    [[ -e $PATRONI_VENV/.gitignore ]] || echo '*' >"$PATRONI_VENV/.gitignore"
    "$PATRONI_VENV/bin/python" -m pip install --quiet --upgrade pip \
        && "$PATRONI_VENV/bin/python" -m pip install --quiet "$PATRONI_REQUIREMENT" \
        || die "pip install $PATRONI_REQUIREMENT failed (needs PyPI)"
    # Readable whatever the umask, reachable whatever the parents' modes.
    chmod -R a+rX "$PATRONI_VENV"
    _patroni_traversable "$PATRONI_VENV"
    _patroni_works || die "$PATRONI_VENV/bin/patroni does not run as $(_patroni_os_user)"
}
