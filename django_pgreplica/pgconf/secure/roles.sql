-- django-pgreplica: the roles of a secure cluster, run by the superuser on the primary
-- (replicas get them through WAL): by compose's docker/postgres/initdb/10-roles.sh on the
-- first start, and by `python -m django_pgreplica.testing.cluster up --secure`. Idempotent:
-- a second run sets the same attributes and the passwords again (how to rotate them).
--
-- Names and passwords come from the environment (psql 15+ \getenv), none from this file:
--   APP_USER, APP_PASSWORD, APP_DATABASE     the Django application and its database
--   REPLICATION_USER, REPLICATION_PASSWORD   pg_basebackup and the replicas' WAL receivers
--   MONITOR_USER, MONITOR_PASSWORD           replication_status, postgres-exporter
\set ON_ERROR_STOP on
\set QUIET on
\getenv app_user APP_USER
\getenv app_password APP_PASSWORD
\getenv app_db APP_DATABASE
\getenv repl_user REPLICATION_USER
\getenv repl_password REPLICATION_PASSWORD
\getenv monitor_user MONITOR_USER
\getenv monitor_password MONITOR_PASSWORD

SELECT :{?app_user} AND :{?app_password} AND :{?app_db} AND :{?repl_user}
   AND :{?repl_password} AND :{?monitor_user} AND :{?monitor_password} AS all_set \gset
\if :all_set
\else
DO $$ BEGIN RAISE EXCEPTION 'roles.sql: set APP_USER, APP_PASSWORD, APP_DATABASE, '
  'REPLICATION_USER, REPLICATION_PASSWORD, MONITOR_USER and MONITOR_PASSWORD'; END $$;
\endif
SELECT '' IN (:'app_password', :'repl_password', :'monitor_password') AS empty_password \gset
\if :empty_password
DO $$ BEGIN RAISE EXCEPTION 'roles.sql: a password is empty'; END $$;
\endif

SET password_encryption = 'scram-sha-256';

SELECT format('CREATE ROLE %I', name)
FROM unnest(ARRAY[:'app_user', :'repl_user', :'monitor_user']) AS name
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) \gexec

-- The application: no superuser, no CREATEDB, CREATEROLE or REPLICATION. It owns its
-- database, and with it the public schema (owned by pg_database_owner since PostgreSQL
-- 15), so its migrations create and alter its tables.
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
              'NOBYPASSRLS PASSWORD %L', :'app_user', :'app_password') \gexec
-- No statistics: replication monitoring connects as the monitoring role
-- (PGREPLICA["MONITORING_DATABASES"]). An older version of this file granted pg_monitor.
SELECT format('REVOKE pg_monitor FROM %I', :'app_user')
WHERE pg_has_role(:'app_user', 'pg_monitor', 'MEMBER') \gexec
-- Streaming replication only: pg_hba.conf lets it open replication connections and no
-- ordinary session.
SELECT format('ALTER ROLE %I WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE '
              'NOBYPASSRLS PASSWORD %L', :'repl_user', :'repl_password') \gexec
-- pg_monitor only: without it pg_stat_replication and pg_stat_wal_receiver hide the
-- positions, lags and states that replication_status and the exporter report.
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
              'NOBYPASSRLS PASSWORD %L', :'monitor_user', :'monitor_password') \gexec
SELECT format('GRANT pg_monitor TO %I', :'monitor_user')
WHERE NOT pg_has_role(:'monitor_user', 'pg_monitor', 'MEMBER') \gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'app_db', :'app_user') \gexec
-- Only its owner and monitoring connect to the application's database.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'app_db') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'app_db', :'monitor_user') \gexec
