#!/usr/bin/env bash
# Runs once, when the primary's data directory is first initialised
# (/docker-entrypoint-initdb.d). Creates the two roles docs/postgresql.md ("Roles") sets up:
#   - $REPLICATION_USER: LOGIN REPLICATION, used by the replicas' pg_basebackup and WAL
#     receivers (pg_hba.conf "replication" lines);
#   - $MONITOR_USER: LOGIN with pg_monitor, used by postgres-exporter. Without pg_monitor
#     the lag columns of pg_stat_replication read NULL.
# The application connects as the superuser in this demo; see docs/postgresql.md for a
# least-privilege production setup.
set -e

psql -v ON_ERROR_STOP=1 -X -q \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v repl_user="${REPLICATION_USER:-replicator}" \
    -v repl_password="${REPLICATION_PASSWORD:-replicator}" \
    -v monitor_user="${MONITOR_USER:-exporter}" \
    -v monitor_password="${MONITOR_PASSWORD:-exporter}" <<'SQL'
SELECT format('CREATE ROLE %I WITH LOGIN REPLICATION PASSWORD %L', :'repl_user', :'repl_password')
\gexec
SELECT format('CREATE ROLE %I WITH LOGIN PASSWORD %L', :'monitor_user', :'monitor_password')
\gexec
SELECT format('GRANT pg_monitor TO %I', :'monitor_user')
\gexec
SQL
