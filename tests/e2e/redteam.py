"""Shared set-up of the red-team suites (test_redteam*.py): one scenario per attack, named after it, mapped to the
threat catalogue (A1-A44, B) and docs/security-model.md.

Section A (RLS bypasses and leaks) is tried against a real SaaS-shaped schema, as an application role that is
NOSUPERUSER NOBYPASSRLS and owns nothing, and as the (NOLOGIN) table owner. Section B (token attacks) uses real
signed tokens (PyJWT, or raw signatures with the same keys where PyJWT refuses to build the attack). Every scenario
asserts the exact rows, SQLSTATEs and messages. docs/security-model.md maps each threat to its scenarios.

Data: tenant A has customers 1, 2 and orders 1, 2; tenant B has customers 1, 2, 3 and orders 1, 2, 3; both share the
email 'shared@x' (allowed: keys are per tenant). The partitioned table app.events has rows of both tenants in both
partitions.
"""

import json
import uuid

import psycopg
import pytest

from conftest import AUD, ISS, b64url, dsn  # noqa: F401 (re-exported to the suites)

DB = "tg_redteam"
A = uuid.UUID("a0a0a0a0-0000-4000-8000-00000000000a")
B = uuid.UUID("b0b0b0b0-0000-4000-8000-00000000000b")
ROLES = ("rt_deployer", "rt_app", "rt_owner", "rt_other", "rt_bypass")
NO_CONTEXT = ("42501", "no tenant context")
SEALED = ("28000", "tenant context is sealed: this transaction already belongs to another tenant")
A_ORDERS = [(1, "a-order-1"), (2, "a-order-2")]
B_ORDERS = [(1, "b-order-1"), (2, "b-order-2"), (3, "b-order-3")]

SCHEMA = f"""
CREATE EXTENSION tenant_guard;
CREATE ROLE rt_owner NOLOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE rt_other NOLOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE rt_app LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE rt_other;
CREATE SCHEMA app AUTHORIZATION rt_owner;
SET ROLE rt_owner;
CREATE TABLE app.customers (tenant_id uuid, id int, email text NOT NULL, PRIMARY KEY (tenant_id, id),
                            UNIQUE (tenant_id, email));
CREATE TABLE app.orders (tenant_id uuid, id int, customer_id int NOT NULL, note text, PRIMARY KEY (tenant_id, id),
                         FOREIGN KEY (tenant_id, customer_id) REFERENCES app.customers (tenant_id, id));
CREATE TABLE app.events (tenant_id uuid NOT NULL, kind text NOT NULL, body text) PARTITION BY LIST (kind);
CREATE TABLE app.events_a PARTITION OF app.events FOR VALUES IN ('a');
CREATE TABLE app.events_b PARTITION OF app.events FOR VALUES IN ('b');
CREATE INDEX ON app.events (tenant_id);
CREATE TABLE app.countries (code text PRIMARY KEY);
RESET ROLE;
SECURITY LABEL FOR tenant_guard ON TABLE app.customers IS 'tenant_scoped';
SECURITY LABEL FOR tenant_guard ON TABLE app.orders IS 'tenant_scoped';
SECURITY LABEL FOR tenant_guard ON TABLE app.events IS 'tenant_scoped';
GRANT USAGE ON SCHEMA app TO rt_app, rt_other;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA app TO rt_app, rt_other;
INSERT INTO app.customers VALUES ('{A}', 1, 'a1@x'), ('{A}', 2, 'shared@x'),
                                 ('{B}', 1, 'b1@x'), ('{B}', 2, 'shared@x'), ('{B}', 3, 'b3@x');
INSERT INTO app.orders VALUES ('{A}', 1, 1, 'a-order-1'), ('{A}', 2, 2, 'a-order-2'),
                              ('{B}', 1, 1, 'b-order-1'), ('{B}', 2, 3, 'b-order-2'), ('{B}', 3, 3, 'b-order-3');
INSERT INTO app.events VALUES ('{A}', 'a', 'a-event-a'), ('{A}', 'b', 'a-event-b'),
                              ('{B}', 'a', 'b-event-a'), ('{B}', 'b', 'b-event-b'), ('{B}', 'b', 'b-event-b2');
"""


def drop_everything():
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        for role in ROLES:
            c.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture(scope="module")
def redteam_db(database, keys):
    drop_everything()
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        c.execute(SCHEMA)
        c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ISS, json.dumps(keys.jwks()), AUD))
    yield DB
    drop_everything()


@pytest.fixture
def su(redteam_db):
    """A superuser connection to the red-team database (for setting up attacks and checking what really happened)."""
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        yield c


@pytest.fixture
def attacker(redteam_db):
    """The application role: NOSUPERUSER NOBYPASSRLS, owns nothing, autocommit (BEGIN for a transaction)."""
    with psycopg.connect(dsn(user="rt_app", dbname=DB), autocommit=True) as c:
        assert c.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
                         ).fetchone() == (False,)
        yield c
        if c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            c.execute("ROLLBACK")


@pytest.fixture
def developer(redteam_db):
    """The application role with tenant_guard.allow_explain on, as a superuser would allow it for a developer role
    (set in a superuser's session, then SET ROLE: the app role itself may not set it)."""
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        c.execute("SET tenant_guard.allow_explain = on")
        c.execute("SET ROLE rt_app")
        yield c
        if c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            c.execute("ROLLBACK")


@pytest.fixture
def owner(redteam_db):
    """A login member of the NOLOGIN table owner (rt_owner), acting as the owner: the deployment role the audit
    recommends. Not a superuser, not an administrator."""
    with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
        c.execute("DROP ROLE IF EXISTS rt_deployer")
        c.execute("CREATE ROLE rt_deployer LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE rt_owner")
    try:
        with psycopg.connect(dsn(user="rt_deployer", dbname=DB), autocommit=True) as c:
            c.execute("SET ROLE rt_owner")
            yield c
            if c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                c.execute("ROLLBACK")
    finally:
        with psycopg.connect(dsn(dbname=DB), autocommit=True) as c:
            c.execute("DROP ROLE rt_deployer")


def fails(conn, sql, params=None):
    """(sqlstate, primary message) of the error `sql` raises; rolls back to before it if a transaction is open."""
    in_tx = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    if in_tx:
        conn.execute("SAVEPOINT before_attack")
    try:
        conn.execute(sql, params)
    except psycopg.Error as e:
        if in_tx:
            conn.execute("ROLLBACK TO SAVEPOINT before_attack")
        return (e.sqlstate, e.diag.message_primary)
    raise AssertionError(f"the attack succeeded: {sql}")


def rows(conn, sql, params=None):
    return conn.execute(sql, params).fetchall()


def begin_as(conn, keys, tenant, alg="EdDSA"):
    conn.execute("BEGIN")
    conn.execute("SELECT tenant.authenticate(%s)", (keys.mint(tenant, alg=alg),))


def as_tenant(conn, keys, tenant, sql, params=None):
    begin_as(conn, keys, tenant)
    try:
        return rows(conn, sql, params)
    finally:
        conn.execute("COMMIT")


def superuser_orders(su):
    return rows(su, "SELECT tenant_id, id, note FROM app.orders ORDER BY tenant_id, id")


ALL_ORDERS = [(A, 1, "a-order-1"), (A, 2, "a-order-2"), (B, 1, "b-order-1"), (B, 2, "b-order-2"), (B, 3, "b-order-3")]


