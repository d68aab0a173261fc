"""The upgrade from 0.1.0 (commit 5fae071, built by tests/upgrade/run.sh) to this version, as a DBA does it: a server
running 0.1.0 with issuers, protected tables, partitions, data keys and ciphertexts; the new library installed and
the server restarted; ALTER EXTENSION tenant_guard UPDATE. Then: nothing lost, everything still enforced, and every
object the extension owns exactly as a fresh install of this version makes it.

Paths come from run.sh: TG_OLD_PKG and TG_NEW_PKG (cargo pgrx package output), TG_SERVER (a private copy of the
PostgreSQL installation the test puts each version's files into)."""

import os
import shutil
import subprocess
import time
import uuid

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

PG = os.environ.get("PG", "15")
OLD_PKG, NEW_PKG, SERVER = os.environ["TG_OLD_PKG"], os.environ["TG_NEW_PKG"], os.environ["TG_SERVER"]
DATA, PORT = "/tmp/tenant_guard-upgrade", 54333
CLUSTER = os.path.join(os.path.dirname(__file__), "..", "support", "cluster.sh")
BIN = f"{SERVER}/usr/lib/postgresql/{PG}/bin"
ISS, AUD = "https://issuer.upgrade.test", "orders-api"
A = uuid.UUID("aaaaaaaa-0000-4000-8000-00000000000a")
B = uuid.UUID("bbbbbbbb-0000-4000-8000-00000000000b")
KEY = ed25519.Ed25519PrivateKey.generate()
JWKS = '{"keys":[' + OKPAlgorithm.to_jwk(KEY.public_key())[:-1] + ',"kid":"k1"}]}'
SECRETS = {A: ["a-secret-1", "a-secret-2"], B: ["b-secret-1"]}


def token(tenant):
    now = int(time.time())
    return jwt.encode({"iss": ISS, "aud": AUD, "iat": now, "exp": now + 600, "tenant_id": str(tenant), "sub": "u"},
                      KEY, algorithm="EdDSA", headers={"kid": "k1"})


def install(pkg):
    """Copies a package's library and SQL files into the private server tree."""
    for sub in (f"usr/lib/postgresql/{PG}/lib", f"usr/share/postgresql/{PG}/extension"):
        src = os.path.join(pkg, sub)
        for name in os.listdir(src):
            if name.startswith("tenant_guard"):
                shutil.copy2(os.path.join(src, name), os.path.join(SERVER, sub, name))


def cluster(*args):
    env = {**os.environ, "PG_BIN": BIN}
    subprocess.run([CLUSTER, *args], check=True, env=env, stdout=subprocess.DEVNULL)


def connect(db="postgres", user="postgres"):
    return psycopg.connect(host="127.0.0.1", port=PORT, dbname=db, user=user, autocommit=True)


def rows(conn, sql, params=None):
    return conn.execute(sql, params).fetchall()


# every object the extension owns, as text: what it is and everything that defines it
CATALOG = """
WITH members AS (
    SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'tenant_guard' AND d.deptype = 'e')
SELECT pg_describe_object(m.classid, m.objid, 0) || E'\\n' ||
       CASE m.classid
       WHEN 'pg_proc'::regclass THEN
           pg_get_functiondef(m.objid)
           || ' acl=' || COALESCE((SELECT array(SELECT unnest(proacl)::text ORDER BY 1)::text FROM pg_proc
                                    WHERE oid = m.objid), '-')
       WHEN 'pg_class'::regclass THEN (
           SELECT c.relkind::text || ' acl=' || COALESCE(array(SELECT unnest(c.relacl)::text ORDER BY 1)::text, '-')
                  || ' view=' || COALESCE(pg_get_viewdef(c.oid), '-')
                  || ' columns=' || COALESCE((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                                  || ' ' || a.attnotnull || ' '
                                                  || COALESCE(pg_get_expr(ad.adbin, ad.adrelid), '')
                                                  || ' ' || COALESCE(col_description(c.oid, a.attnum), ''),
                                                  ', ' ORDER BY a.attnum)
                                          FROM pg_attribute a
                                          LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '-')
                  || ' constraints=' || COALESCE((SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ', '
                                                                    ORDER BY conname)
                                                    FROM pg_constraint WHERE conrelid = c.oid), '-')
                  || ' indexes=' || COALESCE((SELECT string_agg(pg_get_indexdef(indexrelid), ', ' ORDER BY 1)
                                                FROM pg_index WHERE indrelid = c.oid), '-')
                  || ' triggers=' || COALESCE((SELECT string_agg(pg_get_triggerdef(oid), ', ' ORDER BY tgname)
                                                 FROM pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal), '-')
             FROM pg_class c WHERE c.oid = m.objid)
       ELSE '' END
       || ' comment=' || COALESCE(obj_description(m.objid, (SELECT relname FROM pg_class WHERE oid = m.classid)), '-')
  FROM members m
UNION ALL
SELECT 'extension ' || extversion
       || ' config=' || COALESCE((SELECT string_agg(c::regclass::text || ' ' || w, ', ' ORDER BY c::regclass::text)
                                   FROM unnest(extconfig, extcondition) u(c, w)), '-')
       || ' schema=' || extnamespace::regnamespace
       || ' schema acl=' || (SELECT array(SELECT unnest(nspacl)::text ORDER BY 1)::text FROM pg_namespace
                              WHERE oid = extnamespace)
       || ' comment=' || COALESCE(obj_description(extnamespace, 'pg_namespace'), '-')
  FROM pg_extension WHERE extname = 'tenant_guard'
UNION ALL
SELECT 'event trigger ' || evtname || ' ' || evtevent FROM pg_event_trigger
ORDER BY 1
"""


def setup_on_0_1_0(su):
    """What a 0.1.0 database holds: issuers, a labelled schema with a plain and a partitioned table, rows and
    ciphertexts of two tenants, a rotated key."""
    su.execute("CREATE EXTENSION tenant_guard")
    assert rows(su, "SELECT extversion FROM pg_extension WHERE extname = 'tenant_guard'") == [("0.1.0",)]
    su.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ISS, JWKS, AUD))
    for role in ("up_owner", "up_app"):
        su.execute(f"DROP ROLE IF EXISTS {role}")
    su.execute("CREATE ROLE up_owner NOLOGIN")
    su.execute("CREATE ROLE up_app LOGIN")
    su.execute("CREATE SCHEMA app AUTHORIZATION up_owner")
    su.execute("GRANT USAGE ON SCHEMA app TO up_app")
    su.execute("SECURITY LABEL FOR tenant_guard ON SCHEMA app IS 'tenant_scoped'")
    su.execute("SET ROLE up_owner")
    su.execute("CREATE TABLE app.orders (tenant_id uuid, id int, note text, secret bytea, PRIMARY KEY (tenant_id, id))")
    su.execute("CREATE TABLE app.events (tenant_id uuid, id int, body text) PARTITION BY RANGE (id)")
    su.execute("CREATE TABLE app.events_1 PARTITION OF app.events FOR VALUES FROM (0) TO (100)")
    su.execute("CREATE TABLE app.events_2 PARTITION OF app.events FOR VALUES FROM (100) TO (200)")
    su.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON app.orders, app.events TO up_app")
    su.execute("RESET ROLE")
    with connect("up", "up_app") as app:
        for tenant, secrets in SECRETS.items():
            with app.transaction():
                app.execute("SELECT tenant.authenticate(%s)", (token(tenant),))
                for i, s in enumerate(secrets, 1):
                    app.execute("INSERT INTO app.orders (id, note, secret) VALUES (%s, %s, "
                                "tenant.encrypt(%s, 'app.orders.secret'))", (i, f"{tenant}-{i}", s))
                    app.execute("INSERT INTO app.events (id, body) VALUES (%s, %s)", (i * 60, f"{tenant}-e{i}"))
    su.execute("SELECT tenant.rotate_key(%s)", (A,))   # A's first ciphertexts are under the retired version 1


@pytest.fixture(scope="module")
def upgraded():
    cluster("stop", DATA)
    install(OLD_PKG)
    cluster("start", DATA, str(PORT))
    try:
        with connect() as su:
            su.execute("DROP DATABASE IF EXISTS up")
            su.execute("DROP DATABASE IF EXISTS fresh")
            su.execute("CREATE DATABASE up")
        with connect("up") as su:
            setup_on_0_1_0(su)
            before = {
                "orders": rows(su, "SELECT tenant_id, id, note, secret FROM app.orders ORDER BY 1, 2"),
                "events": rows(su, "SELECT tableoid::regclass::text, tenant_id, id, body FROM app.events ORDER BY 1, 3"),
                "labels": rows(su, "SELECT objoid::regclass::text, label FROM pg_seclabel WHERE provider = 'tenant_guard' "
                                   "AND classoid = 'pg_class'::regclass ORDER BY 1"),
                "policies": rows(su, "SELECT tablename::text, policyname::text, permissive, qual, with_check "
                                     "FROM pg_policies WHERE schemaname = 'app' ORDER BY 1, 2"),
                "issuers": rows(su, "SELECT issuer, jwks::text, audience FROM tenant.trusted_issuer"),
                "keys": rows(su, "SELECT tenant, version, state, wrapped FROM tenant.data_key ORDER BY 1, 2"),
            }
        # the new library and scripts, then the restart a new preloaded library needs
        subprocess.run(["runuser", "-u", "postgres", "--", f"{BIN}/pg_ctl", "-D", DATA, "-m", "fast", "-w", "stop"],
                       check=True, stdout=subprocess.DEVNULL)
        install(NEW_PKG)
        cluster("start", DATA, str(PORT))
        with connect("up") as su:
            su.execute("ALTER EXTENSION tenant_guard UPDATE")
        yield before
    finally:
        cluster("stop", DATA)


def test_the_update_reaches_this_version(upgraded):
    with connect("up") as su:
        assert rows(su, "SELECT extversion FROM pg_extension WHERE extname = 'tenant_guard'") == [("0.2.0",)]


def test_nothing_is_lost(upgraded):
    with connect("up") as su:
        assert rows(su, "SELECT tenant_id, id, note, secret FROM app.orders ORDER BY 1, 2") == upgraded["orders"]
        assert rows(su, "SELECT tableoid::regclass::text, tenant_id, id, body FROM app.events ORDER BY 1, 3"
                    ) == upgraded["events"]
        assert rows(su, "SELECT objoid::regclass::text, label FROM pg_seclabel WHERE provider = 'tenant_guard' "
                        "AND classoid = 'pg_class'::regclass ORDER BY 1") == upgraded["labels"]
        assert rows(su, "SELECT tablename::text, policyname::text, permissive, qual, with_check FROM pg_policies "
                        "WHERE schemaname = 'app' ORDER BY 1, 2") == upgraded["policies"]
        assert rows(su, "SELECT issuer, jwks::text, audience FROM tenant.trusted_issuer") == upgraded["issuers"]
        assert rows(su, "SELECT tenant, version, state, wrapped FROM tenant.data_key ORDER BY 1, 2") == upgraded["keys"]
        assert len(upgraded["keys"]) == 3 and len(upgraded["orders"]) == 3 and len(upgraded["labels"]) == 4


def test_old_ciphertexts_decrypt_and_new_ones_use_the_current_key(upgraded):
    with connect("up", "up_app") as app:
        for tenant, secrets in SECRETS.items():
            with app.transaction():
                app.execute("SELECT tenant.authenticate(%s)", (token(tenant),))
                assert rows(app, "SELECT tenant.decrypt(secret, 'app.orders.secret') FROM app.orders ORDER BY id"
                            ) == [(s,) for s in secrets]
        with app.transaction():
            app.execute("SELECT tenant.authenticate(%s)", (token(A),))
            assert rows(app, "SELECT tenant.key_version(tenant.encrypt('new', 'c'))") == [(2,)]


def test_everything_is_still_enforced(upgraded):
    with connect("up", "up_app") as app:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            app.execute("SELECT count(*) FROM app.orders")
        assert e.value.diag.message_primary == "no tenant context"
        with app.transaction():
            app.execute("SELECT tenant.authenticate(%s)", (token(B),))
            assert rows(app, "SELECT note FROM app.orders") == [(f"{B}-1",)]
            assert rows(app, "SELECT body FROM app.events") == [(f"{B}-e1",)]
    with connect("up") as su:
        assert rows(su, "SELECT table_name::text, policy_intact FROM tenant.scoped_tables ORDER BY 1") == [
            ("app.events", True), ("app.events_1", True), ("app.events_2", True), ("app.orders", True)]
        su.execute("SET ROLE up_owner")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            su.execute("ALTER TABLE app.orders DISABLE ROW LEVEL SECURITY")
        assert e.value.diag.message_primary == (
            "DISABLE ROW LEVEL SECURITY is refused: table app.orders is protected by tenant_guard")
        # 0.2.0's own behaviour: a table created later in the labelled schema is protected when it is created
        su.execute("CREATE TABLE app.later (tenant_id uuid, id int)")
        su.execute("RESET ROLE")
        assert rows(su, "SELECT policy_intact FROM tenant.scoped_tables WHERE table_name = 'app.later'::regclass"
                    ) == [(True,)]
        assert [r for r in rows(su, "SELECT severity, check_name FROM tenant.audit()") if r[0] == "critical"] == []


def test_the_schema_equals_a_fresh_install(upgraded):
    with connect() as su:
        su.execute("CREATE DATABASE fresh")
    with connect("fresh") as su:
        su.execute("CREATE EXTENSION tenant_guard")
        fresh = [r[0] for r in rows(su, CATALOG)]
    with connect("up") as su:
        up = [r[0] for r in rows(su, CATALOG)]
    assert len(fresh) > 50
    missing = [x for x in fresh if x not in up]
    extra = [x for x in up if x not in fresh]
    assert missing == [] and extra == []
