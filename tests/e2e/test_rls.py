"""Automatic row-level security: tables and schemas labelled tenant_scoped, as a NOSUPERUSER NOBYPASSRLS app role
on tables it does not own, plus the tamper guard."""

import psycopg
import pytest
from conftest import APP, NO_CONTEXT, PG, TENANT_A, TENANT_B, dsn, sqlstate

OWNER = "tg_owner"  # owns the protected tables; not a superuser, not an admin
TENANT_C = "cccccccc-3333-4333-8333-cccccccccccc"


@pytest.fixture(scope="module")
def shop(database, keys):
    """Schema shop, labelled tenant_scoped, owned by tg_owner, with orders/customers/items and a partitioned table."""
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS shop CASCADE; DROP ROLE IF EXISTS {OWNER}")
        c.execute(f"CREATE ROLE {OWNER} LOGIN NOSUPERUSER NOBYPASSRLS")
        c.execute(f"CREATE SCHEMA shop AUTHORIZATION {OWNER}")
        c.execute(f"GRANT USAGE ON SCHEMA shop TO {APP}")
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        o.execute("""
            CREATE TABLE shop.customers (id int PRIMARY KEY, tenant_id uuid, name text);
            CREATE TABLE shop.orders (id int PRIMARY KEY, tenant_id uuid, customer_id int, total int);
            CREATE INDEX ON shop.orders (tenant_id, id);
            CREATE TABLE shop.events (id int, org_id uuid, at date) PARTITION BY RANGE (at);
            CREATE TABLE shop.events_2025 PARTITION OF shop.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        """)
        o.execute("INSERT INTO shop.customers VALUES (1, %s, 'alice'), (2, %s, 'bob'), (3, %s, 'carol')",
                  (TENANT_A, TENANT_A, TENANT_B))
        o.execute("INSERT INTO shop.orders VALUES (10, %s, 1, 100), (11, %s, 2, 200), (12, %s, 3, 300)",
                  (TENANT_A, TENANT_A, TENANT_B))
        o.execute("INSERT INTO shop.events VALUES (1, %s, '2025-05-01'), (2, %s, '2025-06-01')", (TENANT_A, TENANT_B))
        o.execute("SECURITY LABEL FOR tenant_guard ON SCHEMA shop IS 'tenant_scoped'")
        o.execute("SECURITY LABEL FOR tenant_guard ON TABLE shop.events IS 'tenant_scoped column=org_id'")
        o.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA shop TO {APP}")
    yield "shop"


def as_tenant(conn, keys, tenant):
    conn.execute("SELECT tenant.authenticate(%s)", (keys.mint(tenant),))


def rows(conn, sql, params=None):
    return conn.execute(sql, params).fetchall()


def test_labelled_tables_are_listed_with_intact_guards(shop, admin):
    got = rows(admin, "SELECT table_name::text, tenant_column, rls_enabled, rls_forced, policy_intact, tenant_index "
                      "FROM tenant.scoped_tables ORDER BY 1")
    assert got == [
        ("shop.customers", "tenant_id", True, True, True, False),
        ("shop.events", "org_id", True, True, True, False),
        ("shop.events_2025", "org_id", True, True, True, False),
        ("shop.orders", "tenant_id", True, True, True, True),
    ]


def test_reads_are_confined_to_the_tenant(shop, app, keys):
    with app.transaction():
        as_tenant(app, keys, TENANT_A)
        assert rows(app, "SELECT id FROM shop.orders ORDER BY id") == [(10,), (11,)]
        assert rows(app, "SELECT o.id, c.name FROM shop.orders o JOIN shop.customers c ON c.id = o.customer_id "
                         "ORDER BY 1") == [(10, "alice"), (11, "bob")]
        assert rows(app, "WITH t AS (SELECT total FROM shop.orders) SELECT sum(total) FROM t") == [(300,)]
        assert rows(app, "SELECT count(*) FROM shop.customers WHERE id IN (SELECT customer_id FROM shop.orders)") == [(2,)]
        assert rows(app, "SELECT id FROM shop.events ORDER BY id") == [(1,)]
        assert rows(app, "SELECT id FROM shop.events_2025 ORDER BY id") == [(1,)]
        with app.cursor().copy("COPY shop.orders TO STDOUT") as copy:
            assert [bytes(r).decode().split("\t")[0] for r in copy] == ["10", "11"]
    with app.transaction():
        as_tenant(app, keys, TENANT_B)
        assert rows(app, "SELECT id FROM shop.orders ORDER BY id") == [(12,)]


def test_security_invoker_view_is_confined(shop, keys, app):
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        o.execute("CREATE OR REPLACE VIEW shop.order_totals WITH (security_invoker = true) AS "
                  "SELECT id, total FROM shop.orders")
        o.execute(f"GRANT SELECT ON shop.order_totals TO {APP}")
    with app.transaction():
        as_tenant(app, keys, TENANT_B)
        assert rows(app, "SELECT id, total FROM shop.order_totals") == [(12, 300)]


def test_writes_are_confined_to_the_tenant(shop, app, keys):
    app.execute("BEGIN")
    as_tenant(app, keys, TENANT_A)
    # the tenant column defaults to the caller's tenant
    assert rows(app, "INSERT INTO shop.orders (id, customer_id, total) VALUES (20, 1, 5) RETURNING tenant_id") == \
        [(TENANT_A,)]
    app.execute("SAVEPOINT s")
    assert sqlstate(app, "INSERT INTO shop.orders VALUES (21, %s, 3, 5)", (TENANT_B,))[0] == "42501"
    app.execute("ROLLBACK TO SAVEPOINT s")
    assert sqlstate(app, "UPDATE shop.orders SET tenant_id = %s WHERE id = 20", (TENANT_B,))[0] == "42501"
    app.execute("ROLLBACK TO SAVEPOINT s")
    assert sqlstate(app, "INSERT INTO shop.orders VALUES (20, %s, 1, 5) ON CONFLICT (id) DO UPDATE "
                         "SET tenant_id = EXCLUDED.tenant_id", (TENANT_B,))[0] == "42501"
    app.execute("ROLLBACK TO SAVEPOINT s")
    # UPDATE and DELETE never reach B's rows
    assert sorted(rows(app, "UPDATE shop.orders SET total = total RETURNING id")) == [(10,), (11,), (20,)]
    assert rows(app, "DELETE FROM shop.orders WHERE id = 12 RETURNING id") == []
    assert sorted(rows(app, "DELETE FROM shop.orders WHERE total > 0 RETURNING id")) == [(10,), (11,), (20,)]
    app.execute("ROLLBACK")
    with psycopg.connect(dsn(), autocommit=True) as su:
        assert rows(su, "SELECT count(*) FROM shop.orders") == [(3,)]


def test_permissive_policy_cannot_widen_the_tenant_policy(shop, app, admin, keys):
    # other policies on a protected table are an administrator's (the owner is refused, see below)
    admin.execute("DROP POLICY IF EXISTS anything_goes ON shop.customers")
    admin.execute("CREATE POLICY anything_goes ON shop.customers AS PERMISSIVE USING (true) WITH CHECK (true)")
    try:
        app.execute("BEGIN")
        as_tenant(app, keys, TENANT_A)
        err = sqlstate(app, "INSERT INTO shop.customers VALUES (9, %s, 'mallory')", (TENANT_B,))
        app.execute("ROLLBACK")
        assert err == ("42501", 'new row violates row-level security policy "tenant_isolation" for table "customers"')
        with app.transaction():
            as_tenant(app, keys, TENANT_A)
            assert rows(app, "SELECT id FROM shop.customers ORDER BY id") == [(1,), (2,)]
    finally:
        admin.execute("DROP POLICY anything_goes ON shop.customers")


def test_owner_is_confined_too(shop, keys):
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        assert sqlstate(o, "SELECT * FROM shop.orders") == NO_CONTEXT
        with o.transaction():
            as_tenant(o, keys, TENANT_B)
            assert rows(o, "SELECT id FROM shop.orders") == [(12,)]


def test_no_context_never_returns_rows(shop, app):
    for sql in ["SELECT * FROM shop.orders", "SELECT count(*) FROM shop.customers", "SELECT * FROM shop.events",
                "UPDATE shop.orders SET total = 0", "DELETE FROM shop.orders",
                "INSERT INTO shop.orders (id, customer_id, total) VALUES (99, 1, 1)"]:
        assert sqlstate(app, sql) == NO_CONTEXT, sql


def test_generic_plans_follow_tenant_switches(shop, app, keys):
    app.execute("SET plan_cache_mode = force_generic_plan")
    app.execute("PREPARE ids AS SELECT array_agg(id ORDER BY id) FROM shop.orders")
    for i in range(8):
        tenant, want = (TENANT_A, [10, 11]) if i % 2 == 0 else (TENANT_B, [12])
        with app.transaction():
            as_tenant(app, keys, tenant)
            assert app.execute("EXECUTE ids").fetchone()[0] == want


def test_forced_parallel_plans_return_the_same_rows(shop, app, keys):
    with app.transaction():
        as_tenant(app, keys, TENANT_A)
        serial = rows(app, "SELECT id, total FROM shop.orders ORDER BY id")
    assert serial == [(10, 100), (11, 200)]
    force = "force_parallel_mode" if int(PG) < 16 else "debug_parallel_query"   # renamed in PostgreSQL 16
    parallel = [f"{force} = on", "parallel_setup_cost = 0", "parallel_tuple_cost = 0",
                "min_parallel_table_scan_size = 0", "max_parallel_workers_per_gather = 2",
                "enable_indexscan = off", "enable_bitmapscan = off", "parallel_leader_participation = off"]
    explain = "EXPLAIN (ANALYZE, COSTS OFF) SELECT id, total FROM shop.orders"
    with app.transaction():
        as_tenant(app, keys, TENANT_A)
        for s in parallel:
            app.execute(f"SET LOCAL {s}")
        assert rows(app, "SELECT id, total FROM shop.orders ORDER BY id") == serial
        # the app role may not see actual row counts (they count other tenants' rows) ...
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            with app.transaction():
                app.execute(explain)
        assert refused.value.diag.message_primary == \
            "EXPLAIN ANALYZE is refused: table shop.orders is protected by tenant_guard"
    # ... so the proof that workers really ran and filtered comes from a confined (NOBYPASSRLS) administrator
    with psycopg.connect(dsn(), autocommit=True) as su:
        su.execute("DROP ROLE IF EXISTS tg_rls_analyst")
        su.execute("CREATE ROLE tg_rls_analyst NOSUPERUSER NOBYPASSRLS IN ROLE tenant_guard_admin")
        su.execute("GRANT USAGE ON SCHEMA shop TO tg_rls_analyst")
        su.execute("GRANT SELECT ON shop.orders TO tg_rls_analyst")
        try:
            with su.transaction():
                su.execute("SET LOCAL ROLE tg_rls_analyst")
                as_tenant(su, keys, TENANT_A)
                for s in parallel:
                    su.execute(f"SET LOCAL {s}")
                plan = "\n".join(r[0] for r in su.execute(explain))
                # the tenant, evaluated once by the leader and passed to the workers (PostgreSQL 17 names the
                # InitPlan's output instead of listing evaluated parameters)
                evaluated = "Params Evaluated: $0" if int(PG) < 17 else "(InitPlan 1).col1"
                assert "Parallel Seq Scan on orders" in plan and evaluated in plan, plan
                assert "Workers Launched: 0" not in plan and "Workers Launched:" in plan, plan
                assert rows(su, "SELECT id, total FROM shop.orders ORDER BY id") == serial
        finally:
            su.execute("DROP OWNED BY tg_rls_analyst")
            su.execute("DROP ROLE tg_rls_analyst")


def test_point_query_uses_the_tenant_index(shop, keys):
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        with o.transaction():
            as_tenant(o, keys, TENANT_C)
            o.execute("INSERT INTO shop.orders (id, customer_id, total) SELECT g, 1, g FROM generate_series(1000, 20999) g")
        o.execute("ANALYZE shop.orders")
    with psycopg.connect(dsn()) as app:
        # the app role, allowed plain EXPLAIN by a superuser (tenant_guard.allow_explain, off by default)
        app.execute("SET tenant_guard.allow_explain = on")
        app.execute(f"SET ROLE {APP}")
        as_tenant(app, keys, TENANT_A)
        plan = "\n".join(r[0] for r in app.execute("EXPLAIN SELECT total FROM shop.orders WHERE id = 10"))
        assert "Index" in plan and "orders_tenant_id_id_idx" in plan and "Seq Scan" not in plan, plan
        assert app.execute("SELECT total FROM shop.orders WHERE id = 10").fetchall() == [(100,)]
        assert app.execute("SELECT count(*) FROM shop.orders").fetchone()[0] == 2


def test_schema_tagging_protects_new_tables_and_refuses_unscoped_ones(shop):
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        o.execute("CREATE TABLE shop.invoices (id int, tenant_id uuid)")
        assert rows(o, "SELECT rls_forced, policy_intact FROM tenant.scoped_tables "
                       "WHERE table_name = 'shop.invoices'::regclass") == [(True, True)]
        err = sqlstate(o, "CREATE TABLE shop.countries (code text)")
        assert err == ("42P16", 'table shop.countries is in a tenant_scoped schema but has no column "tenant_id"')
        assert rows(o, "SELECT to_regclass('shop.countries')") == [(None,)]
        with o.transaction():
            o.execute("CREATE TABLE shop.countries (code text)")
            o.execute("SECURITY LABEL FOR tenant_guard ON TABLE shop.countries IS 'global'")
        assert rows(o, "SELECT to_regclass('shop.countries')::text") == [("shop.countries",)]
        o.execute("CREATE TABLE shop.events_2026 PARTITION OF shop.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
        # a stand-alone table without tenant_id in the schema is refused at COMMIT, unless it is attached (and so
        # labelled) before then
        with o.transaction():
            o.execute("CREATE TABLE shop.events_2027 (id int, org_id uuid NOT NULL, at date)")
            o.execute("ALTER TABLE shop.events ATTACH PARTITION shop.events_2027 "
                      "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
        got = rows(o, "SELECT table_name::text, tenant_column, policy_intact FROM tenant.scoped_tables "
                      "WHERE table_name::text LIKE 'shop.events_20%' ORDER BY 1")
        assert got == [("shop.events_2025", "org_id", True), ("shop.events_2026", "org_id", True),
                       ("shop.events_2027", "org_id", True)]


def test_label_errors(shop):
    with psycopg.connect(dsn(), autocommit=True) as su:
        su.execute("DROP TABLE IF EXISTS public.plain")
        su.execute("CREATE TABLE public.plain (id int, tenant_id text, org uuid)")
        assert sqlstate(su, "SECURITY LABEL FOR tenant_guard ON TABLE public.plain IS 'secret'") == \
            ("22023", 'invalid tenant_guard security label "secret"')
        assert sqlstate(su, "SECURITY LABEL FOR tenant_guard ON TABLE public.plain IS 'tenant_scoped'") == \
            ("42804", 'tenant column "tenant_id" of table public.plain must be of type uuid')
        assert sqlstate(su, "SECURITY LABEL FOR tenant_guard ON TABLE public.plain IS 'tenant_scoped column=nope'") \
            == ("42703", 'table public.plain has no column "nope" to hold the tenant')
        assert rows(su, "SELECT count(*) FROM pg_seclabel WHERE objoid = 'public.plain'::regclass") == [(0,)]
        su.execute("SELECT tenant.protect('public.plain', 'org')")
        assert rows(su, "SELECT label FROM pg_seclabel WHERE objoid = 'public.plain'::regclass") == \
            [("tenant_scoped column=org",)]
        su.execute("SECURITY LABEL FOR tenant_guard ON TABLE public.plain IS NULL")
        assert rows(su, "SELECT relrowsecurity, relforcerowsecurity, "
                        "(SELECT count(*) FROM pg_policy WHERE polrelid = c.oid) FROM pg_class c "
                        "WHERE oid = 'public.plain'::regclass") == [(False, False, 0)]
        su.execute("DROP TABLE public.plain")


TAMPER = [
    ("ALTER TABLE shop.orders DISABLE ROW LEVEL SECURITY", "DISABLE ROW LEVEL SECURITY"),
    ("ALTER TABLE shop.orders NO FORCE ROW LEVEL SECURITY", "NO FORCE ROW LEVEL SECURITY"),
    ("DROP POLICY tenant_isolation ON shop.orders", "DROP POLICY"),
    ("DROP POLICY tenant_access ON shop.orders", "DROP POLICY"),
    ("ALTER POLICY tenant_isolation ON shop.orders USING (true)", "ALTER POLICY"),
    ("ALTER POLICY tenant_isolation ON shop.orders RENAME TO x", "renaming a policy"),
    ("ALTER TABLE shop.orders DROP COLUMN tenant_id", "dropping the tenant column"),
    ("ALTER TABLE shop.orders ALTER COLUMN tenant_id TYPE text", "changing the type of the tenant column"),
    ("ALTER TABLE shop.orders ALTER COLUMN tenant_id DROP DEFAULT", "changing the default of the tenant column"),
    ("ALTER TABLE shop.orders ALTER COLUMN tenant_id DROP NOT NULL", "dropping NOT NULL from the tenant column"),
    ("ALTER TABLE shop.orders RENAME COLUMN tenant_id TO t", "renaming the tenant column"),
    ("ALTER TABLE shop.events DISABLE ROW LEVEL SECURITY", "DISABLE ROW LEVEL SECURITY"),
    ("TRUNCATE shop.orders", "TRUNCATE"),
    ("TRUNCATE TABLE ONLY shop.orders RESTART IDENTITY", "TRUNCATE"),
    ("TRUNCATE shop.events", "TRUNCATE"),
]


@pytest.mark.parametrize("sql,what", TAMPER)
def test_tamper_guard_refuses_the_owner(shop, sql, what):
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        table = "shop.events" if "events" in sql else "shop.orders"
        assert sqlstate(o, sql) == ("42501", f"{what} is refused: table {table} is protected by tenant_guard")
        assert rows(o, "SELECT bool_and(policy_intact AND rls_forced) FROM tenant.scoped_tables") == [(True,)]


def test_truncate_is_refused_however_it_reaches_a_protected_table(shop, app, admin):
    """TRUNCATE ignores row-level security: it would empty every tenant's rows."""
    admin.execute(f"DROP SCHEMA IF EXISTS refdata CASCADE; CREATE SCHEMA refdata AUTHORIZATION {OWNER}")
    admin.execute(f"GRANT USAGE ON SCHEMA refdata TO {APP}")
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        o.execute("CREATE TABLE refdata.countries (code text PRIMARY KEY)")
        o.execute("CREATE TABLE refdata.notes (body text)")
        o.execute("INSERT INTO refdata.countries VALUES ('FR'); INSERT INTO refdata.notes VALUES ('x')")
    # created in the tenant_scoped schema, so protected; it references the unprotected countries table (a key to a
    # shared table is an administrator's: see test_redteam_escapes A25)
    admin.execute("CREATE TABLE shop.addresses (id int, tenant_id uuid, country text REFERENCES refdata.countries)")
    admin.execute(f"ALTER TABLE shop.addresses OWNER TO {OWNER}")
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        o.execute(f"GRANT TRUNCATE ON shop.orders, refdata.countries, refdata.notes TO {APP}")
    before = admin.execute("SELECT count(*) FROM shop.orders").fetchone()
    refused = ("42501", "TRUNCATE is refused: table shop.orders is protected by tenant_guard")
    assert sqlstate(app, "TRUNCATE shop.orders") == refused, "granted TRUNCATE is not enough"
    assert sqlstate(app, "TRUNCATE refdata.notes, shop.orders") == refused, "one protected table in the list"
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        assert sqlstate(o, "TRUNCATE refdata.countries CASCADE") == \
            ("42501", "TRUNCATE is refused: table shop.addresses is protected by tenant_guard")
        # without CASCADE PostgreSQL itself refuses; unprotected tables are not the guard's business
        assert sqlstate(o, "TRUNCATE refdata.countries")[0] == "0A000"
    assert sqlstate(app, "TRUNCATE refdata.notes") is None
    assert admin.execute("SELECT count(*) FROM shop.orders").fetchone() == before
    # superusers and tenant_guard_admin members may
    admin.execute("BEGIN")
    admin.execute("TRUNCATE refdata.countries CASCADE")
    admin.execute("ROLLBACK")
    admin.execute("DROP TABLE shop.addresses; DROP SCHEMA refdata CASCADE")


def test_detached_partition_stays_guarded(shop):
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        o.execute("CREATE TABLE shop.events_2030 PARTITION OF shop.events FOR VALUES FROM ('2030-01-01') TO ('2031-01-01')")
        o.execute("ALTER TABLE shop.events DETACH PARTITION shop.events_2030")
        assert sqlstate(o, "ALTER TABLE shop.events_2030 DISABLE ROW LEVEL SECURITY") == \
            ("42501", "DISABLE ROW LEVEL SECURITY is refused: table shop.events_2030 is protected by tenant_guard")
        assert sqlstate(o, "DROP POLICY tenant_isolation ON shop.events_2030")[0] == "42501"


def test_other_policies_are_added_by_administrators_only(shop, admin):
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        assert sqlstate(o, "CREATE POLICY only_big ON shop.orders AS RESTRICTIVE USING (total >= 0)") == \
            ("42501", "CREATE POLICY is refused: table shop.orders is protected by tenant_guard")
    admin.execute("CREATE POLICY only_big ON shop.orders AS RESTRICTIVE USING (total >= 0)")
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        assert sqlstate(o, "DROP POLICY only_big ON shop.orders") == \
            ("42501", "DROP POLICY is refused: table shop.orders is protected by tenant_guard")
    admin.execute("DROP POLICY only_big ON shop.orders")
    admin.execute("BEGIN")
    admin.execute("ALTER TABLE shop.orders NO FORCE ROW LEVEL SECURITY")
    admin.execute("ROLLBACK")


def test_only_an_administrator_can_unprotect(shop, app, admin):
    assert sqlstate(app, "SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS NULL") == \
        ("42501", "must be owner of table orders")
    assert sqlstate(app, "SELECT tenant.protect('shop.orders', 'customer_id')") == \
        ("42501", "must be owner of table orders")
    with psycopg.connect(dsn(user=OWNER), autocommit=True) as o:
        refused = ("42501", "removing or changing the protection of shop.orders is refused")
        assert sqlstate(o, "SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS NULL") == refused
        assert sqlstate(o, "SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS 'global'") == refused
        assert sqlstate(o, "SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS 'tenant_scoped column=customer_id'"
                        ) == refused
        assert sqlstate(o, "SECURITY LABEL FOR tenant_guard ON SCHEMA shop IS NULL") == \
            ("42501", "removing or changing the protection of schema shop is refused")
    admin.execute("BEGIN")
    # in a tenant_scoped schema a table is excluded by labelling it 'global' (IS NULL would be protected again)
    admin.execute("SECURITY LABEL FOR tenant_guard ON TABLE shop.orders IS 'global'")
    assert admin.execute("SELECT count(*) FROM tenant.scoped_tables WHERE table_name = 'shop.orders'::regclass"
                         ).fetchone() == (0,)
    admin.execute("ROLLBACK")


def test_admin_role_members_are_not_refused(shop, admin):
    admin.execute("DROP ROLE IF EXISTS tg_dba")
    admin.execute("CREATE ROLE tg_dba LOGIN NOSUPERUSER IN ROLE tenant_guard_admin")
    admin.execute(f"GRANT {OWNER} TO tg_dba")  # may act on tg_owner's tables
    try:
        with psycopg.connect(dsn(user="tg_dba")) as dba:
            dba.execute(f"SET ROLE {OWNER}")
            assert sqlstate(dba, "ALTER TABLE shop.orders NO FORCE ROW LEVEL SECURITY")[0] == "42501"
            dba.execute("RESET ROLE")
            dba.execute("SET ROLE tg_dba")
            # as itself, tg_dba holds tenant_guard_admin and inherits ownership through tg_owner
            dba.execute("ALTER TABLE shop.orders NO FORCE ROW LEVEL SECURITY")
            assert dba.execute("SELECT rls_forced FROM tenant.scoped_tables "
                               "WHERE table_name = 'shop.orders'::regclass").fetchone() == (False,)
            dba.rollback()
        assert admin.execute("SELECT rls_forced FROM tenant.scoped_tables "
                             "WHERE table_name = 'shop.orders'::regclass").fetchone() == (True,)
    finally:
        admin.execute("DROP ROLE tg_dba")


def test_dump_and_restore_keeps_the_protection(shop, keys, tmp_path):
    import subprocess

    from conftest import DB, HOST, PORT

    bin_dir = f"/usr/lib/postgresql/{PG}/bin"
    dump = tmp_path / "tg.dump"
    conn = ["-h", HOST, "-p", str(PORT), "-U", "postgres"]
    subprocess.run([f"{bin_dir}/pg_dump", *conn, "-Fc", "-f", str(dump), DB], check=True)
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS tg_restored WITH (FORCE)")
        c.execute("CREATE DATABASE tg_restored")
    # one transaction: a 'global' table in a tenant_scoped schema is labelled before it commits
    out = subprocess.run([f"{bin_dir}/pg_restore", *conn, "--single-transaction", "--exit-on-error",
                          "-d", "tg_restored", str(dump)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    before = rows(psycopg.connect(dsn(), autocommit=True),
                  "SELECT table_name::text, tenant_column, rls_enabled, rls_forced, policy_intact "
                  "FROM tenant.scoped_tables ORDER BY 1")
    with psycopg.connect(dsn(dbname="tg_restored"), autocommit=True) as r:
        after = rows(r, "SELECT table_name::text, tenant_column, rls_enabled, rls_forced, policy_intact "
                        "FROM tenant.scoped_tables ORDER BY 1")
        assert after == before and len(after) >= 4
        assert rows(r, "SELECT label FROM pg_seclabel l JOIN pg_namespace n ON n.oid = l.objoid "
                       "WHERE n.nspname = 'shop'") == [("tenant_scoped",)]
        assert rows(r, "SELECT count(*) FROM tenant.issuers") == \
            rows(psycopg.connect(dsn(), autocommit=True), "SELECT count(*) FROM tenant.issuers")
    with psycopg.connect(dsn(user=APP, dbname="tg_restored"), autocommit=True) as app:
        assert sqlstate(app, "SELECT * FROM shop.orders") == NO_CONTEXT
        with app.transaction():
            as_tenant(app, keys, TENANT_B)
            assert rows(app, "SELECT id FROM shop.orders ORDER BY id") == [(12,)]
    with psycopg.connect(dsn(dbname="postgres"), autocommit=True) as c:
        c.execute("DROP DATABASE tg_restored WITH (FORCE)")
