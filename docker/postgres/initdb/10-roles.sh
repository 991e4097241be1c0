#!/usr/bin/env bash
# Runs once, when the primary's data directory is first initialised
# (/docker-entrypoint-initdb.d): the roles and the application's database of
# pgconf/secure/roles.sql, the file `python -m django_pgreplica.testing.cluster up --secure`
# runs too (docs/security.md, "Roles"):
#   - $APP_USER owns $APP_DATABASE (and its public schema), no superuser;
#   - $REPLICATION_USER: REPLICATION only, for pg_basebackup and the WAL receivers;
#   - $MONITOR_USER: pg_monitor only, for postgres-exporter and replication_status.
# roles.sql reads the names and passwords from this environment (compose.yaml sets them
# from .env); none has a default.
set -Eeuo pipefail

for name in APP_USER APP_PASSWORD APP_DATABASE REPLICATION_USER REPLICATION_PASSWORD \
    MONITOR_USER MONITOR_PASSWORD; do
    [[ -n "${!name:-}" ]] || { echo "10-roles.sh: $name must be set (see .env.example)" >&2; exit 1; }
done

# The unix socket, as the postgres OS user: pg_hba.conf's "local all postgres peer".
psql -X -q --username "$POSTGRES_USER" --dbname postgres \
    -f /etc/postgresql/pgreplica/secure/roles.sql
