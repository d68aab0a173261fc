"""Silo, pool and hybrid behind one API: a database bound to one tenant (tenant.bind_database), tenants placed in
another database (tenant.place_tenant) and refused in the pool with an error that names the move, and the placement
table a router reads. The same schema, labels and application SQL serve both."""

import threading
import time
import uuid

import psycopg
import pytest
from conftest import APP, AUD, DB, ISS, dsn, sqlstate

SILO = "tg_e2e_silo"
SCHEMA = """
    CREATE SCHEMA IF NOT EXISTS crm;
    CREATE TABLE IF NOT EXISTS crm.contacts (id serial PRIMARY KEY, tenant_id uuid NOT NULL, name text NOT NULL);
    SECURITY LABEL FOR tenant_guard ON TABLE crm.contacts IS 'tenant_scoped';
    GRANT USAGE ON SCHEMA crm TO tg_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON crm.contacts TO tg_app;
    GRANT USAGE ON SEQUENCE crm.contacts_id_seq TO tg_app;
"""


def moved(tenant, database):
    return ("28000", f"token rejected: tenant {tenant} moved to database \"{database}\" (see tenant.placement): "
                     "connect there")


WRONG_DATABASE = ("28000", "token rejected: this database is bound to another tenant (see tenant.placement)")


@pytest.fixture(scope="module")
def silo(database, keys):
    """A second database on the same server, with the same schema and labels as the pool's."""
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {SILO} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {SILO}")
    with psycopg.connect(dsn(dbname=SILO), autocommit=True) as c:
        c.execute("CREATE EXTENSION tenant_guard")
        c.execute("SELECT tenant.trust_issuer(%s, %s::jsonb, %s)", (ISS, psycopg.types.json.Jsonb(keys.jwks()), AUD))
        c.execute(SCHEMA)
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(SCHEMA)
    yield SILO
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("DELETE FROM tenant.placement")
        c.execute("DROP SCHEMA crm CASCADE")    # the shared database's protected tables are other suites' too
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {SILO} WITH (FORCE)")


def app(dbname=DB):
    return psycopg.connect(dsn(user=APP, dbname=dbname), autocommit=True)


def su(dbname=DB):
    return psycopg.connect(dsn(dbname=dbname), autocommit=True)


def contacts(c):
    return sorted(r[0] for r in c.execute("SELECT name FROM crm.contacts").fetchall())


def test_a_bound_database_serves_its_tenant_only(keys, silo):
    a, b = uuid.uuid4(), uuid.uuid4()
    with app(silo) as cb:
        cb.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(b),))   # before the binding
        with su(silo) as s:
            s.execute("SELECT tenant.bind_database(%s)", (a,))
            try:
                assert s.execute("SELECT tenant.database_tenant()").fetchone() == (a,)
                with app(silo) as ca:
                    ca.execute("BEGIN")
                    ca.execute("SELECT tenant.authenticate(%s)", (keys.mint(a),))
                    ca.execute("INSERT INTO crm.contacts (name) VALUES ('silo contact')")   # the pool's SQL, as is
                    assert contacts(ca) == ["silo contact"]
                    ca.execute("COMMIT")
                    assert sqlstate(ca, "SELECT tenant.authenticate(%s)", (keys.mint(b),)) == WRONG_DATABASE
                    ca.execute("SET tenant_guard.token = '%s'" % keys.mint(b))
                    assert sqlstate(ca, "SELECT count(*) FROM crm.contacts")[0] == "42501"
                # a session authenticated before the binding: refused from its next statement on
                assert sqlstate(cb, "SELECT count(*) FROM crm.contacts") == (
                    "42501", "no tenant context")
                assert s.execute("SELECT count(*) FROM crm.contacts").fetchone() == (1,)
                # rebinding to another tenant is refused while bound
                assert sqlstate(s, "SELECT tenant.bind_database(%s)", (b,)) == (
                    "55000", "this database is already bound to another tenant; call tenant.unbind_database() first")
            finally:
                s.execute("SELECT tenant.unbind_database()")
                s.execute("DELETE FROM crm.contacts")
        assert contacts(cb) == []     # unbound: b is served again


def test_binding_refuses_a_database_holding_other_tenants_rows(keys, silo):
    a, b = uuid.uuid4(), uuid.uuid4()
    with su(silo) as s:
        s.execute("INSERT INTO crm.contacts (tenant_id, name) VALUES (%s, 'a'), (%s, 'b')", (a, b))
        try:
            err = sqlstate(s, "SELECT tenant.bind_database(%s)", (a,))
            assert err == ("55000", "crm.contacts holds rows of other tenants than the one this database would be "
                                    "bound to")
            assert s.execute("SELECT tenant.database_tenant()").fetchone() == (None,)
        finally:
            s.execute("DELETE FROM crm.contacts")


def test_the_pool_refuses_a_moved_tenant_with_an_error_that_names_the_move(keys, silo):
    a, b = uuid.uuid4(), uuid.uuid4()
    with app() as stale, app() as other:
        stale.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(a),))
        stale.execute("INSERT INTO crm.contacts (name) VALUES ('before the move')")
        other.execute("SELECT tenant.authenticate(%s, 'session')", (keys.mint(b),))
        with su() as s:
            assert s.execute("SELECT tenant.place_tenant(%s, %s)", (a, silo)).fetchone() == (None,)
            try:
                # a stale route: the session authenticated before the move cannot write to the pool any more
                err = sqlstate(stale, "INSERT INTO crm.contacts (name) VALUES ('after the move')")
                assert err[0] == "42501"
                with app() as fresh:
                    assert sqlstate(fresh, "SELECT tenant.authenticate(%s)", (keys.mint(a),)) == moved(a, silo)
                # other tenants keep working
                other.execute("INSERT INTO crm.contacts (name) VALUES ('b stays')")
                assert contacts(other) == ["b stays"]
                assert s.execute("SELECT name FROM crm.contacts WHERE tenant_id = %s", (a,)).fetchall() == [
                    ("before the move",)]
            finally:
                assert s.execute("SELECT tenant.unplace_tenant(%s)", (a,)).fetchone() == (True,)
        assert contacts(stale) == ["before the move"]
        with su() as s:
            s.execute("DELETE FROM crm.contacts")


def test_the_placement_table_is_for_routers_to_read_and_administrators_to_write(keys, silo):
    a, b = uuid.uuid4(), uuid.uuid4()
    with su() as s:
        s.execute("SELECT tenant.place_tenant(%s, %s)", (a, silo))
        s.execute("SELECT tenant.place_tenant(%s, %s)", (b, DB))        # served here: informational, not refused
        try:
            with app() as c:
                rows = c.execute("SELECT tenant, database FROM tenant.placement WHERE tenant IN (%s, %s) "
                                 "ORDER BY database", (a, b)).fetchall()
                assert rows == [(a, silo), (b, DB)] or rows == sorted([(a, silo), (b, DB)], key=lambda r: r[1])
                c.execute("SELECT tenant.authenticate(%s)", (keys.mint(b),))
                for sql in (f"SELECT tenant.place_tenant('{b}', '{silo}')", f"SELECT tenant.unplace_tenant('{a}')",
                            f"SELECT tenant.bind_database('{b}')", "SELECT tenant.unbind_database()",
                            f"DELETE FROM tenant.placement WHERE tenant = '{a}'",
                            f"INSERT INTO tenant.placement (tenant, database) VALUES ('{uuid.uuid4()}', 'x')"):
                    assert sqlstate(c, sql)[0] == "42501", sql
            # moving a tenant again replaces its row; the previous database is returned
            assert s.execute("SELECT tenant.place_tenant(%s, %s)", (a, DB)).fetchone() == (silo,)
        finally:
            s.execute("SELECT tenant.unplace_tenant(%s)", (a,))
            s.execute("SELECT tenant.unplace_tenant(%s)", (b,))


@pytest.mark.parametrize("sql, params, expected", [
    ("SELECT tenant.place_tenant(NULL, 'x')", None, ("22023", "tenant must not be NULL")),
    ("SELECT tenant.place_tenant(%s, NULL)", (uuid.uuid4(),), ("22023", "database must not be NULL")),
    ("SELECT tenant.place_tenant(%s, 'no_such_database')", (uuid.uuid4(),),
     ("3D000", 'database "no_such_database" does not exist on this server')),
    ("SELECT tenant.place_tenant('00000000-0000-0000-0000-000000000000', 'postgres')", None,
     ("22023", "the nil uuid is not a tenant")),
    ("SELECT tenant.bind_database(NULL)", None, ("22023", "tenant must not be NULL")),
    ("SELECT tenant.bind_database('00000000-0000-0000-0000-000000000000')", None,
     ("22023", "the nil uuid is not a tenant")),
])
def test_bad_arguments(silo, sql, params, expected):
    with su() as s:
        assert sqlstate(s, sql, params) == expected


def test_a_move_waits_for_transactions_that_hold_the_tenants_context(keys, silo):
    """A write in flight when the tenant is placed elsewhere commits before the placement does (the placement waits
    for it), so an export taken after the placement holds it; a transaction that starts meanwhile waits, then is
    refused."""
    a = uuid.uuid4()
    with app() as inflight, su() as s, app() as late:
        inflight.execute("BEGIN")
        inflight.execute("SELECT tenant.authenticate(%s)", (keys.mint(a),))
        inflight.execute("INSERT INTO crm.contacts (name) VALUES ('in flight')")
        placed = {}

        def place():
            with su() as admin:
                admin.execute("SET lock_timeout = '20s'")
                placed["old"] = admin.execute("SELECT tenant.place_tenant(%s, %s)", (a, silo)).fetchone()
        t = threading.Thread(target=place)
        t.start()
        time.sleep(0.5)
        assert t.is_alive(), "the placement did not wait for the transaction in flight"
        inflight.execute("COMMIT")
        t.join(20)
        assert placed == {"old": (None,)}
        try:
            assert s.execute("SELECT count(*) FROM crm.contacts WHERE tenant_id = %s", (a,)).fetchone() == (1,)
            assert sqlstate(late, "SELECT tenant.authenticate(%s)", (keys.mint(a),)) == moved(a, silo)
        finally:
            s.execute("SELECT tenant.unplace_tenant(%s)", (a,))
            s.execute("DELETE FROM crm.contacts")


def test_binding_waits_for_transactions_in_flight_and_then_sees_their_rows(keys, silo):
    a, b = uuid.uuid4(), uuid.uuid4()
    with app(silo) as inflight:
        inflight.execute("BEGIN")
        inflight.execute("SELECT tenant.authenticate(%s)", (keys.mint(b),))
        inflight.execute("INSERT INTO crm.contacts (name) VALUES ('b in flight')")
        result = {}

        def bind():
            with su(silo) as admin:
                admin.execute("SET lock_timeout = '20s'")
                result["err"] = sqlstate(admin, "SELECT tenant.bind_database(%s)", (a,))
        t = threading.Thread(target=bind)
        t.start()
        time.sleep(0.5)
        assert t.is_alive(), "the binding did not wait for the transaction in flight"
        inflight.execute("COMMIT")
        t.join(20)
    with su(silo) as s:
        try:
            assert result["err"] == ("55000", "crm.contacts holds rows of other tenants than the one this database "
                                              "would be bound to")
            assert s.execute("SELECT tenant.database_tenant()").fetchone() == (None,)
        finally:
            s.execute("DELETE FROM crm.contacts")


def test_a_bound_silo_cannot_gain_another_tenants_rows_by_protecting_a_table_later(keys, silo):
    a, b = uuid.uuid4(), uuid.uuid4()
    with su(silo) as s:
        s.execute("SELECT tenant.bind_database(%s)", (a,))
        try:
            s.execute("CREATE TABLE crm.later (tenant_id uuid NOT NULL, v text)")
            s.execute("INSERT INTO crm.later VALUES (%s, 'b row')", (b,))
            assert sqlstate(s, "SECURITY LABEL FOR tenant_guard ON TABLE crm.later IS 'tenant_scoped'") == (
                "55000", "crm.later holds rows of other tenants than the one this database is bound to")
            s.execute("DELETE FROM crm.later")
            s.execute("SECURITY LABEL FOR tenant_guard ON TABLE crm.later IS 'tenant_scoped'")
        finally:
            s.execute("DROP TABLE crm.later")
            s.execute("SELECT tenant.unbind_database()")


def test_tenants_never_share_a_context_lock(keys, silo):
    """Two tenant ids that an XOR of their words would fold together: a transaction of one does not hold up the
    other's move."""
    a = uuid.UUID("a0a0a0a0-0000-4000-8000-00000000000a")
    c = uuid.UUID("0000000a-0000-4000-8000-0000a0a0a0a0")
    with app() as open_tx, su() as s:
        open_tx.execute("BEGIN")
        open_tx.execute("SELECT tenant.authenticate(%s)", (keys.mint(a),))
        try:
            s.execute("SET lock_timeout = '1s'")
            assert s.execute("SELECT tenant.place_tenant(%s, %s)", (c, silo)).fetchone() == (None,)
        finally:
            open_tx.execute("ROLLBACK")
            s.execute("SELECT tenant.unplace_tenant(%s)", (c,))


def test_a_binding_that_waits_holds_up_no_tenant_and_gives_up_after_lock_timeout(keys, silo):
    a, b = uuid.uuid4(), uuid.uuid4()
    with app(silo) as idle:
        idle.execute("BEGIN")
        idle.execute("SELECT tenant.authenticate(%s)", (keys.mint(b),))
        result = {}

        def bind():
            with su(silo) as admin:
                admin.execute("SET lock_timeout = '2s'")
                result["err"] = sqlstate(admin, "SELECT tenant.bind_database(%s)", (a,))
        t = threading.Thread(target=bind)
        t.start()
        time.sleep(0.5)
        # meanwhile another tenant's new transaction is not queued behind the waiting binding
        with app(silo) as other:
            started = time.monotonic()
            other.execute("BEGIN")
            other.execute("SELECT tenant.authenticate(%s)", (keys.mint(a),))
            other.execute("COMMIT")
            assert time.monotonic() - started < 1
        t.join(10)
        idle.execute("ROLLBACK")
    assert result["err"] == ("55P03", "transactions of a tenant are still open: the change waits for them to end, "
                                      "and they did not")
    with su(silo) as s:
        assert s.execute("SELECT tenant.database_tenant()").fetchone() == (None,)
