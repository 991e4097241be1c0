"""The servers run what compose mounts, and it holds: TLS everywhere (replication too),
SCRAM passwords and nothing else, and a role per job with only what the job needs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from django_pgreplica.testing.cluster import (
    APP_USER,
    MONITOR_USER,
    REPLICATION_USER,
    SECURE_PGCONF_DIR,
    SUPERUSER,
    Cluster,
    ClusterError,
)

NODES = ("primary", "replica1", "replica2")


def connect(cluster: Cluster, node: str, **params: Any) -> psycopg.Connection[Any]:
    """A connection as the given role (default: the superuser, with TLS and its password)."""
    options = {
        "host": "127.0.0.1",
        "port": cluster.node(node).port,
        "dbname": "postgres",
        "connect_timeout": 3,
        "autocommit": True,
        **cluster.secure_files.connect_kwargs(params.pop("user", SUPERUSER)),
        **params,
    }
    return psycopg.connect(**options)


def refused(cluster: Cluster, node: str, **params: Any) -> str:
    """The server's reason for refusing a connection (fails when it is accepted)."""
    with pytest.raises(psycopg.OperationalError) as raised:
        connect(cluster, node, **params).close()
    return str(raised.value)


def test_replication_streams_over_tls_and_keeps_no_password(cluster: Cluster) -> None:
    streams = cluster.execute(
        "primary",
        "SELECT r.application_name, r.state, r.usename, s.ssl, s.version "
        "FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) ORDER BY 1",
    )
    assert [(name, state, user, ssl) for name, state, user, ssl, _ in streams] == [
        ("replica1", "streaming", REPLICATION_USER, True),
        ("replica2", "streaming", REPLICATION_USER, True),
    ]
    assert all(version.startswith("TLSv1.") for *_, version in streams)
    password = cluster.secure_files.passwords()[REPLICATION_USER]
    for node in ("replica1", "replica2"):
        (conninfo,) = cluster.execute(node, "SELECT conninfo FROM pg_stat_wal_receiver")[0]
        assert "sslmode=verify-full" in conninfo and "passfile=" in conninfo, conninfo
        auto_conf = (cluster.node(node).datadir / "postgresql.auto.conf").read_text()
        assert "passfile=" in auto_conf and password not in auto_conf


def test_every_server_runs_the_secure_files(cluster: Cluster) -> None:
    """TLS and SCRAM come from secure/security.conf, the rest from the shared dev file,
    and the rules in force are secure/pg_hba.conf's, line for line."""
    hba = [
        line.split()
        for line in (SECURE_PGCONF_DIR / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for node in NODES:
        role = "primary" if node == "primary" else "replica"
        found = dict(
            cluster.execute(
                node,
                "SELECT name, setting || ' ' || sourcefile FROM pg_settings WHERE name = ANY(%s)",
                [["ssl", "password_encryption", "wal_level", "hot_standby_feedback"]],
            )
        )
        datadir = cluster.node(node).datadir
        assert found["ssl"] == f"on {datadir}/pgreplica/secure/security.conf"
        assert found["password_encryption"].startswith("scram-sha-256 ")
        assert found["wal_level"] == f"replica {datadir}/pgreplica/primary.conf"
        shared = "replica.conf" if role == "replica" else "primary.conf"
        assert found["hot_standby_feedback"] == f"on {datadir}/pgreplica/{shared}"
        rules = cluster.execute(
            node,
            "SELECT type, database, user_name, address, auth_method, error "
            "FROM pg_hba_file_rules ORDER BY line_number",
        )
        assert [row[5] for row in rules] == [None] * len(hba)
        assert [[t, *db, *user, *([a] if a else []), m] for t, db, user, a, m, _ in rules] == hba
        assert not any(method == "trust" for *_, method, _ in rules)


@pytest.mark.parametrize("node", NODES)
def test_plain_text_missing_or_wrong_passwords_are_refused(cluster: Cluster, node: str) -> None:
    assert "no encryption" in refused(cluster, node, sslmode="disable")
    assert "password authentication failed" in refused(cluster, node, password="not-it")
    assert "no password supplied" in refused(cluster, node, password="")
    with connect(cluster, node) as conn:  # the control: TLS and the right password
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()


def test_each_role_may_do_its_job_only(cluster: Cluster) -> None:
    # Only the replication role streams WAL, and it opens no ordinary session.
    for user in (APP_USER, MONITOR_USER):
        reason = refused(cluster, "primary", user=user, dbname="replication", replication="true")
        assert "no pg_hba.conf entry for replication connection" in reason, reason
    reason = refused(cluster, "primary", user=REPLICATION_USER, dbname=cluster.dbname)
    assert "pg_hba.conf rejects connection" in reason, reason
    with connect(cluster, "primary", user=REPLICATION_USER, replication="true") as conn:
        assert conn.execute("IDENTIFY_SYSTEM").fetchone()
    # Monitoring sees replication state but no application data, and writes nothing.
    with connect(cluster, "primary", user=MONITOR_USER, dbname=cluster.dbname) as conn:
        states = conn.execute("SELECT state, replay_lag IS NOT NULL FROM pg_stat_replication")
        assert {state for state, _ in states} == {"streaming"}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM shop_product")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE monitor_was_here (id int)")


def test_roles_have_least_privilege(cluster: Cluster) -> None:
    roles = {
        name: rest
        for name, *rest in cluster.execute(
            "primary",
            "SELECT rolname, rolsuper, rolreplication, rolcreatedb, rolcreaterole, "
            "rolbypassrls, rolpassword LIKE 'SCRAM-SHA-256$%%', "
            "ARRAY(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid "
            "      WHERE m.member = a.oid ORDER BY 1) "
            "FROM pg_authid a WHERE rolname = ANY(%s)",
            [[SUPERUSER, APP_USER, REPLICATION_USER, MONITOR_USER]],
        )
    }
    #        super  repl   createdb createrole bypassrls scram  member of
    assert roles[APP_USER] == [False, False, False, False, False, True, []]
    assert roles[REPLICATION_USER] == [False, True, False, False, False, True, []]
    assert roles[MONITOR_USER] == [False, False, False, False, False, True, ["pg_monitor"]]
    assert roles[SUPERUSER][5] is True  # even the superuser's password is a SCRAM verifier
    # The app owns its database and, through pg_database_owner, its public schema.
    owner, schema_owner, connect_roles = cluster.execute(
        "primary",
        "SELECT pg_get_userbyid(datdba), "
        "(SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'), "
        "ARRAY(SELECT r.rolname FROM pg_roles r WHERE has_database_privilege(r.oid, "
        "      d.oid, 'CONNECT') AND NOT r.rolsuper AND r.rolname !~ '^pg_' ORDER BY 1) "
        "FROM pg_database d WHERE datname = current_database()",
    )[0]
    assert (owner, schema_owner) == (APP_USER, "pg_database_owner")
    assert connect_roles == sorted([APP_USER, MONITOR_USER])


def test_verify_full_checks_the_name_and_the_issuer(cluster: Cluster, tmp_path: Path) -> None:
    """What Django's verify-full buys: a certificate for another name, or from another CA,
    is refused before any password is sent."""
    reason = refused(cluster, "primary", host="not-the-primary.example", hostaddr="127.0.0.1")
    assert "does not match host name" in reason, reason
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(tmp_path / "other-ca.key"), "-subj", "/CN=someone else",
         "-days", "1", "-out", str(other_ca)],
        check=True, capture_output=True,
    )  # fmt: skip
    reason = refused(cluster, "primary", sslrootcert=str(other_ca))
    assert re.search(r"certificate verify failed|self[- ]signed", reason), reason


def test_make_certs_keeps_good_certificates_and_refuses_wrong_ones(
    cluster: Cluster, tmp_path: Path
) -> None:
    """What a mounted certificate goes through at each start of compose's certs step."""
    tls = tmp_path / "tls"
    for name in ("primary", "replica1"):
        (tls / name).mkdir(parents=True)
        for file in ("server.crt", "server.key", "ca.crt"):
            (tls / name / file).write_bytes(
                (cluster.secure_files.server_dir(name) / file).read_bytes()
            )
    script = str(SECURE_PGCONF_DIR / "make-certs.sh")
    before = (tls / "primary" / "server.crt").read_bytes()
    kept = subprocess.run(["bash", script, str(tls), "primary", "replica1"], capture_output=True)
    assert kept.returncode == 0, kept.stderr
    assert (tls / "primary" / "server.crt").read_bytes() == before  # checked, not remade
    assert not (tls / "ca").exists()  # no CA needed: nothing was signed
    (tls / "primary" / "server.crt").write_bytes((tls / "replica1" / "server.crt").read_bytes())
    wrong = subprocess.run(["bash", script, str(tls), "primary"], capture_output=True, text=True)
    assert wrong.returncode == 1
    assert "is not signed by" in wrong.stderr and "for the name primary" in wrong.stderr


def test_a_cluster_keeps_the_security_it_was_made_with(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text('{"port": 1, "replicas": 1, "secure": false}')
    with pytest.raises(ClusterError, match="made without --secure: run `down` first"):
        Cluster(tmp_path, secure=True)
    assert Cluster(cluster.dir).secure  # the saved choice, without asking again
