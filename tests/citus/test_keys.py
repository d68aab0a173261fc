"""Issuers and data keys are cluster-wide: changed on the coordinator, on every node in one transaction (all or
none); a worker never creates or changes them by itself; tenant.decrypt works wherever Citus runs it."""

import json
import os
import subprocess
import uuid

import pytest

from conftest import (ADMIN, BASE, JWKS, TENANT_A, TENANT_B, WORKERS, app_conn, connect, make_table, mint, rows,
                      sqlstate)

OTHER_ISS = "https://other.citus.test"


def on_every_worker(sql, params=None):
    out = []
    for port in WORKERS:
        with connect(port) as w:
            out.append(rows(w, sql, params))
    return out


def digest(conn, what):
    return rows(conn, "SELECT tenant._citus_digest(%s)", (what,))[0][0]


def test_trust_and_untrust_reach_every_worker(admin):
    admin.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, 'aud-x')", (OTHER_ISS, json.dumps(JWKS)))
    assert on_every_worker("SELECT issuer, audience FROM tenant.issuers WHERE issuer = %s", (OTHER_ISS,)) == \
        [[(OTHER_ISS, "aud-x")]] * 2
    admin.execute("SELECT tenant.scope_issuer(%s, ARRAY[%s]::uuid[])", (OTHER_ISS, TENANT_B))
    assert on_every_worker("SELECT scoped_tenants FROM tenant.issuers WHERE issuer = %s", (OTHER_ISS,)) == [[(1,)]] * 2
    admin.execute("SELECT tenant.untrust_issuer(%s)", (OTHER_ISS,))
    assert on_every_worker("SELECT count(*) FROM tenant.issuers WHERE issuer = %s", (OTHER_ISS,)) == [[(0,)]] * 2
    assert all(digest(connect(p), "issuers") == digest(admin, "issuers") for p in WORKERS)


def test_administrators_rows_in_issuer_tenant_reach_every_worker(admin):
    admin.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, 'aud-y')", (OTHER_ISS, json.dumps(JWKS)))
    with connect(user=ADMIN) as a:
        a.execute("INSERT INTO tenant.issuer_tenant VALUES (%s, %s)", (OTHER_ISS, TENANT_A))
    assert on_every_worker("SELECT tenant FROM tenant.issuer_tenant WHERE issuer = %s", (OTHER_ISS,)) == \
        [[(TENANT_A,)]] * 2
    admin.execute("SELECT tenant.untrust_issuer(%s)", (OTHER_ISS,))


def test_workers_refuse_local_changes():
    with connect(WORKERS[0]) as w:
        assert sqlstate(w, "SELECT tenant.trust_issuer('https://rogue.test', %s::jsonb)", (json.dumps(JWKS),)) == "0A000"
        assert sqlstate(w, "SELECT tenant.create_key(%s)", (uuid.uuid4(),)) == "0A000"
        assert sqlstate(w, "SELECT tenant.rotate_key(%s)", (TENANT_A,)) == "0A000"
        assert sqlstate(w, "SELECT tenant.shred(%s)", (TENANT_A,)) == "0A000"
        assert sqlstate(w, "SELECT tenant.rewrap_keys()") == "0A000"
        assert sqlstate(w, "DELETE FROM tenant.issuer_tenant") == "0A000"
    with connect() as coordinator:   # the functions that apply the coordinator's changes run on workers only
        assert sqlstate(coordinator, "SELECT tenant._replica_keys(NULL, '[]')") == "0A000"
    with app_conn(WORKERS[0]) as app:   # and only for superusers
        assert sqlstate(app, "SELECT tenant._replica_keys(NULL, '[]')") == "42501"


def test_a_worker_never_creates_a_key():
    tenant = uuid.uuid4()
    with app_conn(WORKERS[0]) as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
        assert sqlstate(c, "SELECT tenant.encrypt('x')") == "55000"
    with connect(WORKERS[0]) as w:
        assert rows(w, "SELECT count(*) FROM tenant.keys WHERE tenant = %s", (tenant,)) == [(0,)]


@pytest.fixture(scope="module")
def secrets(cluster):
    with connect(user="tg_owner") as owner:
        make_table(owner, "key_orders")
    for tenant, text in ((TENANT_A, "alpha"), (TENANT_B, "bravo")):
        with app_conn() as c, c.transaction():
            c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
            c.execute("INSERT INTO key_orders (item, secret) VALUES (%s, tenant.encrypt(%s))", (text, text))
    return "key_orders"


def test_keys_are_the_same_on_every_node(admin, secrets):
    assert on_every_worker("SELECT count(*) FROM tenant.keys WHERE tenant IN (%s, %s) AND state = 'active'",
                           (TENANT_A, TENANT_B)) == [[(2,)]] * 2
    assert all(digest(connect(p), "keys") == digest(admin, "keys") for p in WORKERS)


def test_decrypt_in_a_distributed_query(secrets):
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        assert rows(c, f"SELECT tenant.decrypt(secret) FROM {secrets}") == [("alpha",)]
        assert rows(c, f"SELECT count(*) FROM {secrets} WHERE tenant.decrypt(secret) = 'alpha'") == [(1,)]


def test_rotate_reaches_every_node(admin, secrets):
    version = rows(admin, "SELECT tenant.rotate_key(%s)", (TENANT_B,))[0][0]
    assert on_every_worker("SELECT max(version) FROM tenant.keys WHERE tenant = %s AND state = 'active'",
                           (TENANT_B,)) == [[(version,)]] * 2
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        assert rows(c, f"SELECT tenant.decrypt(secret) FROM {secrets}") == [("bravo",)]


def test_shred_leaves_no_node_able_to_decrypt(admin, secrets):
    tenant = uuid.UUID("dddddddd-4444-4444-8444-dddddddddddd")
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
        c.execute(f"INSERT INTO {secrets} (item, secret) VALUES ('d', tenant.encrypt('delta'))")
    assert rows(admin, "SELECT tenant.shred(%s)", (tenant,)) == [(1,)]
    assert on_every_worker("SELECT state FROM tenant.keys WHERE tenant = %s", (tenant,)) == [[("destroyed",)]] * 2
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
        assert sqlstate(c, f"SELECT tenant.decrypt(secret) FROM {secrets}") == "55000"
    for port in WORKERS:
        with app_conn(port) as c, c.transaction():
            c.execute("SELECT tenant.authenticate(%s)", (mint(tenant),))
            assert sqlstate(c, "SELECT tenant.encrypt('again')") == "55000"


def test_all_or_none_when_a_worker_is_down(admin):
    """A change that cannot reach every worker reaches none: the coordinator's transaction fails."""
    tenant = uuid.uuid4()
    stop = [f"/usr/lib/postgresql/{os.environ.get('PG', '15')}/bin/pg_ctl", "-D", f"{BASE}.worker2", "-m", "immediate", "-w", "stop"]
    start = [f"/usr/lib/postgresql/{os.environ.get('PG', '15')}/bin/pg_ctl", "-D", f"{BASE}.worker2", "-l", f"{BASE}.worker2/server.log",
             "-w", "start"]
    runas = ["runuser", "-u", "postgres", "--"]
    subprocess.run(runas + stop, check=True, capture_output=True)
    try:
        assert sqlstate(admin, "SELECT tenant.create_key(%s)", (tenant,)) is not None
        assert sqlstate(admin, "SELECT tenant.trust_issuer('https://down.test', %s::jsonb)", (json.dumps(JWKS),)) \
            is not None
    finally:
        subprocess.run(runas + start, check=True, capture_output=True)
    assert rows(admin, "SELECT count(*) FROM tenant.keys WHERE tenant = %s", (tenant,)) == [(0,)]
    assert on_every_worker("SELECT count(*) FROM tenant.keys WHERE tenant = %s", (tenant,)) == [[(0,)]] * 2
    assert on_every_worker("SELECT count(*) FROM tenant.issuers WHERE issuer = 'https://down.test'") == [[(0,)]] * 2


def test_audit_reports_a_worker_whose_issuers_differ(admin):
    with connect(WORKERS[1]) as w:
        w.execute("BEGIN")   # a superuser going around the triggers (they fire ALWAYS, whatever the replication role)
        w.execute("ALTER TABLE tenant.trusted_issuer DISABLE TRIGGER issuers_changed")
        w.execute("ALTER TABLE tenant.issuer_tenant DISABLE TRIGGER issuer_scope_changed")
        w.execute("DELETE FROM tenant.trusted_issuer")
        w.execute("ALTER TABLE tenant.trusted_issuer ENABLE ALWAYS TRIGGER issuers_changed")
        w.execute("ALTER TABLE tenant.issuer_tenant ENABLE ALWAYS TRIGGER issuer_scope_changed")
        w.execute("COMMIT")
    found = [r for r in rows(admin, "SELECT severity, check_name, object FROM tenant.audit()")
             if r[1] == "citus_issuers_differ"]
    assert found == [("critical", "citus_issuers_differ", f"127.0.0.1:{WORKERS[1]}")]
    # the fix the audit names: trust the issuer again on the coordinator
    admin.execute("SELECT tenant.trust_issuer(issuer, jwks, audience, tenant_claim) FROM tenant.trusted_issuer")
    assert [r for r in rows(admin, "SELECT check_name FROM tenant.audit()") if r[0].startswith("citus_")] == []


def test_revocations_reach_every_worker_and_the_workers_refuse_the_tokens(admin):
    """revoke_token, revoke_subject, suspend_tenant on the coordinator: on every node in its transaction, so a worker
    that verifies the forwarded token refuses it too; a worker takes no revocation of its own."""
    tenant = uuid.uuid4()
    try:
        admin.execute("SELECT tenant.revoke_token('citus-jti')")
        admin.execute("SELECT tenant.revoke_subject('https://issuer.citus.test', 'citus-sub')")
        admin.execute("SELECT tenant.suspend_tenant(%s)", (tenant,))
        assert on_every_worker("SELECT kind, jti, subject, tenant FROM tenant.revocations ORDER BY kind") == \
            [[("subject", None, "citus-sub", None), ("tenant", None, None, tenant), ("token", "citus-jti", None, None)]] * 2
        for port in WORKERS:
            with app_conn(port) as c:
                assert sqlstate(c, "SELECT tenant.authenticate(%s)", (mint(TENANT_A, jti="citus-jti"),)) == "28000"
                assert sqlstate(c, "SELECT tenant.authenticate(%s)", (mint(tenant),)) == "28000"
                assert sqlstate(c, "SELECT tenant.authenticate(%s)", (mint(TENANT_A),)) is None
        with connect(WORKERS[0]) as w:
            assert sqlstate(w, "SELECT tenant.revoke_token('w')") == "0A000"
            assert sqlstate(w, "SELECT tenant.resume_tenant(%s)", (tenant,)) == "0A000"
        # lifted on the coordinator: lifted everywhere
        admin.execute("SELECT tenant.resume_tenant(%s)", (tenant,))
        for port in WORKERS:
            with app_conn(port) as c:
                assert sqlstate(c, "SELECT tenant.authenticate(%s)", (mint(tenant),)) is None
    finally:
        admin.execute("DELETE FROM tenant.revoked_token; DELETE FROM tenant.revoked_subject; "
                      "DELETE FROM tenant.suspended_tenant")
    assert on_every_worker("SELECT count(*) FROM tenant.revocations") == [[(0,)]] * 2
