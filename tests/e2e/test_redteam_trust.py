"""Red-team suite, third part: what a second red team found on other surfaces (threats A29-A32), each closed as a
class: identity providers that could speak for any tenant (A29), data stored outside tables (A30), publications
(A32). Secret-bearing settings (A31) and a failing previous master-key provider need a cluster of their own: they
are in test_encryption.py (test_A31_*, test_a_failing_previous_key_provider_*).

Schema and fixtures: redteam.py (tenant A has orders 1, 2; tenant B has orders 1, 2, 3).
"""

import json
import subprocess
import uuid

import psycopg
import pytest

from conftest import AUD, HOST, ISS, PG, PORT, Keys
from redteam import (A, A_ORDERS, B, B_ORDERS, DB, NO_CONTEXT, attacker, begin_as, dsn, fails, owner,  # noqa: F401
                     redteam_db, rows, su)

SSO = "https://sso.customer.test"
C = uuid.UUID("c0c0c0c0-0000-4000-8000-00000000000c")
OUT_OF_SCOPE = ("28000", "token rejected: token issuer may not speak for this tenant: it is scoped to other tenants "
                         "(see tenant.issuer_tenant)")
RESERVED = ("28000", "token rejected: token issuer may not speak for this tenant: the tenant is reserved to the "
                     "issuers listed for it (see tenant.issuer_tenant)")


@pytest.fixture
def sso(su):
    """A customer's single-sign-on provider, trusted beside the platform's own issuer (ISS, unscoped)."""
    keys = Keys(suffix="-sso")
    su.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s, NULL, %s)", (SSO, json.dumps(keys.jwks()), AUD, [B]))
    try:
        yield keys
    finally:
        su.execute("SELECT tenant.untrust_issuer(%s)", (SSO,))


def sso_token(keys, tenant):
    return keys.mint(tenant, iss=SSO)


def authenticate(conn, token):
    return fails(conn, "SELECT tenant.authenticate(%s)", (token,))


# ---------------------------------------------------------------------------------------------------------------
# A29. Trust between identity providers: an issuer speaks only for the tenants it is scoped to


def test_A29_a_scoped_issuer_cannot_speak_for_another_tenant(sso, attacker):
    attacker.execute("BEGIN")
    assert authenticate(attacker, sso_token(sso, A)) == OUT_OF_SCOPE
    attacker.execute("ROLLBACK")
    attacker.execute("BEGIN")
    attacker.execute("SELECT tenant.authenticate(%s)", (sso_token(sso, B),))
    assert rows(attacker, "SELECT id, note FROM app.orders ORDER BY id") == B_ORDERS
    attacker.execute("COMMIT")


def test_A29_a_tenant_listed_for_an_issuer_is_reserved_to_it(sso, attacker, keys):
    # the platform's issuer is unscoped: it still speaks for A, but no longer for B, whose users log in through SSO
    attacker.execute("BEGIN")
    assert authenticate(attacker, keys.mint(B)) == RESERVED
    attacker.execute("ROLLBACK")
    begin_as(attacker, keys, A)
    assert rows(attacker, "SELECT id, note FROM app.orders ORDER BY id") == A_ORDERS
    attacker.execute("COMMIT")


def test_A29_a_refused_issuer_decrypts_nothing_either(sso, su, attacker, keys):
    attacker.execute("BEGIN")
    attacker.execute("SELECT tenant.authenticate(%s)", (sso_token(sso, B),))
    secret = rows(attacker, "SELECT tenant.encrypt('b-secret')")[0][0]
    attacker.execute("COMMIT")
    attacker.execute("BEGIN")
    assert authenticate(attacker, keys.mint(B)) == RESERVED
    assert fails(attacker, "SELECT tenant.decrypt(%s)", (secret,)) == NO_CONTEXT
    attacker.execute("ROLLBACK")


def test_A29_the_same_tenant_from_two_identity_providers_when_both_list_it(sso, su, attacker, keys):
    su.execute("SELECT tenant.scope_issuer(%s, %s)", (ISS, [A, B]))
    try:
        for token in (keys.mint(B), sso_token(sso, B)):
            attacker.execute("BEGIN")
            attacker.execute("SELECT tenant.authenticate(%s)", (token,))
            assert rows(attacker, "SELECT count(*) FROM app.orders") == [(3,)]
            attacker.execute("COMMIT")
        attacker.execute("BEGIN")
        assert authenticate(attacker, keys.mint(C)) == OUT_OF_SCOPE  # now scoped: C is not listed
        attacker.execute("ROLLBACK")
    finally:
        su.execute("SELECT tenant.scope_issuer(%s, NULL)", (ISS,))


def test_A29_a_scope_change_reaches_tokens_cached_in_other_backends(sso, su, attacker, keys):
    platform_a = keys.mint(A)
    sso_b = sso_token(sso, B)
    for token, tenant_rows in ((platform_a, 2), (sso_b, 3)):  # verified and cached in this backend
        attacker.execute("BEGIN")
        attacker.execute("SELECT tenant.authenticate(%s)", (token,))
        assert rows(attacker, "SELECT count(*) FROM app.orders") == [(tenant_rows,)]
        attacker.execute("COMMIT")
    # another backend narrows SSO to C and reserves A to SSO too, through the mapping table itself
    su.execute("SELECT tenant.scope_issuer(%s, %s)", (SSO, [C]))
    su.execute("INSERT INTO tenant.issuer_tenant VALUES (%s, %s)", (SSO, A))
    try:
        attacker.execute("BEGIN")
        assert authenticate(attacker, sso_b) == OUT_OF_SCOPE
        assert authenticate(attacker, platform_a) == RESERVED
        attacker.execute("ROLLBACK")
    finally:
        su.execute("SELECT tenant.scope_issuer(%s, %s)", (SSO, [B]))


def test_A29_scope_arguments_are_checked(sso, su):
    assert fails(su, "SELECT tenant.trust_issuer(%s, %s::jsonb, NULL, NULL, '{}')", (SSO, json.dumps(sso.jwks()))) \
        == ("22023", "tenants must list at least one tenant")
    assert fails(su, "SELECT tenant.scope_issuer('https://nobody.test', %s)", ([A],)) == (
        "22023", "issuer is not trusted")
    assert fails(su, "SELECT tenant.scope_issuer(%s, ARRAY[NULL]::uuid[])", (SSO,)) == (
        "22023", "tenants must not contain NULL")
    # re-trusting to rotate keys keeps the scope when tenants is not given
    su.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (SSO, json.dumps(sso.jwks()), AUD))
    assert rows(su, "SELECT tenant FROM tenant.issuer_tenant WHERE issuer = %s", (SSO,)) == [(B,)]


def test_A29_the_audit_warns_about_unscoped_issuers_beside_others(sso, su):
    assert [r[:3] for r in rows(su, "SELECT * FROM tenant.audit() WHERE check_name = 'unscoped_issuer'")] == [
        ("warning", "unscoped_issuer", ISS)]
    su.execute("SELECT tenant.scope_issuer(%s, %s)", (ISS, [A]))
    try:
        assert rows(su, "SELECT * FROM tenant.audit() WHERE check_name = 'unscoped_issuer'") == []
    finally:
        su.execute("SELECT tenant.scope_issuer(%s, NULL)", (ISS,))


def test_A29_scopes_survive_dump_and_restore(sso, su, tmp_path, keys):
    dump = tmp_path / "trust.dump"
    conn = ["-h", HOST, "-p", str(PORT), "-U", "postgres"]
    subprocess.run([f"/usr/lib/postgresql/{PG}/bin/pg_dump", *conn, "-Fc", "-f", str(dump), DB], check=True)
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS tg_trust_restored WITH (FORCE)")
        c.execute("CREATE DATABASE tg_trust_restored")
    out = subprocess.run([f"/usr/lib/postgresql/{PG}/bin/pg_restore", *conn, "--single-transaction", "--exit-on-error",
                          "-d", "tg_trust_restored", str(dump)], capture_output=True, text=True)
    try:
        assert out.returncode == 0, out.stderr
        with psycopg.connect(dsn(dbname="tg_trust_restored"), autocommit=True) as r:
            assert rows(r, "SELECT issuer, tenant FROM tenant.issuer_tenant") == [(SSO, B)]
        with psycopg.connect(dsn(user="rt_app", dbname="tg_trust_restored"), autocommit=True) as app:
            app.execute("BEGIN")
            assert authenticate(app, keys.mint(B)) == RESERVED
            app.execute("ROLLBACK")
    finally:
        with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
            c.execute("DROP DATABASE tg_trust_restored WITH (FORCE)")


# ---------------------------------------------------------------------------------------------------------------
# A30. Data outside tables: large objects are not tenant-scoped


LO_REFUSED = "function {} is refused: large objects are not tenant-scoped"


@pytest.mark.parametrize("query,function", [
    ("SELECT lo_from_bytea(0, 'a-secret')", "lo_from_bytea"),
    ("SELECT lo_create(0)", "lo_create"),
    ("SELECT lo_get(%s)", "lo_get"),
    ("SELECT lo_open(%s, 262144)", "lo_open"),
    ("SELECT lo_unlink(%s)", "lo_unlink"),
    ("SELECT lo_put(%s, 0, 'x')", "lo_put"),
])
def test_A30_large_objects_are_refused_to_the_app_role(su, attacker, keys, query, function):
    oid = rows(su, "SELECT lo_from_bytea(0, 'b-secret')")[0][0]
    su.execute("ALTER LARGE OBJECT %s OWNER TO rt_app" % oid)
    try:
        begin_as(attacker, keys, A)
        assert fails(attacker, query, (oid,) if "%s" in query else None) == ("42501", LO_REFUSED.format(function))
        attacker.execute("ROLLBACK")
    finally:
        su.execute("SELECT lo_unlink(%s)", (oid,))


def test_A30_large_objects_through_the_client_protocol_are_refused_too(su, tmp_path):
    """libpq's large-object API (psql's \\lo_import) calls lo_creat, lo_open and lowrite over the fast-path protocol."""
    source = tmp_path / "upload.bin"
    source.write_bytes(b"a-secret")
    out = subprocess.run(["psql", f"host={HOST} port={PORT} user=rt_app dbname={DB}", "-c",
                          f"\\lo_import {source}"], capture_output=True, text=True)
    assert out.returncode != 0 and "large objects are not tenant-scoped" in out.stderr, out.stderr
    assert rows(su, "SELECT count(*) FROM pg_largeobject_metadata") == [(0,)]


def test_A30_negative_control_with_large_objects_allowed_another_tenant_reads_them(su, keys):
    oid = rows(su, "SELECT lo_from_bytea(0, 'b-secret')")[0][0]
    su.execute("GRANT SELECT ON LARGE OBJECT %s TO rt_app" % oid)
    try:
        with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
            c.execute("SET tenant_guard.allow_large_objects = on")
            c.execute("SET ROLE rt_app")
            begin_as(c, keys, A)
            assert rows(c, "SELECT lo_get(%s)", (oid,)) == [(b"b-secret",)]  # what the default refuses
            c.execute("ROLLBACK")
    finally:
        su.execute("SELECT lo_unlink(%s)", (oid,))


def test_A30_the_audit_flags_large_object_columns_in_protected_tables(su):
    su.execute("ALTER TABLE app.orders ADD COLUMN attachment oid")
    try:
        assert [r[:3] for r in rows(su, "SELECT * FROM tenant.audit() WHERE check_name = 'large_object_column'")] == [
            ("warning", "large_object_column", "attachment on app.orders")]
    finally:
        su.execute("ALTER TABLE app.orders DROP COLUMN attachment")


# ---------------------------------------------------------------------------------------------------------------
# A32. Logical decoding: publications of protected tables


def test_A32_the_owner_cannot_publish_a_protected_table(su, owner):
    su.execute(f"GRANT CREATE ON DATABASE {DB} TO rt_owner")
    try:
        refused = ("42501", "publishing table app.orders is refused: it is protected by tenant_guard")
        assert fails(owner, "CREATE PUBLICATION rt_pub FOR TABLE app.orders") == refused
        assert fails(owner, "CREATE PUBLICATION rt_pub FOR TABLE app.countries, app.orders WHERE (note <> '')") == \
            refused
        owner.execute("CREATE PUBLICATION rt_pub FOR TABLE app.countries")
        assert fails(owner, "ALTER PUBLICATION rt_pub ADD TABLE app.orders") == refused
        assert fails(owner, "ALTER PUBLICATION rt_pub SET TABLE app.orders") == refused
        assert rows(su, "SELECT tablename FROM pg_publication_tables WHERE pubname = 'rt_pub'") == [("countries",)]
    finally:
        su.execute("DROP PUBLICATION IF EXISTS rt_pub")
        su.execute(f"REVOKE CREATE ON DATABASE {DB} FROM rt_owner")


def test_A32_the_audit_reports_publications_and_replication_roles(su):
    su.execute("CREATE PUBLICATION rt_all FOR TABLE app.orders")
    su.execute(f"CREATE PUBLICATION rt_one FOR TABLE app.customers WHERE (tenant_id = '{B}')")
    su.execute("CREATE ROLE rt_replicator LOGIN REPLICATION")
    try:
        found = [r[:3] for r in rows(su, "SELECT * FROM tenant.audit() WHERE check_name IN "
                                         "('published_table', 'unconfined_login_role')")]
        assert ("critical", "published_table", "app.orders in publication rt_all") in found
        assert ("warning", "published_table", "app.customers in publication rt_one") in found
        assert ("warning", "unconfined_login_role", "rt_replicator") in found
    finally:
        su.execute("DROP PUBLICATION rt_all, rt_one")
        su.execute("DROP ROLE rt_replicator")
