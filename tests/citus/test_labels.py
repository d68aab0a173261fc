"""Labels on Citus tables, in either order: every shard on every worker ends up with row-level security enabled and
forced and tenant_guard's two policies (tenant_isolation restrictive), and every worker's copy of the table too."""

import pytest

from conftest import (ADMIN, APP, OWNER, TENANT_A, TENANT_B, WORKERS, app_conn, connect, fill, make_table, mint,
                      on_placements, rows, sqlstate)

SHARD_STATE = ("SELECT (c.relrowsecurity, c.relforcerowsecurity, tenant._policy_intact(c.oid, 'tenant_id'), "
               "(SELECT string_agg(polname || ':' || polpermissive, ',' ORDER BY polname) FROM pg_policy "
               " WHERE polrelid = c.oid))::text FROM pg_class c WHERE c.oid = '%1$s'::regclass")
PROTECTED = '(t,t,t,"tenant_access:true,tenant_isolation:false")'


def assert_every_shard_protected(admin, table):
    states = on_placements(admin, table, SHARD_STATE)
    assert states and all(result == PROTECTED for _, result in states), states


def assert_every_worker_copy_protected(table):
    for port in WORKERS:
        with connect(port) as w:
            assert rows(w, "SELECT rls_enabled, rls_forced, policy_intact FROM tenant.scoped_tables "
                           "WHERE table_name = %s::regclass", (table,)) == [(True, True, True)], port


@pytest.mark.parametrize("label_first", [False, True], ids=["distribute-then-label", "label-then-distribute"])
def test_distributed_table_in_either_order(admin, owner, label_first):
    table = make_table(owner, "lbl_orders_" + ("lf" if label_first else "df"), label_first=label_first)
    assert_every_shard_protected(admin, table)
    assert_every_worker_copy_protected(table)
    assert rows(admin, "SELECT rls_enabled, rls_forced, policy_intact FROM tenant.scoped_tables "
                       "WHERE table_name = %s::regclass", (table,)) == [(True, True, True)]
    fill(table, per_tenant=2)
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        assert rows(c, f"SELECT DISTINCT tenant_id FROM {table}") == [(TENANT_A,)]


@pytest.mark.parametrize("label_first", [False, True], ids=["reference-then-label", "label-then-reference"])
def test_reference_table_in_either_order(admin, owner, label_first):
    table = make_table(owner, "lbl_ref_" + ("lf" if label_first else "df"), distribute="reference",
                       label_first=label_first)
    assert_every_shard_protected(admin, table)
    assert_every_worker_copy_protected(table)
    fill(table, per_tenant=2)
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        assert sorted(r[0] for r in rows(c, f"SELECT item FROM {table}")) == ["b0", "b1"]


def test_table_created_in_a_scoped_schema_then_distributed(admin, owner):
    admin.execute("DROP SCHEMA IF EXISTS lbl_scoped CASCADE")
    admin.execute(f"CREATE SCHEMA lbl_scoped AUTHORIZATION {OWNER}")
    admin.execute("SECURITY LABEL FOR tenant_guard ON SCHEMA lbl_scoped IS 'tenant_scoped'")
    owner.execute("CREATE TABLE lbl_scoped.orders (tenant_id uuid NOT NULL, id bigint, item text, "
                  "PRIMARY KEY (tenant_id, id))")
    # a table owner that is not an administrator distributes a protected table with a token (any tenant's): Citus
    # checks as its caller whether the table is empty, under the policies
    assert sqlstate(owner, "SELECT create_distributed_table('lbl_scoped.orders', 'tenant_id')") == "42501"
    with owner.transaction():
        owner.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        owner.execute("SELECT create_distributed_table('lbl_scoped.orders', 'tenant_id')")
    assert_every_shard_protected(admin, "lbl_scoped.orders")
    assert_every_worker_copy_protected("lbl_scoped.orders")


def test_ddl_propagation_off_cannot_leave_shards_unprotected(admin, owner):
    """Labelled with citus.enable_ddl_propagation off: the shards are protected anyway."""
    owner.execute("DROP TABLE IF EXISTS lbl_nodist")
    owner.execute("CREATE TABLE lbl_nodist (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, "
                  "item text, PRIMARY KEY (tenant_id, id))")
    owner.execute("SELECT create_distributed_table('lbl_nodist', 'tenant_id')")
    owner.execute(f"GRANT SELECT, INSERT ON lbl_nodist TO {APP}")
    with owner.transaction():
        owner.execute("SET LOCAL citus.enable_ddl_propagation = off")
        owner.execute("SECURITY LABEL FOR tenant_guard ON TABLE lbl_nodist IS 'tenant_scoped'")
    assert_every_shard_protected(admin, "lbl_nodist")
    fill("lbl_nodist", per_tenant=1)
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        assert rows(c, "SELECT DISTINCT tenant_id FROM lbl_nodist") == [(TENANT_A,)]


def test_local_tables_keep_the_initplan_form(admin, owner):
    """Protected local tables keep the once-per-statement form, also after Citus distributed another table."""
    owner.execute("DROP TABLE IF EXISTS lbl_local")
    owner.execute("CREATE TABLE lbl_local (tenant_id uuid NOT NULL, id bigint, item text)")
    owner.execute("SECURITY LABEL FOR tenant_guard ON TABLE lbl_local IS 'tenant_scoped'")
    make_table(owner, "lbl_after_local", label_first=True)
    forms = rows(admin, "SELECT DISTINCT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'lbl_local'::regclass")
    assert forms == [("(tenant_id = ( SELECT tenant.current_id() AS current_id))",)]
    forms = rows(admin, "SELECT DISTINCT pg_get_expr(polqual, polrelid) FROM pg_policy "
                        "WHERE polrelid = 'lbl_after_local'::regclass")
    assert forms == [("(tenant_id = tenant.current_id())",)]


def test_insert_without_tenant_lands_on_the_tenants_shard(admin, owner):
    table = make_table(owner, "lbl_route")
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_B),))
        assert rows(c, f"INSERT INTO {table} (item) VALUES ('routed') RETURNING tenant_id") == [(TENANT_B,)]
    shard = rows(admin, "SELECT get_shard_id_for_distribution_column(%s, %s)", (table, TENANT_B))[0][0]
    counts = {s: r for s, r in rows(admin, "SELECT shardid, result FROM run_command_on_placements(%s, "
                                           "'SELECT count(*) FROM %%1$s')", (table,))}
    assert counts[shard] == "1" and sum(int(v) for v in counts.values()) == 1


def test_naming_another_tenant_is_refused(owner):
    table = make_table(owner, "lbl_other")
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        assert sqlstate(c, f"INSERT INTO {table} (tenant_id, item) VALUES (%s, 'x')", (TENANT_B,)) == "42501"
        c.execute(f"INSERT INTO {table} (item) VALUES ('mine')")
        # Citus refuses to move a row between shards: a row cannot change tenants
        assert sqlstate(c, f"UPDATE {table} SET tenant_id = %s", (TENANT_B,)) == "0A000"


def test_restrictive_policy_of_an_administrator_is_refused(admin, owner):
    """Citus would copy it to the shards as a permissive policy, which would widen tenant_isolation."""
    table = make_table(owner, "lbl_policy")
    assert sqlstate(admin, f"CREATE POLICY only_open ON {table} AS RESTRICTIVE USING (item <> 'closed')") == "0A000"
    assert sqlstate(admin, f"CREATE POLICY see_more ON {table} AS PERMISSIVE USING (true)") is None
    assert_every_shard_protected_with_extra(admin, table)
    fill(table, per_tenant=1)
    with app_conn() as c, c.transaction():
        c.execute("SELECT tenant.authenticate(%s)", (mint(TENANT_A),))
        assert rows(c, f"SELECT DISTINCT tenant_id FROM {table}") == [(TENANT_A,)]


def assert_every_shard_protected_with_extra(admin, table):
    states = on_placements(admin, table, "SELECT string_agg(polname || ':' || polpermissive, ',' ORDER BY polname) "
                                         "FROM pg_policy WHERE polrelid = '%1$s'::regclass")
    assert all(r == "see_more:true,tenant_access:true,tenant_isolation:false" for _, r in states), states


def test_audit_is_clean(admin):
    assert [r for r in rows(admin, "SELECT check_name, object FROM tenant.audit()") if r[0].startswith("citus")] == []
