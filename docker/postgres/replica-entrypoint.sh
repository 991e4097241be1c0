#!/usr/bin/env bash
# Entrypoint of the replica containers (compose.yaml): clone the primary once, then run the
# postgres image's own entrypoint with the command given ("postgres -c config_file=...").
#
# Every start: the replication role's password goes into a passfile beside PGDATA (0600),
# which primary_conninfo names: the password is never written into the data directory, and
# a new REPLICATION_PASSWORD takes effect at the next start.
#
# First start (no $PGDATA/PG_VERSION):
#   pg_basebackup -R -X stream -C -S "$REPLICATION_SLOT" from $PRIMARY_HOST over TLS
#   (sslmode=verify-full: the primary's certificate must name $PRIMARY_HOST), into a
#   scratch directory renamed into place only when complete, so an interrupted clone is
#   retried from scratch instead of leaving a half-copied data directory behind.
#   -R writes standby.signal and primary_conninfo/primary_slot_name (postgresql.auto.conf);
#   -C creates the physical slot on the primary; application_name is the slot name, so
#   pg_stat_replication on the primary shows replica1/replica2.
# Later starts: the data directory is used as it is. A promoted replica stays promoted;
# to re-clone it, remove its volume (docs/runbooks.md).
set -Eeuo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${PRIMARY_HOST:?PRIMARY_HOST must be set}"
: "${REPLICATION_SLOT:?REPLICATION_SLOT must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set (see .env.example)}"
: "${PRIMARY_SSLROOTCERT:?PRIMARY_SSLROOTCERT must name the CA certificate}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
REPLICATION_USER="${REPLICATION_USER:-replicator}"

if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root: prepare the volume, then re-run as postgres.
    mkdir -p "$(dirname "$PGDATA")"
    chown postgres:postgres "$(dirname "$PGDATA")"
    exec gosu postgres bash "${BASH_SOURCE[0]}" "$@"
fi

log() { printf 'replica-entrypoint: %s\n' "$*" >&2; }

passfile="$(dirname "$PGDATA")/replication.pgpass"
# Any host and port: the entry still fits when a failover repoints primary_conninfo.
escape() { local value="${1//\\/\\\\}"; printf '%s' "${value//:/\\:}"; }
(
    umask 077
    printf '*:*:replication:%s:%s\n' \
        "$(escape "$REPLICATION_USER")" "$(escape "$REPLICATION_PASSWORD")" >"$passfile.tmp"
)
mv "$passfile.tmp" "$passfile"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    conninfo="host=$PRIMARY_HOST port=$PRIMARY_PORT user=$REPLICATION_USER"
    conninfo+=" sslmode=verify-full sslrootcert=$PRIMARY_SSLROOTCERT passfile=$passfile"

    log "waiting for the primary at $PRIMARY_HOST:$PRIMARY_PORT"
    until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER"; do
        sleep 1
    done

    # A slot left by an earlier clone of this replica (its volume was removed, or a clone
    # was interrupted) would make -C fail: drop it over a replication connection (the
    # role opens no other kind). An active slot belongs to a running standby: dropping it
    # fails, it is left alone and pg_basebackup then fails loudly.
    if pg_receivewal -d "$conninfo" --drop-slot -S "$REPLICATION_SLOT" 2>/dev/null; then
        log "dropped the leftover slot $REPLICATION_SLOT"
    fi

    scratch="$PGDATA.partial"
    rm -rf "$scratch" "$PGDATA"
    log "cloning the primary into $PGDATA (slot $REPLICATION_SLOT)"
    pg_basebackup \
        -d "$conninfo application_name=$REPLICATION_SLOT" \
        -D "$scratch" \
        -R -X stream -C -S "$REPLICATION_SLOT" \
        --checkpoint=fast --progress
    mv "$scratch" "$PGDATA"
    log "clone complete"
fi

exec docker-entrypoint.sh "$@"
