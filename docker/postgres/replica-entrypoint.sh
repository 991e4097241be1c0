#!/usr/bin/env bash
# Entrypoint of the replica containers (compose.yaml): clone the primary once, then run the
# postgres image's own entrypoint with the command given ("postgres -c config_file=...").
#
# First start (no $PGDATA/PG_VERSION):
#   pg_basebackup -R -X stream -C -S "$REPLICATION_SLOT" from $PRIMARY_HOST, into a
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
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
REPLICATION_USER="${REPLICATION_USER:-replicator}"

if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root: prepare the volume, then re-run as postgres.
    mkdir -p "$(dirname "$PGDATA")"
    chown postgres:postgres "$(dirname "$PGDATA")"
    exec gosu postgres bash "${BASH_SOURCE[0]}" "$@"
fi

log() { printf 'replica-entrypoint: %s\n' "$*" >&2; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    export PGPASSWORD="${REPLICATION_PASSWORD:-}"
    conninfo="host=$PRIMARY_HOST port=$PRIMARY_PORT user=$REPLICATION_USER"

    log "waiting for the primary at $PRIMARY_HOST:$PRIMARY_PORT"
    until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER"; do
        sleep 1
    done

    # A slot left by an earlier clone of this replica (its volume was removed, or a clone
    # was interrupted) would make -C fail. An active slot belongs to a running standby:
    # it is left alone and pg_basebackup then fails loudly.
    psql "$conninfo dbname=postgres" -v ON_ERROR_STOP=1 -X -q -v slot="$REPLICATION_SLOT" \
        >/dev/null <<'SQL'
SELECT pg_drop_replication_slot(slot_name)
FROM pg_replication_slots
WHERE slot_name = :'slot' AND NOT active;
SQL

    scratch="$PGDATA.partial"
    rm -rf "$scratch" "$PGDATA"
    log "cloning the primary into $PGDATA (slot $REPLICATION_SLOT)"
    pg_basebackup \
        -d "$conninfo application_name=$REPLICATION_SLOT" \
        -D "$scratch" \
        -R -X stream -C -S "$REPLICATION_SLOT" \
        --checkpoint=fast --progress
    mv "$scratch" "$PGDATA"
    unset PGPASSWORD
    log "clone complete"
fi

exec docker-entrypoint.sh "$@"
